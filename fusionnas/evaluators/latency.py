"""Latency: measurement, per-block lookup tables, and device profiles for the Jetson targets.

A network's latency is predicted as the sum of its parts (stem, every
inverted-residual block, head with classifier), each looked up in a table
keyed by the part's full configuration (its ``signature``) and input shape.
Tables are filled by measuring on the machine that runs the search (``cpu``,
``cuda``), or on the target device itself (``fusionnas profile`` run on a
Jetson writes a table that searches elsewhere load). For the Jetson targets
without such a table, a :class:`DeviceProfile` estimates each part from its
FLOPs, memory traffic and per-operator overhead; those figures are estimates
and every report says so.

Example:
    >>> model = LatencyModel(get_space("mobilenetv2-cifar"), "cpu")   # doctest: +SKIP
    >>> model.predict(space.baseline())                               # doctest: +SKIP
    6.8
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.cost import module_flops

if TYPE_CHECKING:
    from fusionnas.spaces import Arch, Space

__all__ = [
    "measure_latency",
    "DeviceProfile",
    "DEVICE_PROFILES",
    "estimate_latency",
    "LatencyModel",
    "MissingLatencyEntry",
    "model_parts",
    "peak_activation_bytes",
    "list_devices",
]

TABLE_FORMAT = 1


# -- measurement -----------------------------------------------------------------------


def _full_shape(input_shape: Sequence[int], batch_size: int) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        return (batch_size, *shape)
    if len(shape) == 4:
        return shape
    raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")


def _resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' is not available on this machine; use --device cpu")
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
    x = torch.randn(_full_shape(input_shape, batch_size), device=device)
    was_training = model.training
    old_threads = torch.get_num_threads()
    model.eval()
    try:
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
        model.train(was_training)
    return statistics.median(times) * 1e3


# -- parts of a network ----------------------------------------------------------------


class _Head(nn.Module):
    """Head conv, global average pool and classifier: the model's last part."""

    def __init__(self, head: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.head = head
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.head(x), 1), 1))


@dataclass(frozen=True)
class Part:
    """One timed piece of a network: its module, input shape (C, H, W) and table key."""

    name: str
    module: nn.Module
    input_shape: tuple[int, int, int]
    key: str


def _signature(module: nn.Module) -> str:
    signature = getattr(module, "signature", None)
    if signature is None:
        raise ValueError(f"{type(module).__name__} has no 'signature'; latency tables need one per part")
    return str(signature)


@torch.no_grad()
def model_parts(model: nn.Module, input_shape: Sequence[int]) -> list[Part]:
    """The stem, every block and the head of a model built by a search space.

    ``model`` must have ``stem``, ``blocks`` (a sequence of modules with a
    ``signature``), ``head`` and ``classifier``, as the spaces in
    :mod:`fusionnas.spaces` build them.
    """
    for name in ("stem", "blocks", "head", "classifier"):
        if not hasattr(model, name):
            raise ValueError(f"model has no '{name}'; build it with a fusionnas search space")
    c, h, w = (int(d) for d in input_shape[-3:])
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, c, h, w, dtype=next(model.parameters()).dtype)
        shapes = []
        for module in (model.stem, *model.blocks):
            shapes.append(tuple(x.shape[1:]))
            x = module(x)
        shapes.append(tuple(x.shape[1:]))
    finally:
        model.train(was_training)
    head = _Head(model.head, model.classifier)
    n_classes = getattr(model.classifier, "out_features", None) or sum(
        p.shape[0] for p in model.classifier.parameters() if p.dim() == 2
    )
    head_key = f"head[{_signature(model.head)},classes={n_classes}]"
    modules = [("stem", model.stem, _signature(model.stem))]
    modules += [(f"b{i}", block, _signature(block)) for i, block in enumerate(model.blocks)]
    modules.append(("head", head, head_key))
    return [
        Part(name, module, shape, f"{key}@{'x'.join(map(str, shape))}")
        for (name, module, key), shape in zip(modules, shapes)
    ]


# -- estimates for devices we cannot measure on -------------------------------------------

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
        profile = _profile(profile)
    shape = _full_shape(input_shape, 1)
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


def _profile(name: str) -> DeviceProfile:
    try:
        return DEVICE_PROFILES[name]
    except KeyError:
        raise UserError(f"unknown device {name!r}; known: {', '.join(list_devices())}") from None


# -- lookup tables -----------------------------------------------------------------------


class MissingLatencyEntry(UserError):
    """A table lacks a part and the device it describes cannot be measured here."""


def _host() -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


