"""run_study: create or resume, the study's total, presets, fingerprints, user errors, Ctrl-C."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from fusionnas.evaluators import train_proxy
from _studies import PROXY, ZERO_COST, study_config
from fusionnas.search import (
    SearchInterrupted,
    StudyConfigError,
    StudyMismatchError,
    artifacts_dir,
    count_trials,
    format_progress,
    open_study,
    run_study,
)
from fusionnas.errors import UserError
from fusionnas.search.artifacts import OWNER_FILE
from fusionnas.search.storage import StorageError
from fusionnas.spaces import get_space
from fusionnas.trial_record import StudyRecord, TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_runs_resumes_and_adds_trials_to_the_same_study(tmp_path) -> None:
    config = study_config(tmp_path, ZERO_COST, enqueue=["baseline"], n_trials=2)
    lines = []
    study = run_study(config, progress=lambda p: lines.append(format_progress(p)))
    assert config.storage == f"sqlite:///{tmp_path / 'tiny.db'}"
    assert len(study.trials) == 2 and len(lines) == 2
    assert TrialRecord.read(study.trials[0]).archid == get_space("mobilenetv2-cifar").baseline().archid
    assert StudyRecord.read(study).fingerprint == config.fingerprint
    assert study.metric_names == ["synflow", "flops"]
    assert lines[-1].startswith("[2/2] trial 1 ") and "feasible 2" in lines[-1]

    again = run_study(config, progress=False)  # the study is complete: nothing runs
    assert len(again.trials) == 2
    more = run_study(config, n_trials=4, progress=False)
    assert [t.number for t in more.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in more.trials)
    assert TrialRecord.read(more.trials[0]).preset == "baseline"  # enqueued once only


def test_journal_storage(tmp_path) -> None:
    config = study_config(tmp_path, ZERO_COST, n_trials=1, storage="runs.log")
    (tmp_path / "runs.log").parent.mkdir(exist_ok=True)
    assert config.storage == f"journal:///{tmp_path / 'runs.log'}"
    study = run_study(config, progress=False)
    assert len(study.trials) == 1 and (tmp_path / "runs.log").stat().st_size > 0


def test_a_changed_study_under_the_same_name_is_refused(tmp_path) -> None:
    run_study(study_config(tmp_path, ZERO_COST, n_trials=1), progress=False)
    changed = study_config(tmp_path, ZERO_COST, n_trials=3, budget={"kind": "zero_cost", "resolution": 16})
    with pytest.raises(StudyMismatchError, match="fingerprint .* another name"):
        run_study(changed, progress=False)
    stored = optuna.load_study(study_name="tiny", storage=changed.storage)
    assert len(stored.trials) == 1  # unchanged


def test_user_errors_leave_no_storage_behind(tmp_path) -> None:
    impossible = study_config(tmp_path, ZERO_COST, constraints={"max_params": 10.0})
    with pytest.raises(StudyConfigError, match="constraints.max_params: the smallest architecture"):
        run_study(impossible, progress=False)
    missing = study_config(tmp_path, ZERO_COST, dataset={"name": "cifar10", "root": str(tmp_path / "nodata")})
    with pytest.raises(ValueError, match="cifar"):
        run_study(missing, progress=False)
    with pytest.raises(StorageError, match="folder .* does not exist"):
        run_study(study_config(tmp_path, ZERO_COST), storage=f"sqlite:///{tmp_path}/no/such/x.db", progress=False)
    with pytest.raises(StorageError, match="no such file"):
        open_study(study_config(tmp_path, ZERO_COST))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_ctrl_c_fails_the_running_trial_and_the_study_resumes(tmp_path) -> None:
    config = study_config(tmp_path, PROXY, n_trials=3)
    calls = []

    def interrupted_once(model, data, budget, progress=False, on_step=None):
        calls.append(model)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train_proxy(model, data, budget, on_step=on_step)

    with pytest.raises(SearchInterrupted) as stop:
        run_study(config, progress=False, train=interrupted_once)
    assert stop.value.trial_number == 1
    study = open_study(config)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert TrialRecord.read(study.trials[1]).failure_reason == "interrupted"
    assert count_trials(study) == 1  # the interrupted trial does not count
    study = run_study(config, progress=False, train=interrupted_once)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                               TrialState.COMPLETE]


def test_a_run_stops_when_every_trial_fails(tmp_path) -> None:
    def broken(model, data, budget, progress=False, on_step=None):
        raise RuntimeError("CUDA error: device-side assert triggered")

    config = study_config(tmp_path, PROXY, n_trials=20)
    with pytest.raises(ValueError, match="last 5 trials failed .*device-side assert"):
        run_study(config, progress=False, train=broken)
    study = open_study(config)
    assert len(study.trials) == 5
    assert all(TrialRecord.read(t).failure_reason.startswith("RuntimeError: CUDA error") for t in study.trials)


def test_a_real_run_skips_infeasible_trials_and_survives_a_failure(tmp_path) -> None:
    """Baseline (92.8M FLOPs) over the limit, all-BFT (46.4M) under it; the first training diverges."""
    from fusionnas.evaluators import TrainingDiverged

    calls = []

    def diverge_first(model, data, budget, progress=False, on_step=None):
        calls.append(model)
        if len(calls) == 1:
            raise TrainingDiverged("training loss is nan at step 1 of 2; lower lr", step=1, loss=float("nan"))
        return train_proxy(model, data, budget, on_step=on_step)

    config = study_config(tmp_path, PROXY, n_trials=4, enqueue=["baseline", "all-bft", "all-dct", "wht-last-third"],
                          constraints={"max_flops": 8e7})
    study = run_study(config, progress=False, train=diverge_first)
    states = [(t.state, TrialRecord.read(t).feasible) for t in study.trials]
    assert states == [(TrialState.COMPLETE, False), (TrialState.FAIL, True), (TrialState.COMPLETE, False),
                      (TrialState.COMPLETE, True)]  # all-dct keeps the conv's FLOPs until it prunes
    assert len(calls) == 2 and TrialRecord.read(study.trials[0]).evaluation.val_accuracy is None
    assert TrialRecord.read(study.trials[1]).failure_reason.startswith("diverged")
    assert [t.number for t in study.best_trials] == [3]
    weights = list((tmp_path / "tiny-artifacts" / "weights").iterdir())
    assert [w.name.split("-")[0] for w in weights] == [TrialRecord.read(study.trials[3]).archid]


def test_each_storage_keeps_its_own_artifacts(tmp_path) -> None:
    """The same study on its own storage, then on two others: no run replaces another storage's weights."""
    config = study_config(tmp_path, PROXY, enqueue=["baseline"], n_trials=1)
    home = run_study(config, progress=False)
    folder = artifacts_dir(config)
    assert folder == tmp_path / "tiny-artifacts"
    name = TrialRecord.read(home.trials[0]).evaluation.weights
    before = (folder / "weights" / name).stat()
    for storage in ("rep_a", "rep_b"):
        url = f"sqlite:///{tmp_path / storage}.db"
        study = run_study(config, storage=url, progress=False)
        assert TrialRecord.read(study.trials[0]).evaluation.weights == name  # same archid and fingerprint: the same file name
        own = artifacts_dir(config, url)
        assert own == tmp_path / f"tiny-artifacts-{storage}" and (own / "weights" / name).is_file()
        assert json.loads((own / OWNER_FILE).read_text()) == {"study": "tiny", "storage": f"{storage}.db"}
    after = (folder / "weights" / name).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # never replaced
    assert json.loads((folder / OWNER_FILE).read_text()) == {"study": "tiny", "storage": "tiny.db"}
    assert StudyRecord.read(home).data["name"] == "digits" and len(StudyRecord.read(home).data["classes"]) == 10


