"""`fusionnas search --workers N`: N processes on one study, one GPU or a share of the cores each."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from _studies import PROXY_TOML, ZERO_COST_TOML, write_study
from _workers import ENV, has_study, storage
from fusionnas.trial_record import TrialRecord
from fusionnas.workers import worker_environments

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def start(folder, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fusionnas.cli", "search", "tiny.toml", *args], cwd=folder,
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def trials(folder) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'tiny.db'}").trials


def wait_until_training(folder, parent: subprocess.Popen, count: int, timeout: float = 180) -> None:
    """Return once ``count`` trials of the study are RUNNING past their costs at the same time."""
    url, deadline = f"sqlite:///{folder / 'tiny.db'}", time.monotonic() + timeout
    while True:
        if has_study(url, "tiny"):
            running = optuna.load_study(study_name="tiny", storage=storage(url)).get_trials(
                deepcopy=False, states=(TrialState.RUNNING,))
            if sum("flops" in TrialRecord.read(t).costs for t in running) >= count:
                return
        assert parent.poll() is None, parent.communicate()
        assert time.monotonic() < deadline, f"{count} trials never trained at once"
        time.sleep(0.1)


def test_workers_share_the_study_and_stop_at_its_total(tmp_path) -> None:
    write_study(tmp_path, ZERO_COST_TOML.replace("n_trials = 4", "n_trials = 6"))
    parent = start(tmp_path, "--workers", "2")
    out, err = parent.communicate(timeout=300)
    assert parent.returncode == 0, (out, err)
    assert out.startswith("starting 2 workers (CPU, 1 threads each)")
    assert "[w0] study tiny" in out and "[w1] study tiny" in out
    done = trials(tmp_path)
    assert len(done) == 6 and all(t.state == TrialState.COMPLETE for t in done)
    numbers = [int(line.split("trial ")[1].split()[0]) for line in out.splitlines() if "] [" in line]
    assert sorted(numbers) == list(range(6))  # every trial run, and reported, by exactly one worker


def test_a_signal_reaches_every_worker_once(tmp_path) -> None:
    write_study(tmp_path, PROXY_TOML.replace("steps = 2", "steps = 200").replace("n_trials = 3", "n_trials = 8"))
    parent = start(tmp_path, "--workers", "2")
    wait_until_training(tmp_path, parent, count=2)
    parent.send_signal(signal.SIGTERM)
    out, err = parent.communicate(timeout=120)
    assert parent.returncode == 130, (out, err)
    assert out.count("interrupted:") == 2 and "Traceback" not in out + err
    assert not any(t.state == TrialState.RUNNING for t in trials(tmp_path))


def test_a_bad_study_file_is_one_error_before_any_worker_starts(tmp_path) -> None:
    write_study(tmp_path, ZERO_COST_TOML.replace('space = "mobilenetv2-cifar"', 'space = "nope"'))
    parent = start(tmp_path, "--workers", "3")
    out, err = parent.communicate(timeout=120)
    assert parent.returncode == 2 and "starting" not in out
    assert len(err.strip().splitlines()) == 1 and "space" in err


def test_gpus_are_dealt_round_robin_and_cores_split(monkeypatch) -> None:
    assert worker_environments(3, ["0", "1"]) == [{"CUDA_VISIBLE_DEVICES": g} for g in ("0", "1", "0")]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert worker_environments(2, [], cpus=8) == [{"OMP_NUM_THREADS": "4"}] * 2
    assert worker_environments(4, [], cpus=2) == [{"OMP_NUM_THREADS": "1"}] * 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_environments(2, [], cpus=8) == [{}, {}]  # the user's setting stands
    with pytest.raises(ValueError, match="workers"):
        worker_environments(0, [])
