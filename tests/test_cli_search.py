"""End to end through the command line: search -> pareto -> export -> ONNX -> train, resume,
two workers on one SQLite file, Ctrl-C, and one-line user errors that leave the storage alone."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from _studies import PROXY_TOML, ZERO_COST_TOML, write_study
from fusionnas.trial_record import TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # two workers share two cores


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "fusionnas.cli", *args], cwd=cwd, env=ENV, text=True,
                          capture_output=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"fusionnas {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def load(folder: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / f'{name}.db'}")


def test_search_pareto_export_onnx_train(tmp_path) -> None:
    write_study(tmp_path, PROXY_TOML)
    out = cli("search", "tiny.toml", cwd=tmp_path).stdout
    assert "[3/3] trial 2" in out and "3 trials (3 complete" in out
    shown = cli("pareto", "tiny.toml", "--csv", "all.csv", "--plot", "front.png", "--measure", cwd=tmp_path).stdout
    assert "3 trials (3 complete, 3 feasible, 0 failed)" in shown and "ops: per block" in shown
    frame = pd.read_csv(tmp_path / "all.csv")
    assert {"number", "archid", "arch", "accuracy", "flops", "params", "feasible", "is_pareto"} <= set(frame.columns)
    assert len(frame) == 3 and frame["is_pareto"].any()
    assert (tmp_path / "front.png").read_bytes().startswith(b"\x89PNG")
    header = next(line for line in shown.splitlines() if line.split()[:1] == ["trial"] and "measured" in line)
    assert header.split()[2:] == ["accuracy", "MFLOPs", "measured_ms@cpu/onnxruntime", "vs_baseline@cpu/onnxruntime"]
    assert re.search(r"^\s*baseline\s+\w{12}\s+\S+\s+\S+\s+[\d.]+\s+1\.000$", shown, re.M), shown

    exported = cli("export", "tiny.toml", "--best", "accuracy", "--out", "model", cwd=tmp_path).stdout
    number = int(re.match(r"exported trial (\d+) ", exported).group(1))
    assert frame.set_index("number").loc[number, "accuracy"] == frame["accuracy"].max()
    assert "weights.pt" in exported and re.search(r"the all-conv baseline [\d.]+ ms \([\d.]+x its speed\)", exported)
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["MODEL_CARD.md", "arch.json", "model.onnx", "weights.pt"]
    session = onnxruntime.InferenceSession(str(tmp_path / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.random.default_rng(0).standard_normal((1, 3, 32, 32), np.float32)})
    assert logits.shape == (1, 10) and np.isfinite(logits).all()
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "- Dataset: digits; 10 classes, output i is class i: 0, 1, 2" in card and "(x - mean) / std" in card
    assert "3x32x32 images (the space's input); its accuracy was measured on images resized bilinearly to 8x8" in card
    assert "after proxy training for 2 optimiser steps (batch 8, peak lr 0.05, 10% of the training split" in card

    trained = cli("train", "model/arch.json", "--dataset", "digits", "--epochs", "0.05", "--batch-size", "16",
                  "--resolution", "8", "--out", "model/full.pt", cwd=tmp_path).stdout
    assert "validation accuracy" in trained and (tmp_path / "model" / "full.pt").is_file()


def test_resume_adds_trials_and_a_finished_study_returns_at_once(tmp_path) -> None:
    write_study(tmp_path, ZERO_COST_TOML)
    cli("search", "tiny.toml", "--n-trials", "2", cwd=tmp_path)
    assert len(load(tmp_path).trials) == 2
    cli("search", "tiny.toml", cwd=tmp_path)  # the file's n_trials = 4
    again = cli("search", "tiny.toml", cwd=tmp_path).stdout
    study = load(tmp_path)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert "[" not in again.splitlines()[-1] and "4 trials (4 complete" in again


def test_two_workers_share_one_sqlite_study(tmp_path) -> None:
    write_study(tmp_path, ZERO_COST_TOML.replace("n_trials = 4", "n_trials = 6"))
    args = [sys.executable, "-m", "fusionnas.cli", "search", "tiny.toml"]
    workers = [subprocess.Popen(args, cwd=tmp_path, env=ENV, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = load(tmp_path)
    # Both workers stop at the study's total; each may have started one trial as the other finished.
    assert 6 <= len(study.trials) <= 7
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(any(f"trial {n} " in out for out, _ in outputs) for n in range(len(study.trials)))
    assert all("trial" in out for out, _ in outputs)  # both did work


def test_ctrl_c_stops_cleanly_and_the_study_resumes(tmp_path) -> None:
    slow = PROXY_TOML.replace("steps = 2", "steps = 40")
    write_study(tmp_path, slow)
    worker = subprocess.Popen([sys.executable, "-m", "fusionnas.cli", "search", "tiny.toml"], cwd=tmp_path,
                              env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert worker.stdout is not None
    first = ""
    while not first.startswith("[1/3]"):
        first = worker.stdout.readline()
        assert first or worker.poll() is None, worker.stderr.read() if worker.stderr else ""
    deadline = time.monotonic() + 60
    running = (TrialState.RUNNING,)
    while not any(t.number == 1 and "flops" in TrialRecord.read(t).costs  # past its costs: training
                  for t in load(tmp_path).get_trials(deepcopy=False, states=running)):
        assert worker.poll() is None and time.monotonic() < deadline, "trial 1 never started training"
        time.sleep(0.05)
    worker.send_signal(signal.SIGINT)  # while the second trial trains (40 steps: seconds)
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 130, (out, err)
    assert "interrupted: trial 1 marked failed" in err and "Traceback" not in err
    study = load(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert TrialRecord.read(study.trials[1]).failure_reason == "interrupted"
    cli("search", "tiny.toml", cwd=tmp_path)
    states = [t.state for t in load(tmp_path).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


def storage_bytes(folder: Path) -> bytes:
    return (folder / "tiny.db").read_bytes()


def test_user_errors_are_one_line_and_change_nothing(tmp_path) -> None:
    write_study(tmp_path, ZERO_COST_TOML)
    missing = cli("pareto", "tiny.toml", cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "no such file; run `fusionnas search`" in missing.stderr
    assert not (tmp_path / "tiny.db").exists()
    cli("search", "tiny.toml", "--n-trials", "2", cwd=tmp_path)
    before = storage_bytes(tmp_path)
    changed = tmp_path / "changed.toml"
    changed.write_text('name = "tiny"\nstorage = "tiny.db"\n' + ZERO_COST_TOML.replace("resolution = 8", "resolution = 16"))
    # A few errors through the real console script, one per command and phase; test_bad_input.py
    # runs every user error in-process.
    cases = [
        (["search", "nothere.toml"], "no such study file"),
        (["search", "changed.toml"], "fingerprint"),
        (["export", "tiny.toml", "--trial", "7", "--out", "e1"], "has no trial 7"),
        (["pareto", "tiny.toml", "--storage", "postgresql+psycopg2://u:secret@127.0.0.1:1/db"], "cannot connect"),
    ]
    for args, message in cases:
        done = cli(*args, cwd=tmp_path, check=False)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "secret" not in lines[0], (args, done.stderr)
    assert storage_bytes(tmp_path) == before
    assert not (tmp_path / "e1").exists()
