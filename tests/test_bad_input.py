"""Bad input: each mistake gives one clear line on stderr, exit code 2, and changes nothing.

Every test starts from a copy of one small stored study (two COMPLETE trials and
one FAIL trial in ``tiny.db`` beside ``tiny.toml``), runs the command line
in-process (``fusionnas.cli.main``), and checks

* the exit code is 2 and stderr is exactly one line, ``fusionnas: error: ...``,
  naming the problem (warnings that would reach stderr count as lines too);
* every study in the storage has the same trials as before (number, state,
  values, params, user and system attributes), and no file or folder appeared
  or disappeared (no new database, artifacts folder, export or checkpoint).

docs/errors.md lists the same cases.
"""
from __future__ import annotations

import json
import logging
import shutil
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import _postgres
from _records import frozen_trial
from _studies import ZERO_COST_TOML
from fusionnas.cli import main
from fusionnas.evaluators.latency import LatencyModel
from fusionnas.spaces import get_space
from fusionnas.trial_record import TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

STUDY = ZERO_COST_TOML  # name "tiny" (the file's stem), storage tiny.db beside it, n_trials = 4
SPACE = 'space = "mobilenetv2-cifar"'
SPACE_TABLE = 'space = { name = "mobilenetv2-cifar",'  # a [space] table, inline: its lists follow


