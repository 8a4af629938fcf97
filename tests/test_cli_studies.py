"""`fusionnas studies`: list the studies of a storage, delete one only once its name is typed again."""
from __future__ import annotations

import io

import optuna
import pytest
from optuna.trial import TrialState

from fusionnas.cli import main
from fusionnas.search import delete_study, list_studies

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _storage(folder, name: str = "tiny.db") -> str:
    """A SQLite storage with study ``tiny`` (2 complete, 1 failed, 1 running) and study ``other`` (empty)."""
    url = f"sqlite:///{folder / name}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="tiny", storage=url)
    for value in (1.0, 2.0):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=TrialState.FAIL)
    study.ask()
    optuna.create_study(study_name="other", storage=url)
    return url


def test_list_studies_counts_the_trials_of_each_state(tmp_path) -> None:
    url = _storage(tmp_path)
    tiny, other = sorted(list_studies(url), key=lambda s: s.name != "tiny")
    assert (tiny.name, tiny.n_trials, tiny.states["COMPLETE"], tiny.states["FAIL"], tiny.states["RUNNING"]) == \
        ("tiny", 4, 2, 1, 1)
    assert other.n_trials == 0 and tiny.started is not None


def test_lists_a_storage_one_line_per_study(tmp_path, capsys) -> None:
    url = _storage(tmp_path)
    assert main(["studies", "--storage", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{url}: 2 studies"
    assert lines[1].split() == ["study", "trials", "complete", "pruned", "failed", "running", "waiting", "started"]
    assert lines[3].split()[:7] == ["tiny", "4", "2", "0", "1", "1", "0"]


def test_without_storage_lists_the_storages_of_the_study_files_here(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "studies").mkdir()
    _storage(tmp_path / "studies")
    (tmp_path / "studies" / "tiny.toml").write_text('space = "mobilenetv2-cifar"\n')  # its storage: tiny.db
    (tmp_path / "never.toml").write_text('space = "mobilenetv2-cifar"\n')  # never run: no never.db
    (tmp_path / "broken.toml").write_text("space = \n")
    monkeypatch.chdir(tmp_path)
    assert main(["studies"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"sqlite:///{tmp_path / 'studies' / 'tiny.db'}: 2 studies") and "never" not in out
    assert not (tmp_path / "never.db").exists()


def test_delete_asks_for_the_name_again(tmp_path, monkeypatch, capsys) -> None:
    url = _storage(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("tiny\n"))
    assert main(["studies", "--storage", url, "--delete", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "holds 4 trials (2 complete, 1 failed, 1 running); deleting it cannot be undone" in out
    assert "deleted study tiny (4 trials)" in out
    assert [s.name for s in list_studies(url)] == ["other"]


@pytest.mark.parametrize("answer, argv, message", [
    ("tin\n", [], "nothing deleted: typed 'tin', not 'tiny'"),
    ("", [], "nothing deleted: no answer at the prompt; type the name, or pass --yes tiny"),
    ("", ["--yes", "other"], "nothing deleted: --yes 'other' does not match --delete 'tiny'"),
])
def test_delete_without_the_right_name_keeps_the_study(tmp_path, monkeypatch, capsys, answer, argv, message) -> None:
    url = _storage(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    assert main(["studies", "--storage", url, "--delete", "tiny", *argv]) == 2
    assert capsys.readouterr().err == f"fusionnas: error: {message}\n"
    assert [s.name for s in list_studies(url)] == ["other", "tiny"]


def test_yes_with_the_name_deletes_without_a_prompt(tmp_path, monkeypatch, capsys) -> None:
    url = _storage(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["studies", "--storage", url, "--delete", "tiny", "--yes", "tiny"]) == 0
    assert [s.name for s in list_studies(url)] == ["other"]


@pytest.mark.parametrize("argv, message", [
    (["--delete", "tinny"], "has no study 'tinny'; did you mean 'tiny'? it has: other, tiny"),
    (["--yes", "tiny"], "--yes tiny confirms a deletion; add --delete tiny"),
])
def test_user_errors_are_one_line(tmp_path, capsys, argv, message) -> None:
    url = _storage(tmp_path)
    assert main(["studies", "--storage", url, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert len(list_studies(url)) == 2


def test_a_missing_storage_file_is_an_error_and_stays_missing(tmp_path, capsys) -> None:
    assert main(["studies", "--storage", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "no such file" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    with pytest.raises(ValueError, match="no such file"):
        delete_study(f"sqlite:///{tmp_path / 'none.db'}", "tiny")
