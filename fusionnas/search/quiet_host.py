"""Quiet measurements: every worker on this machine pauses its training while one of them times latency.

A latency measured while another worker trains on the other core is not the
one an idle machine shows: the trainer's threads take turns on the cores and
share the memory bus and caches with the networks being timed, and not alike
for every network (a memory-bound transform suffers more than a conv). So the
workers of a study that share an artifacts folder share two lock files in it:

* ``latency-measurement``: held exclusively by the one worker measuring;
* ``training``: held shared by every worker while it trains, exclusively by
  the measuring worker once it has the first.

A trainer checks the first after every optimiser step (:meth:`QuietHost.training`
yields that check): when a measurement holds it, the trainer lets go of
``training`` and waits for the measurement to end. The measurer, which took
``latency-measurement`` first, so that no trainer starts a step anew, then
gets ``training`` as soon as every trainer has finished the step it was in.
Both are ``flock`` locks: the kernel releases them when a worker dies.

Example:
    >>> host = QuietHost(artifacts)                     # doctest: +SKIP
    >>> with host.training() as pause_point:            # doctest: +SKIP
    ...     train(model, on_step=lambda step: pause_point())
    >>> with host.measuring():                          # doctest: +SKIP
    ...     meter.measure(model)
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
    """The measurement and training locks of the workers sharing ``folder`` (None: one worker, no locks).

    Args:
        folder: the study's artifacts folder, on this machine.
        poll: called every 0.1 s while waiting (may raise to stop waiting, e.g. on a signal).
    """

    def __init__(self, folder: Path | None, poll: Callable[[], None] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.poll = poll

    def _path(self, name: str) -> Path:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """Inside the block this worker alone measures, and no worker on this machine trains."""
        if self.folder is None:
            yield
            return
        with file_lock(self._path("latency-measurement"), poll=self.poll), \
                file_lock(self._path("training"), poll=self.poll):
            yield

    @contextmanager
    def training(self) -> Iterator[Callable[[], None]]:
        """Training inside the block; call what it yields after every optimiser step (the pause point)."""
        if self.folder is None:
            yield lambda: None
            return
        measurement = os.open(os.fspath(self._path("latency-measurement")) + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT,
                              0o666)
        training = os.open(os.fspath(self._path("training")) + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o666)

        def enter() -> None:
            # No measurer holds ``training`` while this worker holds ``latency-measurement`` shared.
            flock_wait(measurement, fcntl.LOCK_SH, self.poll)
            flock_wait(training, fcntl.LOCK_SH, self.poll)
            fcntl.flock(measurement, fcntl.LOCK_UN)

        def pause_point() -> None:
            try:  # free unless a worker measures: one system call per step
                fcntl.flock(measurement, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                fcntl.flock(training, fcntl.LOCK_UN)  # what the measurer waits for
                enter()
                return
            fcntl.flock(measurement, fcntl.LOCK_UN)

        try:
            enter()
            yield pause_point
        finally:
            os.close(training)  # closing a file releases its locks
            os.close(measurement)