# -- the stored study every test starts from ----------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """``tiny.toml`` and ``tiny.db``: trials 0 and 1 COMPLETE (zero-cost), trial 2 FAIL."""
    folder = tmp_path_factory.mktemp("stored")
    (folder / "tiny.toml").write_text(STUDY, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert main(["search", "tiny.toml", "--n-trials", "2"]) == 0
    study = optuna.load_study(study_name="tiny", storage=sqlite(folder))
    study.add_trial(frozen_trial(TrialRecord(failure_reason="diverged: nan"), state=TrialState.FAIL, params={},
                                 distributions={}))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    return folder


@pytest.fixture
def work(template, tmp_path, monkeypatch) -> Path:
    """A private copy of the template, as the current directory."""
    for name in ("tiny.toml", "tiny.db"):
        shutil.copy2(template / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sqlite(folder: Path) -> str:
    return f"sqlite:///{folder / 'tiny.db'}"


def snapshot(url: str, names: tuple[str, ...] | None = None) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Every study in the storage (or those of ``names`` there) with everything stored about its trials:
    whole trials, equal only when all they hold is (number, state, values, params, user and system
    attributes, times, ...)."""
    storage = optuna.storages.RDBStorage(url)
    try:
        return {
            summary.study_name: optuna.load_study(study_name=summary.study_name, storage=storage).trials
            for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
            if names is None or summary.study_name in names
        }
    finally:
        storage.engine.dispose()


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@dataclass
class Result:
    code: int
    out: str
    lines: list[str]  # what the user would see on stderr


@pytest.fixture
def cli(capsys, caplog):
    """Run ``fusionnas ARGS`` in-process; stderr lines include warnings and logged warnings."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        caplog.clear()
        with warnings.catch_warnings(record=True) as shown:
            # What a user's interpreter shows by default (deprecations in libraries are hidden).
            warnings.simplefilter("default")
            for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=hidden)
            code = main(list(args))
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        lines += [f"{w.category.__name__}: {w.message}" for w in shown]
        lines += [f"fusionnas: {r.levelname}: {r.getMessage()}" for r in caplog.records
                  if r.levelno >= logging.WARNING]
        return Result(code, captured.out, lines)

    return run


def assert_refused(result: Result, *needles: str) -> str:
    """Exit code 2 and exactly one stderr line, ``fusionnas: error: ...``, containing ``needles``."""
    assert result.code == 2, (result.code, result.out, result.lines)
    assert len(result.lines) == 1, result.lines
    line = result.lines[0]
    assert line.startswith("fusionnas: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert "Traceback" not in result.out
    return line


@contextmanager
def unchanged(folder: Path, url: str | None = None, names: tuple[str, ...] | None = None) -> Iterator[None]:
    """Assert that the storage's trials (default: ``folder/tiny.db``) and ``folder``'s files stay as they were."""
    url = url or sqlite(folder)
    before = snapshot(url, names), files(folder)
    yield
    assert snapshot(url, names) == before[0], "the storage's trials changed"
    assert files(folder) == before[1], "files appeared or disappeared"


def write(folder: Path, text: str, name: str = "tiny") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    """1-based line number of the first line of ``text`` containing ``fragment``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


# -- the study file -----------------------------------------------------------------------------


def test_missing_study_file(work, cli) -> None:
    with unchanged(work):
        assert_refused(cli("search", "nothere.toml", "--storage", sqlite(work)),
                       "nothere.toml: no such study file; check the path")
        assert_refused(cli("pareto", "nothere.toml", "--storage", sqlite(work)), "no such study file")


def test_toml_syntax_error_names_the_line(work, cli) -> None:
    text = STUDY.replace("n_trials = 4", "n_trials = ")
    write(work, text)
    number = line_of(text, "n_trials")
    with unchanged(work):
        line = assert_refused(cli("search", "tiny.toml"), "tiny.toml: line ", "TOML syntax error",
                              f"line {number}")
    assert f"fix line {number}" in line


@pytest.mark.parametrize(("change", "needles"), [
    pytest.param(("n_trials = 4", "n_trials = 4\nn_trial = 5"),
                 ("tiny.toml: n_trial: unknown key; did you mean 'n_trials'?",), id="unknown-key"),
    pytest.param(("[budget]", "[budget]\nepochs_per_trial = 2"),
                 ("tiny.toml: budget.epochs_per_trial: unknown key",), id="unknown-key-in-table"),
    pytest.param(("n_trials = 4", 'n_trials = "ten"'),
                 ("tiny.toml: n_trials: expected an integer, got str 'ten'", "write n_trials = 20"),
                 id="wrong-type"),
    pytest.param(('space = "mobilenetv2-cifar"', 'space = "resnet18"'),
                 ("tiny.toml: space: unknown space 'resnet18'", "mobilenetv2-cifar"), id="unknown-space"),
    pytest.param(('name = "digits"', 'name = "mnist"'),
                 ("tiny.toml: dataset.name: unknown dataset 'mnist'", "cifar10"), id="unknown-dataset"),
    pytest.param(('metric = "flops"', 'metric = "latency"\ndevice = "jetson-xavier"'),
                 ("tiny.toml: objectives[1].device: unknown device 'jetson-xavier'", "jetson-nano"),
                 id="unknown-device"),
    pytest.param(("resolution = 8", "resolution = 8\nsteps = -5"),
                 ("tiny.toml: budget.steps: must be > 0, got -5",), id="negative-budget"),
    pytest.param(("n_trials = 4", "n_trials = 4\ntimeout_s = -60"),
                 ("tiny.toml: timeout_s: must be > 0, got -60.0",), id="negative-timeout"),
    pytest.param((SPACE, SPACE_TABLE + ' fusions = ["conv", "fft"] }'),
                 ("tiny.toml: space.fusions: 'fft' is not offered by mobilenetv2-cifar; "
                  "offered: conv, wht, dct, bft",), id="space-list-not-offered"),
    pytest.param((SPACE, SPACE_TABLE + " kernels = [] }"),
                 ("tiny.toml: space.kernels: is empty", "list some of: 3, 5"), id="space-list-empty"),
    pytest.param((SPACE, SPACE_TABLE + " widths = [1.0, 1] }"),
                 ("tiny.toml: space.widths: repeats 1; remove the duplicate",), id="space-list-repeats"),
    pytest.param((SPACE, SPACE_TABLE + ' depthwise = "conv" }'),
                 ("tiny.toml: space.depthwise: expected a list, got str 'conv'",), id="space-list-not-a-list"),
    pytest.param((SPACE, 'enqueue = ["baseline"]\n' + SPACE_TABLE + ' fusions = ["bft"] }'),
                 ("tiny.toml: enqueue[0]: preset 'baseline' lies outside the [space] lists (fusions = [\"bft\"])",
                  "remove it from enqueue or widen the [space] lists"), id="space-preset-outside"),
])
def test_bad_study_file(work, cli, change, needles) -> None:
    old, new = change
    assert old in STUDY
    write(work, STUDY.replace(old, new, 1))
    with unchanged(work):
        for command in ("search", "pareto"):
            assert_refused(cli(command, "tiny.toml"), *needles)


def test_negative_n_trials_on_the_command_line(work, cli) -> None:
    with unchanged(work):
        assert_refused(cli("search", "tiny.toml", "--n-trials", "-3"), "n_trials must be >= 1, got -3")


def test_negative_timeout_on_the_command_line(work, cli) -> None:
    with unchanged(work):
        assert_refused(cli("search", "tiny.toml", "--n-trials", "5", "--timeout", "-1"), "timeout", "-1")


# -- what the search checks before its first trial ----------------------------------------------


def test_impossible_constraint_in_a_new_study(work, cli) -> None:
    write(work, 'name = "tight"\nstorage = "tiny.db"\n' + STUDY + "[constraints]\nmax_params = 10\n",
          name="tight")
    with unchanged(work):
        assert_refused(cli("search", "tight.toml"), "tight.toml: constraints.max_params: the smallest "
                       "architecture of the space needs", "> limit 10", "raise max_params")


def test_impossible_constraint_when_resuming(work, cli) -> None:
    write(work, STUDY + "[constraints]\nmax_params = 10\n")  # constraints are not in the fingerprint
    with unchanged(work):
        assert_refused(cli("search", "tiny.toml"), "constraints.max_params: the smallest architecture")


def test_study_name_reused_with_another_space(work, cli) -> None:
    write(work, 'name = "tiny"\nstorage = "tiny.db"\n'
          + STUDY.replace('space = "mobilenetv2-cifar"', 'space = "mobilenetv2-imagenet"'), name="other")
    with unchanged(work):
        for args in (["search", "other.toml"], ["pareto", "other.toml"],
                     ["export", "other.toml", "--trial", "0", "--out", "model"]):
            assert_refused(cli(*args), "study 'tiny'", "fingerprint", "(space, dataset, objectives, budget)",
                           "give the study another name or use another storage")


def test_study_name_reused_with_a_restricted_space(work, cli) -> None:
    write(work, 'name = "tiny"\nstorage = "tiny.db"\n'
          + STUDY.replace(SPACE, SPACE_TABLE + ' fusions = ["conv"] }'), name="other")
    with unchanged(work):
        for args in (["search", "other.toml"], ["pareto", "other.toml"]):
            assert_refused(cli(*args), "study 'tiny'", "fingerprint", "give the study another name")


def nano_table(folder: Path) -> str:
    """A jetson-nano table "profiled on the device" with every part of the baseline but one; that key."""
    space = get_space("mobilenetv2-cifar")
    estimate = LatencyModel(space, "jetson-nano")
    estimate.predict(space.baseline())
    entries = dict(estimate.entries)
    missing = sorted(entries)[0]
    del entries[missing]
    LatencyModel(space, "jetson-nano", entries, source="measured").save(folder / "nano.json")
    return missing


LATENCY_STUDY = ('name = "nano"\nstorage = "tiny.db"\nenqueue = ["baseline"]\n'
                 + STUDY.replace('metric = "flops"', 'metric = "latency"\ndevice = "jetson-nano"')
                 .replace("n_trials = 4", "n_trials = 1")
                 + '[latency_tables]\njetson-nano = "{table}"\n')


def test_latency_table_missing_an_entry(work, cli) -> None:
    missing = nano_table(work)
    write(work, LATENCY_STUDY.format(table="nano.json"), name="nano")
    with unchanged(work):
        assert_refused(cli("search", "nano.toml"), "latency table for 'jetson-nano' has no entry", missing,
                       "fusionnas profile")


def test_latency_table_file_missing(work, cli) -> None:
    write(work, LATENCY_STUDY.format(table="nothere.json"), name="nano")
    with unchanged(work):
        assert_refused(cli("search", "nano.toml"), "latency table", "nothere.json", "does not exist",
                       "fusionnas profile")


# -- storages -----------------------------------------------------------------------------------


def test_unreachable_storage(work, cli) -> None:
    url = f"postgresql+psycopg2://fusionnas:hunter2@127.0.0.1:{_postgres.free_port()}/fusionnas"
    with unchanged(work):
        for args in (["search", "tiny.toml"], ["pareto", "tiny.toml"],
                     ["export", "tiny.toml", "--trial", "0", "--out", "model"]):
            line = assert_refused(cli(*args, "--storage", url), "cannot connect", "Connection refused",
                                  "postgresql+psycopg2://fusionnas:***@127.0.0.1")
            assert "hunter2" not in line


@pytest.mark.parametrize(("storage", "needles"), [
    pytest.param("nosuch://x", ("unknown database scheme 'nosuch'",), id="unknown-scheme"),
    pytest.param("sqlite:///{work}/no/such/folder/x.db", ("folder", "does not exist"), id="missing-folder"),
])
def test_unusable_storage_url(work, cli, storage, needles) -> None:
    with unchanged(work):
        assert_refused(cli("search", "tiny.toml", "--storage", storage.format(work=work)), *needles)


def test_reading_a_storage_that_does_not_exist_creates_nothing(work, cli) -> None:
    with unchanged(work):
        for args in (["pareto", "tiny.toml"], ["export", "tiny.toml", "--trial", "0", "--out", "model"]):
            assert_refused(cli(*args, "--storage", f"sqlite:///{work}/other.db"), "no such file",
                           "run `fusionnas search`")


@pytest.fixture
def postgres_study(postgres_url, tmp_path, monkeypatch):
    """A study with one trial on the PostgreSQL server: (study file, study name); deleted afterwards."""
    name = f"bad-input-{uuid.uuid4().hex[:8]}"
    write(tmp_path, f'name = "{name}"\n' + STUDY, name="pg")
    monkeypatch.chdir(tmp_path)
    assert main(["search", "pg.toml", "--storage", postgres_url, "--n-trials", "1"]) == 0
    yield tmp_path / "pg.toml", name
    optuna.delete_study(study_name=name, storage=postgres_url)


def test_wrong_postgres_password(postgres_url, postgres_study, cli) -> None:
    from sqlalchemy.engine import make_url

    study_file, name = postgres_study
    wrong = make_url(postgres_url).set(password="not-the-password").render_as_string(hide_password=False)
    with unchanged(study_file.parent, postgres_url, names=(name,)):
        assert len(snapshot(postgres_url, (name,))[name]) == 1
        for args in (["search", str(study_file), "--n-trials", "3"], ["pareto", str(study_file)],
                     ["export", str(study_file), "--trial", "0", "--out", "model"]):
            line = assert_refused(cli(*args, "--storage", wrong), "cannot connect",
                                  'password authentication failed for user "fusionnas"')
            assert "not-the-password" not in line and "fusionnas:***@" in line


# -- export and train ---------------------------------------------------------------------------


def test_export_of_a_trial_that_does_not_exist(work, cli) -> None:
    with unchanged(work):
        assert_refused(cli("export", "tiny.toml", "--trial", "99", "--out", "model"),
                       "the study has no trial 99 (trials 0-2)")


def test_export_of_a_failed_trial(work, cli) -> None:
    with unchanged(work):
        assert_refused(cli("export", "tiny.toml", "--trial", "2", "--out", "model"),
                       "trial 2 is FAIL (diverged: nan), it has no result to export")


def test_export_into_a_non_empty_folder_without_force(work, cli) -> None:
    (work / "model").mkdir()
    (work / "model" / "notes.txt").write_text("mine")
    (work / "model.onnx").write_text("not a folder")
    with unchanged(work):
        for out in ("model", "model.onnx"):
            assert_refused(cli("export", "tiny.toml", "--trial", "0", "--out", out),
                           f"--out {out} exists and is not empty; choose a new folder or use --force to overwrite")
    assert (work / "model" / "notes.txt").read_text() == "mine"
    assert (work / "model.onnx").read_text() == "not a folder"


def test_export_best_by_a_metric_the_study_lacks(work, cli) -> None:
    with unchanged(work):
        assert_refused(cli("export", "tiny.toml", "--best", "accuracy", "--out", "model"),
                       "the study records no metric 'accuracy'")


def corrupt(kind: str) -> str:
    document = json.loads(get_space("mobilenetv2-cifar").baseline().to_json())
    if kind == "bad-operator":
        document["blocks"][3]["project"] = "fft9"
    elif kind == "missing-field":
        del document["blocks"]
    else:
        return {"not-json": "{oops", "empty": "", "not-an-object": "[1, 2]"}[kind]
    return json.dumps(document)


@pytest.mark.parametrize(("kind", "needle"), [
    ("not-json", "invalid architecture JSON"),
    ("empty", "invalid architecture JSON"),
    ("not-an-object", "[1, 2]"),
    ("bad-operator", "blocks[3].project: 'fft9' is not one of conv, wht, dct, bft"),
    ("missing-field", "blocks"),
])
def test_corrupt_arch_json(work, cli, kind, needle) -> None:
    (work / "arch.json").write_text(corrupt(kind))
    with unchanged(work):
        assert_refused(cli("train", "arch.json", "--dataset", "digits", "--epochs", "1", "--out", "full.pt"),
                       "arch.json: ", needle, "fusionnas export")
        assert_refused(cli("show", "mobilenetv2-cifar", "--arch", "arch.json"), needle)
