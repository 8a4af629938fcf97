"""Atomic file replacement: readers see the old file or the new one, never half of one."""
from __future__ import annotations

import pytest

from fusionnas.atomic import atomic_path


def test_the_file_appears_only_when_the_block_ends(tmp_path) -> None:
    path = tmp_path / "table.json"
    path.write_text("old")
    with atomic_path(path) as tmp:
        tmp.write_text("new")
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and path.read_text() == "old"
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["table.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path) -> None:
    path = tmp_path / "table.json"
    path.write_text("old")
    with pytest.raises(OSError), atomic_path(path) as tmp:
        tmp.write_text("half of")
        raise OSError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.json"]


def test_each_writer_gets_its_own_temporary_name(tmp_path) -> None:
    path = tmp_path / "weights.pt"
    with atomic_path(path) as first, atomic_path(path) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert path.read_text() == "first"  # the outer block ends last: its file wins
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pt"]
