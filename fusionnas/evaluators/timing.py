"""Timing a module: the median latency of one batch on the CPU or a CUDA GPU."""
from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.training import eval_mode

__all__ = ["measure_latency", "batch_shape"]


def batch_shape(input_shape: Sequence[int], batch_size: int) -> tuple[int, ...]:
    """``(batch_size, C, H, W)`` from ``(C, H, W)``; a 4-D shape stays as it is."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        return (batch_size, *shape)
    if len(shape) == 4:
        return shape
    raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")


def _resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' is not available on this machine; use `device` cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"can only measure on 'cpu' or 'cuda', got {str(device)!r}")
    return device


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 1,
    warmup: int = 5,
    repeats: int = 25,
    threads: int | None = None,
) -> float:
    """Median latency in milliseconds of ``model`` on one batch, after ``warmup`` runs.

    The model runs in eval mode under ``torch.inference_mode`` (a copy is not
    made: the caller's training flag is restored). On CPU the number of
    threads is fixed to ``threads`` (default: torch's current setting) for
    the measurement; on CUDA every run is synchronised.

    Args:
        model: the module to time.
        input_shape: (C, H, W), or (N, C, H, W) to override ``batch_size``.
        device: ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass.
        warmup: untimed runs first (allocator, caches, cuDNN autotuning).
        repeats: timed runs; the median is returned.
        threads: CPU threads during the measurement.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    device = _resolve_device(device)
    x = torch.randn(batch_shape(input_shape, batch_size), device=device)
    old_threads = torch.get_num_threads()
    try:
        with eval_mode(model):
            if threads is not None:
                torch.set_num_threads(threads)
            model.to(device)
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            for _ in range(warmup):
                model(x)
            sync()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                sync()
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(old_threads)
    return statistics.median(times) * 1e3
