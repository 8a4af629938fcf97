"""docs/study-file.md is the text generated from the study-file dataclasses, and names every key."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fusionnas.search._study_file import _SCHEMA

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "study-file.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    # a fresh process: operators registered by other tests would change the listed choices
    generated = subprocess.run([sys.executable, "-m", "fusionnas.search.study_file_docs"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    assert DOC.read_text(encoding="utf-8") == generated, (
        "docs/study-file.md is stale: run `python -m fusionnas.search.study_file_docs > docs/study-file.md`")


def test_every_key_the_reader_accepts_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    headings = {"": "## Top level", "objectives": "## [[objectives]]"}
    for section, keys in _SCHEMA.items():
        part = text.split(headings.get(section, f"## [{section}]") + "\n", 1)[1].split("\n## ", 1)[0]
        for key in keys:
            assert f"| `{key}` |" in part, f"{section or 'top level'}: {key} is missing from {DOC}"
