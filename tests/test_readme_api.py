"""The README's "Python API" example runs as written (digits, a few proxy steps: seconds)."""
from __future__ import annotations

from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    """The first Python block of the README's "Python API" section."""
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_the_python_api_example_in_the_readme_runs(tmp_path, monkeypatch, capsys) -> None:
    code = _example()
    assert len(code.strip().splitlines()) <= 12  # a ten-line example stays one
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{README}: Python API", "exec"), {})
    out = capsys.readouterr().out
    assert "accuracy" in out and "flops" in out
    assert (tmp_path / "api-demo.db").is_file()
