"""The native kernel library (``lib/libfusionnas_kernels.so``) through ctypes.

Loaded once, on first use. Where it was not built (or ``FUSIONNAS_KERNELS=reference``
is set, or :func:`reference_forms` is active) the operators run their reference
forms. The build says so where it fails (``make``); at run time the first
operator that could have used a kernel logs it once (logger ``fusionnas.kernels``,
level INFO: every worker process would otherwise repeat it on stderr), and
:func:`describe` (printed by the benchmarks) names what runs.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LIBRARY", "ABI_VERSION", "library", "available", "describe", "reference_forms", "unavailable_reason"]

LIBRARY = Path(__file__).resolve().parent / "lib" / "libfusionnas_kernels.so"
ABI_VERSION = 2
_BUILD_HINT = "build them with `python -m fusionnas.kernels.build` (make does at install)"

_i64, _int, _float, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_void_p
_SIGNATURES = {
    "fn_fwht": [_ptr, _ptr, _i64, _i64, _i64, _int],
    "fn_wht_pointwise": [_ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _ptr, _ptr, _ptr, _ptr, _int, _int],
    "fn_wht_pointwise_backward": [_ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _ptr, _ptr, _ptr, _int],
    "fn_butterfly": [_ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _int, _ptr, _ptr, _ptr, _ptr, _int, _int],
    "fn_wht2d": [_ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _i64, _int, _ptr, _ptr, _int, _float, _int],
}

_state = threading.local()
_logged = False
_log = logging.getLogger("fusionnas.kernels")


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    if os.environ.get("FUSIONNAS_KERNELS", "").lower() == "reference":
        return None, "FUSIONNAS_KERNELS=reference is set"
    if not LIBRARY.exists():
        return None, f"{LIBRARY.name} was not built; {_BUILD_HINT}"
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as error:
        return None, f"{LIBRARY.name} does not load ({error}); rebuild: `python -m fusionnas.kernels.build`"
    lib.fn_abi_version.restype = ctypes.c_int
    if lib.fn_abi_version() != ABI_VERSION:
        return None, f"{LIBRARY.name} has ABI {lib.fn_abi_version()}, this code needs {ABI_VERSION}; {_BUILD_HINT}"
    lib.fn_describe.restype = ctypes.c_char_p
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = None
    return lib, None


def library() -> ctypes.CDLL | None:
    """The loaded library, or None where the reference forms must run (logged once per process)."""
    if _state.__dict__.get("reference", False):
        return None
    lib, reason = _load()
    if lib is None:
        global _logged
        if not _logged:
            _logged = True
            _log.info("native kernels unavailable, the transforms run their reference forms: %s", reason)
    return lib


def available() -> bool:
    """Whether the native kernels are built, load, and are not switched off here."""
    return not getattr(_state, "reference", False) and _load()[0] is not None


def unavailable_reason() -> str | None:
    """Why the native kernels are not used (None when they are)."""
    if getattr(_state, "reference", False):
        return "reference_forms() is active"
    return _load()[1]


def describe() -> str:
    """``fusionnas-kernels 1 avx2 (8 floats)``, or why the reference forms run."""
    lib, reason = _load()
    return lib.fn_describe().decode() if lib is not None else f"reference forms ({reason})"


@contextmanager
def reference_forms() -> Iterator[None]:
    """Within the block (this thread), every operator runs its reference form, as without the kernels."""
    previous = getattr(_state, "reference", False)
    _state.reference = True
    try:
        yield
    finally:
        _state.reference = previous