class LatencyModel:
    """Per-part latency table for one space and device; ``predict(arch)`` sums the parts.

    ``device`` is ``"cpu"`` or ``"cuda"`` (missing entries are measured here,
    lazily, and kept; ``save`` persists them) or a Jetson profile name
    (missing entries are estimated by its :class:`DeviceProfile`, unless the
    table was profiled on the device: then a missing entry is an error,
    since this machine cannot measure it).

    Args:
        space: the search space whose architectures are predicted.
        device: ``cpu``, ``cuda``, ``jetson-nano`` or ``jetson-orin-nano``.
        entries: part key -> milliseconds.
        source: ``"measured"`` or ``"estimated"``.
        threads: CPU threads while measuring (default: torch's setting).
        repeats: timed runs per part.
    """

    def __init__(
        self,
        space: Space,
        device: str = "cpu",
        entries: dict[str, float] | None = None,
        *,
        source: str | None = None,
        threads: int | None = None,
        repeats: int = 25,
        host: dict[str, Any] | None = None,
        measure_missing: bool | None = None,
        calibration: tuple[float, float] = (1.0, 0.0),
    ) -> None:
        if device not in list_devices():
            raise UserError(f"unknown device {device!r}; known: {', '.join(list_devices())}")
        self.space = space
        self.device = device
        self.entries: dict[str, float] = dict(entries or {})
        self.source = source or ("measured" if device in MEASURABLE_DEVICES else "estimated")
        if self.source not in ("measured", "estimated"):
            raise ValueError(f"source must be 'measured' or 'estimated', got {self.source!r}")
        self.threads = threads
        self.repeats = repeats
        self.host = host or _host()
        if measure_missing is None:
            measure_missing = self.source == "measured" and device in MEASURABLE_DEVICES
        if measure_missing and device not in MEASURABLE_DEVICES:
            raise UserError(f"cannot measure on {device!r} from here; measurable: {', '.join(MEASURABLE_DEVICES)}")
        self.measure_missing = measure_missing
        self.calibration = (float(calibration[0]), float(calibration[1]))

    @property
    def is_estimate(self) -> bool:
        """True when the figures come from a device profile, not from measurement."""
        return self.source == "estimated"

    def describe(self) -> str:
        """One line saying what the figures are, e.g. for study output."""
        if self.is_estimate:
            profile = DEVICE_PROFILES[self.device]
            return (
                f"latency on {self.device}: ESTIMATE from {profile.description} "
                f"(no table profiled on the device; run `fusionnas profile` on it)"
            )
        return f"latency on {self.device}: measured table, {len(self.entries)} entries ({self.host.get('processor')})"

    def _lookup(self, part: Part) -> float:
        if part.key in self.entries:
            return self.entries[part.key]
        if self.measure_missing:
            ms = measure_latency(part.module, part.input_shape, self.device, threads=self.threads, repeats=self.repeats)
        elif self.is_estimate:
            ms = estimate_latency(part.module, part.input_shape, self.device)
        else:
            raise MissingLatencyEntry(
                f"latency table for {self.device!r} has no entry {part.key!r} and this machine cannot "
                f"measure {self.device}; run `fusionnas profile --space {self.space.name} --device ... "
                f"--out TABLE` on the device with this architecture, or drop the latency objective"
            )
        self.entries[part.key] = ms
        return ms

    def part_latencies(self, arch: Arch) -> dict[str, float]:
        """Milliseconds of every part (stem, b0, b1, ..., head) of ``arch``."""
        model = self.space.build(arch)
        return {part.name: self._lookup(part) for part in model_parts(model, self.space.input_shape)}

    def predict(self, arch: Arch) -> float:
        """Predicted latency of ``arch`` in milliseconds at batch 1.

        ``scale * sum(parts) + offset``; the calibration is (1, 0) unless
        :meth:`calibrate` fitted it on whole networks measured on the device.
        """
        scale, offset = self.calibration
        return scale * sum(self.part_latencies(arch).values()) + offset

    def calibrate(self, archs: Sequence[Arch]) -> tuple[float, float]:
        """Fit ``(scale, offset)`` so predictions match whole networks measured here.

        A part timed alone runs with its weights and input hot in cache and
        without its neighbours' traffic; on this project's 2-core CPU whole
        networks took ~20 % longer than the sum of their parts. A least-squares
        line through (sum of parts, measured whole) for ``archs`` corrects that.
        """
        if not self.measure_missing:
            raise UserError(f"calibration measures whole networks, which cannot be done for {self.device!r} here")
        if len(archs) < 2:
            raise UserError(f"calibration needs at least 2 architectures, got {len(archs)}")
        sums, wholes = [], []
        for arch in archs:
            sums.append(sum(self.part_latencies(arch).values()))
            wholes.append(
                measure_latency(self.space.build(arch), self.space.input_shape, self.device,
                                threads=self.threads, repeats=self.repeats)
            )
        mean_s, mean_w = statistics.fmean(sums), statistics.fmean(wholes)
        var = sum((s - mean_s) ** 2 for s in sums)
        scale = sum((s - mean_s) * (w - mean_w) for s, w in zip(sums, wholes)) / var if var > 0 else mean_w / mean_s
        self.calibration = (scale, mean_w - scale * mean_s)
        return self.calibration

    def profile(self, archs: Iterable[Arch]) -> int:
        """Fill the table for every part of ``archs``; returns how many entries were added."""
        before = len(self.entries)
        for arch in archs:
            self.part_latencies(arch)
        return len(self.entries) - before

    @classmethod
    def profile_space(
        cls,
        space: Space,
        device: str = "cpu",
        *,
        samples: int = 50,
        seed: int = 0,
        **options: Any,
    ) -> LatencyModel:
        """Measure the baseline, every preset and ``samples`` random architectures of ``space``,
        part by part, then calibrate on those whole networks (see :meth:`calibrate`)."""
        from fusionnas.spaces import random_archs

        model = cls(space, device, **options)
        archs = [space.baseline(), *(space.preset(name) for name in space.presets())]
        archs += random_archs(space, samples, seed=seed)
        model.profile(archs)
        model.calibrate(archs)
        return model

    # -- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The table as a JSON-able document."""
        return {
            "format": TABLE_FORMAT,
            "space": self.space.name,
            "device": self.device,
            "source": self.source,
            "batch_size": 1,
            "calibration": list(self.calibration),
            "host": self.host,
            "entries": dict(sorted(self.entries.items())),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table as JSON (atomically: a crash never leaves half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], space: Space | None = None, device: str | None = None) -> LatencyModel:
        """Read a table written by :meth:`save` (``fusionnas profile``).

        ``device`` renames the table's device, e.g. a table measured with
        ``--device cuda`` on a Jetson Orin Nano loaded as ``jetson-orin-nano``:
        entries it lacks then raise :class:`MissingLatencyEntry`.
        """
        from fusionnas.spaces import get_space

        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"latency table {str(path)!r} does not exist; write it with `fusionnas profile`") from None
        except json.JSONDecodeError as error:
            raise UserError(f"latency table {str(path)!r} is not valid JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT or "entries" not in data:
            raise UserError(f"latency table {str(path)!r} is not a fusionnas table (format {TABLE_FORMAT})")
        if space is None:
            space = get_space(data["space"])
        elif space.name != data["space"]:
            raise UserError(f"latency table {str(path)!r} is for space {data['space']!r}, not {space.name!r}")
        entries = {str(k): float(v) for k, v in data["entries"].items()}
        source = data.get("source", "measured")
        device = device or data["device"]
        host = data.get("host") or {}
        # Missing entries are measured only on the very kind of machine the table came from.
        same_host = all(host.get(k) == v for k, v in _host().items() if k != "threads")
        measure = source == "measured" and device == data["device"] and device in MEASURABLE_DEVICES and same_host
        calibration = tuple(data.get("calibration", (1.0, 0.0)))
        return cls(space, device, entries, source=source, host=host, measure_missing=measure, calibration=calibration)


# -- peak activation memory ----------------------------------------------------------------


@torch.no_grad()
def peak_activation_bytes(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1) -> int:
    """Estimated peak activation memory (bytes) of one inference pass, layer by layer.

    While a leaf module runs, its input and output are alive, plus the input
    of every enclosing block that adds a residual (``use_residual``) and is
    still held for the addition. The peak is the largest such sum: the
    usual estimate for sequential inference (as MCUNet uses); allocator
    slack and operator workspaces are not included.
    """
    shape = _full_shape(input_shape, batch_size)
    held: list[int] = []
    peak = 0
    hooks = []

    def nbytes(values: Any) -> int:
        if torch.is_tensor(values):
            return values.numel() * values.element_size()
        if isinstance(values, (tuple, list)):
            return sum(nbytes(v) for v in values)
        return 0

    def pre_block(m: nn.Module, inputs: tuple[Any, ...]) -> None:
        held.append(nbytes(inputs) if getattr(m, "use_residual", False) else 0)

    def post_block(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        held.pop()

    def leaf(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal peak
        peak = max(peak, nbytes(inputs) + nbytes(output) + sum(held))

    for m in model.modules():
        if hasattr(m, "use_residual"):
            hooks += [m.register_forward_pre_hook(pre_block), m.register_forward_hook(post_block)]
        if not list(m.children()):
            hooks.append(m.register_forward_hook(leaf))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        model(torch.zeros(shape, dtype=param.dtype if param is not None else torch.float32))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return peak
