"""Latency estimates for a device this machine cannot measure on: the Jetson Nano's CPU.

An estimate starts from a measurement here: each part is timed on this
machine in the runtime the device would run (onnxruntime, see
:mod:`fusionnas.evaluators.runtimes`), and that time is scaled to the device
as a roofline: CPU work (arithmetic and per-operator overhead) by the ratio
of this machine's dense rate to the device's, bounded below by the part's
bytes at the device's memory bandwidth. This machine's dense rate is
measured once per table (:func:`measure_host_rates`): the seed 1x1 conv in
the runtime and threads of the table. The figures stay estimates and every
report says so.

The Jetson Orin Nano's GPU profile was retired: its per-operator costs can
only be grounded in CUDA measurements, which this machine cannot make. On
an Orin, ``fusionnas profile --device cuda`` writes a measured table.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.runtimes import measure_in_runtime
from fusionnas.evaluators.timing import batch_shape
from fusionnas.evaluators.training import eval_mode

__all__ = ["DeviceProfile", "DEVICE_PROFILES", "MEASURABLE_DEVICES", "HostRates", "measure_host_rates",
           "estimate_latency", "moved_bytes", "list_devices", "device_profile"]

# The seed's speed-test operator (seed 002): a 1x1 conv of 1024 channels on a 32x32 map.
_ANCHOR_CHANNELS, _ANCHOR_SIZE = 1024, 32


@dataclass(frozen=True)
class HostRates:
    """What this machine achieves, measured: dense multiply-adds/s of the anchor conv in
    ``runtime`` on ``threads`` threads, and bytes/s of a large copy (read + write; recorded
    beside the tables, for comparison with the device's bandwidth)."""

    runtime: str
    threads: int
    dense_macs_per_s: float
    bytes_per_s: float


def measure_host_rates(runtime: str = "onnxruntime", threads: int = 1, repeats: int = 5) -> HostRates:
    """Measure :class:`HostRates` here (about a second)."""
    conv = nn.Conv2d(_ANCHOR_CHANNELS, _ANCHOR_CHANNELS, 1, bias=False)
    shape = (_ANCHOR_CHANNELS, _ANCHOR_SIZE, _ANCHOR_SIZE)
    ms = measure_in_runtime(conv, shape, runtime, threads=threads, warmup=2, repeats=repeats)
    macs = _ANCHOR_CHANNELS**2 * _ANCHOR_SIZE**2
    source = np.ones(2**24, dtype=np.float32)  # 64 MiB: far beyond any cache
    target = np.empty_like(source)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - start)
    return HostRates(runtime, threads, macs / (ms / 1e3), 2 * source.nbytes / statistics.median(times))


@dataclass(frozen=True)
class DeviceProfile:
    """A device's rates, to scale parts measured here to it (see the module docstring).

    ``dense_macs_per_s``: multiply-adds per second a dense layer reaches on the
    device; ``bytes_per_s``: memory bandwidth a CPU stream reaches; ``runtime``:
    the runtime whose measurements here are scaled; ``references``: where the
    figures come from.
    """

    name: str
    description: str
    dense_macs_per_s: float
    bytes_per_s: float
    runtime: str
    references: str

    def scale(self, measured_ms: float, moved_bytes: float, host: HostRates) -> float:
        """Milliseconds on the device of a part that took ``measured_ms`` here and moves ``moved_bytes``.

        A roofline on the device: the part's time here is CPU work (arithmetic
        and per-operator overhead) that the device does ``host.dense / device.dense``
        times slower, unless its bytes at the device's bandwidth take longer.
        """
        cpu_ms = measured_ms * host.dense_macs_per_s / self.dense_macs_per_s
        return max(cpu_ms, moved_bytes / self.bytes_per_s * 1e3)


# Seed 002's speed test ran on the Jetson Nano's CPU (TFLite, 4x Cortex-A57): a 1x1
# conv over 10 images of 1024x32x32 took 2.3204 s, 10.74 G multiply-adds: 4.63 G/s,
# the only dense rate measured on the board that we have. Memory: 25.6 GB/s LPDDR4
# (NVIDIA's Jetson Nano datasheet), of which a CPU stream reaches about half (decision).
_JETSON_NANO = DeviceProfile(
    name="jetson-nano",
    description="Jetson Nano CPU (4x Cortex-A57), estimated from parts measured here in onnxruntime",
    dense_macs_per_s=4.63e9,
    bytes_per_s=12.8e9,
    runtime="onnxruntime",
    references=(
        "seed 002 author code (phy710/Block-Walsh-Hadamard-Transform-Layer-Speed-Test): "
        "1x1 conv 10x1024x32x32 2.3204 s on a Jetson Nano; NVIDIA Jetson Nano datasheet: 25.6 GB/s"
    ),
)

DEVICE_PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (_JETSON_NANO,)}
MEASURABLE_DEVICES = ("cpu", "cuda")


def list_devices() -> list[str]:
    """Every device a latency objective or constraint may name."""
    return [*MEASURABLE_DEVICES, *sorted(DEVICE_PROFILES)]


def _units(module: nn.Module, prefix: str = "") -> Iterable[tuple[str, nn.Module]]:
    """The modules that each run as one operator: fusionnas operators and plain leaves."""
    if not list(module.children()) or type(module).__module__.startswith("fusionnas.layers"):
        yield prefix, module
        return
    for name, child in module.named_children():
        yield from _units(child, f"{prefix}.{name}" if prefix else name)


@torch.no_grad()
def _unit_traffic(module: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Bytes read and written (inputs, outputs, parameters) by every unit in one forward pass."""
    traffic: dict[str, float] = {}
    hooks = []

    def hook_for(name: str):
        def hook(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            moved = sum(t.numel() * t.element_size() for t in (*inputs, output) if torch.is_tensor(t))
            moved += sum(p.numel() * p.element_size() for p in m.parameters())
            traffic[name] = traffic.get(name, 0.0) + moved

        return hook

    for name, unit in _units(module):
        hooks.append(unit.register_forward_hook(hook_for(name)))
    try:
        module(x)
    finally:
        for h in hooks:
            h.remove()
    return traffic


def moved_bytes(module: nn.Module, input_shape: Sequence[int]) -> float:
    """Bytes read and written by every operator of ``module`` in one forward pass at batch 1."""
    with eval_mode(module):
        return float(sum(_unit_traffic(module, torch.zeros(batch_shape(input_shape, 1))).values()))


def estimate_latency(module: nn.Module, input_shape: Sequence[int], profile: DeviceProfile | str, *,
                     host: HostRates | None = None, measured_ms: float | None = None, repeats: int = 25) -> float:
    """Estimated milliseconds of ``module`` at batch 1 on ``profile``'s device.

    ``measured_ms``: the module's time here in ``host.runtime`` (measured when
    None); ``host``: this machine's rates (measured when None, one thread).
    """
    if isinstance(profile, str):
        profile = device_profile(profile)
    host = host or measure_host_rates(profile.runtime)
    if measured_ms is None:
        measured_ms = measure_in_runtime(module, input_shape, host.runtime, threads=host.threads, repeats=repeats)
    return profile.scale(measured_ms, moved_bytes(module, input_shape), host)


def device_profile(name: str) -> DeviceProfile:
    """The profile of a Jetson target; a clear error for any other name."""
    try:
        return DEVICE_PROFILES[name]
    except KeyError:
        raise UserError(f"unknown device {name!r}; known: {', '.join(list_devices())}") from None
