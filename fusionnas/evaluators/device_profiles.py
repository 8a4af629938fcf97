"""Latency estimates for devices this machine cannot measure on (the Jetson targets).

A :class:`DeviceProfile` estimates each operator from its FLOPs, memory
traffic and per-operator overhead; those figures are estimates and every
report says so.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.cost import module_flops
from fusionnas.evaluators.timing import batch_shape

__all__ = ["DeviceProfile", "DEVICE_PROFILES", "MEASURABLE_DEVICES", "estimate_latency", "list_devices",
           "device_profile"]


_DENSE_OPS = ("conv", "linear", "addmm", "matmul", "bmm", "mm", "einsum", "baddbmm")


@dataclass(frozen=True)
class DeviceProfile:
    """Roofline-style latency estimate for a device this machine cannot measure.

    A leaf module takes ``max(compute, memory) + overhead``: compute is its
    dense multiply-adds at ``dense_macs_per_s`` plus every other counted
    operation (transforms, element-wise, batch norm) at ``other_ops_per_s``;
    memory is its input, output and parameter bytes at ``bytes_per_s``.
    """

    name: str
    description: str
    dense_macs_per_s: float
    other_ops_per_s: float
    bytes_per_s: float
    overhead_s: float
    calibration: str = field(repr=False)
    bytes_per_value: int = 4

    def leaf_seconds(self, dense: float, other: float, moved_bytes: float) -> float:
        """Estimated seconds of one leaf module."""
        compute = dense / self.dense_macs_per_s + other / self.other_ops_per_s
        return max(compute, moved_bytes / self.bytes_per_s) + self.overhead_s


# Seed 002's speed test ran on the Jetson Nano's CPU (TFLite, 4x Cortex-A57), 10
# images of 1024x32x32: a 1x1 conv took 2.3204 s (10.74 G multiply-adds: 4.63 G/s),
# the FWHT layer 1.1973 s for 10 x 28.3 M counted operations (our count of
# WHTPointwise(1024, 1024) at 32x32: transforms plus element-wise work; 0.2365 G/s,
# the transform being memory- and overhead-bound there). The board's memory is
# 25.6 GB/s LPDDR4 (NVIDIA's datasheet), of which a CPU stream reaches about half.
# Per-op overhead: TFLite's interpreter, ~50 us (decision).
_JETSON_NANO = DeviceProfile(
    name="jetson-nano",
    description="Jetson Nano CPU (4x Cortex-A57, TFLite fp32), estimated",
    dense_macs_per_s=4.63e9,
    other_ops_per_s=0.2365e9,
    bytes_per_s=12.8e9,
    overhead_s=50e-6,
    calibration=(
        "seed 002 author code (phy710/Block-Walsh-Hadamard-Transform-Layer-Speed-Test): "
        "1x1 conv 10x1024x32x32 2.3204 s, FWHT layer 1.1973 s on a Jetson Nano; "
        "NVIDIA Jetson Nano datasheet: 25.6 GB/s"
    ),
)

# Jetson Orin Nano 8GB GPU (Ampere, 1024 CUDA cores at 625 MHz: 1.28 TFLOP/s fp32,
# i.e. 0.64 T multiply-adds/s; 68 GB/s LPDDR5; NVIDIA's datasheet). Achieved
# fractions are decisions: 35 % of peak for dense layers at batch 1, 25 % for the
# rest, 60 % of the bandwidth, and ~15 us per kernel launch from PyTorch.
_JETSON_ORIN_NANO = DeviceProfile(
    name="jetson-orin-nano",
    description="Jetson Orin Nano 8GB GPU (PyTorch fp32), estimated",
    dense_macs_per_s=0.35 * 0.64e12,
    other_ops_per_s=0.25 * 1.28e12,
    bytes_per_s=0.6 * 68e9,
    overhead_s=15e-6,
    calibration="NVIDIA Jetson Orin Nano datasheet: 1024 CUDA cores at 625 MHz, 68 GB/s",
)

DEVICE_PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (_JETSON_NANO, _JETSON_ORIN_NANO)}
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


def estimate_latency(module: nn.Module, input_shape: Sequence[int], profile: DeviceProfile | str) -> float:
    """Estimated milliseconds of ``module`` at batch 1 on ``profile`` (see :class:`DeviceProfile`)."""
    if isinstance(profile, str):
        profile = device_profile(profile)
    shape = batch_shape(input_shape, 1)
    was_training = module.training
    module.eval()
    try:
        per_module = module_flops(module, shape)
        traffic = _unit_traffic(module, torch.zeros(shape))
    finally:
        module.train(was_training)
    seconds = 0.0
    for name, moved in traffic.items():
        ops = per_module.get(name, {})
        dense = sum(v for k, v in ops.items() if k in _DENSE_OPS)
        other = sum(v for k, v in ops.items() if k not in _DENSE_OPS)
        seconds += profile.leaf_seconds(dense, other, moved)
    # Work done outside any unit (residual adds, pooling in forward code).
    outside = sum(per_module.get("", {}).values()) - sum(sum(per_module.get(n, {}).values()) for n in traffic)
    seconds += max(outside, 0) / profile.other_ops_per_s
    return seconds * 1e3


def device_profile(name: str) -> DeviceProfile:
    try:
        return DEVICE_PROFILES[name]
    except KeyError:
        raise UserError(f"unknown device {name!r}; known: {', '.join(list_devices())}") from None
