"""Files replaced in one step, so a reader (or a run resumed after a crash) never sees half of one.

The new content is written beside the target under a hidden temporary name
unique to this process and call, then renamed over it with :func:`os.replace`,
which is atomic on one file system; several workers saving the same file
therefore never write into each other's temporary file.

Example:
    >>> with atomic_path("table.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to: it replaces ``path`` when the block ends
    cleanly, and is removed when the block raises (``path`` is then left as it was)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a clean replace there is nothing left to remove
