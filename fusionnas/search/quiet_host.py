"""Quiet measurements: every worker on this machine pauses its training while one of them times latency.

A latency measured while another worker trains on the other core is not the
one an idle machine shows: the other worker's threads take turns on the
cores and share the memory bus and caches with the networks being timed,
and not alike for every network (a memory-bound transform suffers more than
a conv). Training steps are not all of it: exports, FLOP counts and
validation passes load the machine too. So the workers of a study that
share an artifacts folder share two lock files in it:

* ``latency-measurement``: held exclusively by the one worker measuring;
* ``working``: held shared by every worker while it works on a trial
  (:meth:`QuietHost.working`), exclusively by the measuring worker once it
  has the first (:meth:`QuietHost.measuring`).

A worker checks the first at its pause points (:meth:`QuietHost.pause_point`:
after every optimiser step, and wherever it waits): when a measurement holds
it, the worker lets go of ``working`` and waits for the measurement to end.
The measurer, which took ``latency-measurement`` first so that no worker
starts anew, gets ``working`` once every other worker has reached a pause
point (at most an export or a validation pass later). Both are ``flock``
locks: the kernel releases them when a worker dies.

Example:
    >>> host = QuietHost(artifacts)                     # doctest: +SKIP
    >>> with host.working():                            # doctest: +SKIP
    ...     train(model, on_step=lambda step: host.pause_point())
    ...     with host.measuring():
    ...         meter.measure(model)
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fusionnas.search.coordination import LOCK_SUFFIX, file_lock, flock_wait

__all__ = ["QuietHost"]


class QuietHost:
    """The measurement and work locks of the workers sharing ``folder`` (None: one worker, no locks).

    One per worker process and folder: :meth:`working` nests, and the pause
    points and :meth:`measuring` let go of what this worker holds.

    Args:
        folder: the study's artifacts folder, on this machine.
        poll: called every 0.1 s while waiting (may raise to stop waiting, e.g. on a signal).
    """

    def __init__(self, folder: Path | None, poll: Callable[[], None] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.poll = poll
        self._fds: tuple[int, int] | None = None  # (measurement, working) while this worker works
        self._depth = 0
        self._held = False  # ``working`` held shared

    def _path(self, name: str) -> Path:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    @contextmanager
    def working(self) -> Iterator[None]:
        """Inside the block this worker works (trains, exports, evaluates): a measurement by another
        worker waits for its next pause point. Nests."""
        if self.folder is None:
            yield
            return
        if self._depth == 0:
            self._fds = tuple(os.open(os.fspath(self._path(name)) + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o666)
                              for name in ("latency-measurement", "working"))
        self._depth += 1
        try:
            if not self._held:
                self._resume()
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                assert self._fds is not None
                for fd in self._fds:
                    os.close(fd)  # closing a file releases its locks
                self._fds, self._held = None, False

    def _resume(self) -> None:
        """Take ``working`` shared, after any measurement under way (none holds ``working`` while
        this worker holds ``latency-measurement`` shared)."""
        assert self._fds is not None
        measurement, working = self._fds
        flock_wait(measurement, fcntl.LOCK_SH, self.poll)
        try:
            flock_wait(working, fcntl.LOCK_SH, self.poll)
            self._held = True
        finally:
            fcntl.flock(measurement, fcntl.LOCK_UN)

    def _release(self) -> bool:
        """Let go of ``working``; True when it was held."""
        if self._fds is None or not self._held:
            return False
        fcntl.flock(self._fds[1], fcntl.LOCK_UN)
        self._held = False
        return True

    def pause_point(self) -> None:
        """Wait here while another worker measures (one system call when none does)."""
        if self._fds is None:
            return
        measurement = self._fds[0]
        try:
            fcntl.flock(measurement, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            with self.paused():
                pass
            return
        fcntl.flock(measurement, fcntl.LOCK_UN)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Inside the block this worker neither works nor keeps a measurement waiting (e.g. a sleep)."""
        released = self._release()
        try:
            yield
        finally:
            if released:
                self._resume()

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """Inside the block this worker alone measures, and every other worker on this machine waits."""
        if self.folder is None:
            yield
            return
        with self.paused(), file_lock(self._path("latency-measurement"), poll=self.poll), \
                file_lock(self._path("working"), poll=self.poll):
            yield
