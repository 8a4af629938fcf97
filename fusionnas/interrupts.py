"""Ctrl-C and SIGTERM as a request to stop, honoured where stopping is safe.

A handler that raises ``KeyboardInterrupt`` wherever the main thread happens
to be can land inside a storage write (leaving a trial RUNNING), in a
``finally`` block, or in a ``__del__`` or weakref callback, where Python
prints and swallows it. So inside a :meth:`StopSignal.deferred` block (the
whole search) the handler only records the signal, and the work calls
:meth:`StopSignal.check` at its safe points: after the imports, between the
phases of a trial, after every training step, every 0.1 s while waiting.
Outside any block, and inside :meth:`StopSignal.interruptible`, it raises at
once, as Python's own SIGINT handler does (the other commands).

Only the first signal can raise: a second one while stopping is recorded
and changes nothing. :meth:`StopSignal.hold_until_exit` closes the last
window, so that the process never dies of the signal (-2, -15) after it
decided its exit code.

This module imports only the standard library, so that the command line can
install the handler before the seconds-long imports of torch and Optuna.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["StopSignal", "STOP", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Records SIGINT/SIGTERM; raises ``KeyboardInterrupt`` only where that is safe (see the module)."""

    def __init__(self) -> None:
        self.requested: int | None = None  # the first signal received
        self._modes: list[bool] = []  # innermost last: True raises at once, False defers
        self._installs = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            return  # a second signal while stopping
        self.requested = signum
        if not self._modes or self._modes[-1]:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop was requested (call it at a safe point)."""
        if self.requested is not None:
            raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A block in which a signal is only recorded, for :meth:`check` to act on."""
        with self._mode(False):
            yield

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that a signal may interrupt anywhere (nothing in it writes to a store)."""
        self.check()
        with self._mode(True):
            yield

    @contextmanager
    def _mode(self, raises: bool) -> Iterator[None]:
        self._modes.append(raises)
        try:
            yield
        finally:
            self._modes.pop()

    @contextmanager
    def installed(self) -> Iterator[StopSignal]:
        """Handle the signals for the duration; nested uses share the outermost installation.

        Outside the main thread, where Python allows no handlers, this does nothing.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def install(self) -> None:
        """Start handling SIGINT and SIGTERM (see :meth:`installed`); a first install forgets old signals."""
        if self._installs == 0:
            self.requested = None
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        self._installs += 1

    def uninstall(self) -> None:
        """Restore the handlers from before the first :meth:`install`."""
        self._installs -= 1
        if self._installs == 0:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

    def hold_until_exit(self) -> bool:
        """Ignore SIGINT/SIGTERM for the rest of the process; True if one came before.

        Only for the end of a process: the caller picks its exit code from the
        answer, so that a signal at any moment up to here gives 130, and one
        later cannot kill the process while Python shuts down (which restores
        the default action of signals that have a Python handler, but leaves
        ignored ones ignored).
        """
        self._modes.append(False)  # for good: a signal due now is recorded, not raised
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # from now on a signal to this thread waits
        pending = signal.sigpending() & set(SIGNALS)
        for sig in SIGNALS:  # signal.signal first runs the Python handlers of signals already due
            signal.signal(sig, signal.SIG_IGN)
        self._installs = 0
        if pending and self.requested is None:
            self.requested = min(pending)
        return self.requested is not None


STOP = StopSignal()  # signal handlers belong to the process: one instance for all