def test_artifacts_written_before_owners_stay_the_study_files_own(tmp_path) -> None:
    config = study_config(tmp_path, ZERO_COST, n_trials=1)
    legacy = tmp_path / "tiny-artifacts"
    (legacy / "weights").mkdir(parents=True)  # no owner.json: written by an older fusionnas
    assert artifacts_dir(config) == legacy
    assert artifacts_dir(config, f"sqlite:///{tmp_path}/other.db") == tmp_path / "tiny-artifacts-other"
    server = artifacts_dir(config, "postgresql+psycopg2://me:secret@db.example/nas")
    assert server.parent == tmp_path and len(server.name) == len("tiny-artifacts-") + 8
    run_study(config, progress=False)
    assert json.loads((legacy / OWNER_FILE).read_text())["storage"] == "tiny.db"  # adopted by its own storage
    # Another study file of the same name with its own storage beside it gets a folder of its own.
    twin = study_config(tmp_path, ZERO_COST, n_trials=1, storage="twin.db")
    assert artifacts_dir(twin) == tmp_path / "tiny-artifacts-twin"
    clash = tmp_path / "tiny-artifacts-clash"
    clash.mkdir()
    (clash / OWNER_FILE).write_text(json.dumps({"study": "tiny", "storage": "clash.log"}))
    with pytest.raises(UserError, match=r"tiny-artifacts-clash belongs to study 'tiny' in storage clash.log .*"
                                        r"not to 'tiny' in clash.db; rename one"):
        run_study(config, storage=f"sqlite:///{tmp_path}/clash.db", progress=False)
    assert not (tmp_path / "clash.db").exists()
