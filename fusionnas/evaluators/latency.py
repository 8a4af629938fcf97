"""Latency tables: a network's latency as the sum of its parts, measured in a runtime or estimated.

A network's latency is predicted as the sum of its parts (stem, every
inverted-residual block, head with classifier), each looked up in a table
keyed by the part's full configuration (its ``signature``) and input shape.
Every table belongs to one device and one runtime (``torch`` eager or
``onnxruntime``, the exported graph; see :mod:`fusionnas.evaluators.runtimes`)
and is measured at a fixed number of threads, all three recorded in the
file. Tables are filled by measuring on the machine that runs the search
(``cpu``, ``cuda``; each part timed against the space's baseline network run
beside it, the protocol of :mod:`fusionnas.evaluators.deployed`, so that a
part timed in the VM's slow state or beside a training worker reads the same
as one timed on an idle machine), or on the target device itself (``fusionnas profile``
run on a Jetson writes a table that searches elsewhere load). For the Jetson
Nano without such a table, each part measured here is scaled to the board
by a :class:`DeviceProfile`; those figures are estimates and every report
says so.

Example:
    >>> model = LatencyModel(get_space("mobilenetv2-cifar"), "cpu", runtime="onnxruntime")  # doctest: +SKIP
    >>> model.predict(space.baseline())                                                    # doctest: +SKIP
    1.9
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fusionnas.atomic import atomic_path
from fusionnas.errors import UserError
from fusionnas.evaluators.device_profiles import (
    DEVICE_PROFILES,
    MEASURABLE_DEVICES,
    DeviceProfile,
    HostRates,
    estimate_latency,
    list_devices,
    measure_host_rates,
    moved_bytes,
)
from fusionnas.evaluators.deployed import DeployedLatencyMeter
from fusionnas.evaluators.latency_fit import Calibration, fit_calibration, operator_counts
from fusionnas.evaluators.memory import peak_activation_bytes
from fusionnas.evaluators.parts import Part, model_parts
from fusionnas.evaluators.runtimes import RUNTIMES, default_runtime, get_runtime, measure_in_runtime
from fusionnas.evaluators.timing import measure_latency

if TYPE_CHECKING:
    from fusionnas.spaces import Arch, Space

# The jobs around the tables live in their own modules; re-exported here, where callers found them.
__all__ = [
    "LatencyModel",
    "MissingLatencyEntry",
    "measure_latency",
    "measure_in_runtime",
    "DeviceProfile",
    "DEVICE_PROFILES",
    "MEASURABLE_DEVICES",
    "estimate_latency",
    "model_parts",
    "peak_activation_bytes",
    "list_devices",
    "host_description",
]

TABLE_FORMAT = 4  # 4: parts timed against the baseline (reference_ms); 3: per-operator terms; 2 added runtime and threads (1: torch eager)


class MissingLatencyEntry(UserError):
    """A table lacks a part and the device it describes cannot be measured here."""


def host_description(runtime: str) -> dict[str, Any]:
    """What a measurement depends on besides the threads: the machine and the runtime's version."""
    host = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    if runtime != "torch":
        host[runtime] = get_runtime(runtime).version()
    return host


class LatencyModel:
    """Per-part latency table for one space, device and runtime; ``predict(arch)`` sums the parts.

    ``device`` is ``"cpu"`` or ``"cuda"`` (missing entries are measured here,
    lazily, and kept; ``save`` persists them) or a Jetson profile name
    (missing entries are measured here and scaled by its :class:`DeviceProfile`,
    unless the table was profiled on the device: then a missing entry is an
    error, since this machine cannot measure it).

    Args:
        space: the search space whose architectures are predicted.
        device: ``cpu``, ``cuda`` or ``jetson-nano``.
        entries: part key -> milliseconds.
        runtime: ``torch`` or ``onnxruntime`` (default: the device's, onnxruntime on cpu).
        source: ``"measured"`` or ``"estimated"``.
        threads: CPU threads while measuring, fixed and recorded.
        repeats: alternating pairs (part, reference network) per measured part; timed runs per part
            for an estimate.
        reference_ms: the calibrated milliseconds of the space's baseline that the table's entries
            were timed against (measured on first use when not given, then saved with the table).
    """

    def __init__(
        self,
        space: Space,
        device: str = "cpu",
        entries: dict[str, float] | None = None,
        *,
        runtime: str | None = None,
        source: str | None = None,
        threads: int = 1,
        repeats: int = 25,
        batch_size: int = 1,
        host: dict[str, Any] | None = None,
        measure_missing: bool | None = None,
        calibration: Calibration | tuple[float, float] = Calibration(),
        host_rates: HostRates | None = None,
        reference_ms: float | None = None,
    ) -> None:
        if device not in list_devices():
            raise UserError(f"unknown device {device!r}; known: {', '.join(list_devices())}")
        self.runtime = runtime or default_runtime(device)
        if self.runtime not in RUNTIMES:
            raise UserError(f"unknown runtime {self.runtime!r}; known: {', '.join(RUNTIMES)}")
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.space = space
        self.device = device
        self.entries: dict[str, float] = dict(entries or {})
        self.source = source or ("measured" if device in MEASURABLE_DEVICES else "estimated")
        if self.source not in ("measured", "estimated"):
            raise ValueError(f"source must be 'measured' or 'estimated', got {self.source!r}")
        self.threads = threads
        self.repeats = repeats
        self.batch_size = batch_size
        self.host = host or host_description(self.runtime)
        if measure_missing is None:
            measure_missing = self.source == "measured" and device in MEASURABLE_DEVICES
        if measure_missing and device not in MEASURABLE_DEVICES:
            raise UserError(f"cannot measure on {device!r} from here; measurable: {', '.join(MEASURABLE_DEVICES)}")
        self.measure_missing = measure_missing
        self.calibration = calibration if isinstance(calibration, Calibration) else Calibration.from_json(calibration)
        self.host_rates = host_rates
        self.reference_ms = reference_ms
        self._meter: DeployedLatencyMeter | None = None

    @property
    def is_estimate(self) -> bool:
        """True when the figures come from a device profile, not from measurement."""
        return self.source == "estimated"

    def describe(self) -> str:
        """One line saying what the figures are, e.g. for study output."""
        where = f"{self.runtime}, {self.threads} thread{'s' if self.threads > 1 else ''}"
        if self.is_estimate:
            profile = DEVICE_PROFILES[self.device]
            return (
                f"latency on {self.device}: ESTIMATE, {profile.description} ({where}); no table was "
                f"profiled on the device: run `fusionnas profile --space {self.space.name} --runtime "
                f"{self.runtime} --out TABLE` on it and name the table under [latency_tables]"
            )
        return (f"latency on {self.device}: part table measured in {where}, {len(self.entries)} entries "
                f"({self.host.get('processor')}): the estimate that decides limits before training")

    def _measure(self, module: torch.nn.Module, input_shape: Sequence[int]) -> float:
        """Milliseconds of ``module`` here, in the table's runtime and threads.

        On a measurable device the part is timed against the space's baseline network run beside it,
        as whole networks are (:class:`~fusionnas.evaluators.deployed.DeployedLatencyMeter`): its
        milliseconds are the median ratio times the baseline's calibrated time, which neither this
        VM's slow states nor a neighbour's load move. An estimate scales an absolute timing here.
        """
        if self.device not in MEASURABLE_DEVICES:
            return measure_in_runtime(module, input_shape, self.runtime, "cpu", threads=self.threads,
                                      repeats=self.repeats, batch_size=self.batch_size)
        with torch.no_grad():
            whole = self.meter.measure(module, input_shape=input_shape)
        self.reference_ms = whole.reference_ms
        return whole.ms

    @property
    def meter(self) -> DeployedLatencyMeter:
        """What times parts and whole networks here against the space's baseline (measurable devices)."""
        if self._meter is None:
            self._meter = DeployedLatencyMeter(self.space.build(self.space.baseline()), self.space.input_shape,
                                               self.runtime, self.device, threads=self.threads,
                                               batch_size=self.batch_size, pairs=self.repeats,
                                               reference_ms=self.reference_ms)
        return self._meter

    def _lookup(self, part: Part) -> float:
        if part.key in self.entries:
            return self.entries[part.key]
        if self.measure_missing:
            ms = self._measure(part.module, part.input_shape)
        elif self.is_estimate:
            if self.host_rates is None:
                self.host_rates = measure_host_rates(self.runtime, self.threads)
            ms = DEVICE_PROFILES[self.device].scale(self._measure(part.module, part.input_shape),
                                                    moved_bytes(part.module, part.input_shape), self.host_rates)
        else:
            raise MissingLatencyEntry(
                f"latency table for {self.device!r} has no entry {part.key!r} and this machine cannot "
                f"measure {self.device}; run `fusionnas profile --space {self.space.name} --runtime "
                f"{self.runtime} --out TABLE` on the device with this architecture, or drop the latency objective"
            )
        self.entries[part.key] = ms
        return ms

    def part_latencies(self, arch: Arch) -> dict[str, float]:
        """Milliseconds of every part (stem, b0, b1, ..., head) of ``arch``."""
        model = self.space.build(arch)
        return {part.name: self._lookup(part) for part in model_parts(model, self.space.input_shape)}

    def predict(self, arch: Arch) -> float:
        """Predicted latency of ``arch`` in milliseconds at the table's batch size (1 unless set).

        The sum of its parts, corrected by the table's :class:`~fusionnas.evaluators.latency_fit.Calibration`
        (none unless :meth:`calibrate` fitted one on whole networks measured on the device).
        """
        return self.calibration.apply(sum(self.part_latencies(arch).values()), operator_counts(arch))

    def calibrate(self, archs: Sequence[Arch], wholes_ms: Sequence[float] | None = None) -> Calibration:
        """Fit the correction from the sum of parts to whole networks measured here (``archs``).

        A part timed alone runs without its neighbours: it pays its own call
        and layout conversions, and the runtime cannot fuse across its
        boundaries, by an amount that depends on its operators (see
        :mod:`fusionnas.evaluators.latency_fit`). ``wholes_ms``: the networks'
        measured milliseconds, when the caller has them; else each is exported
        whole and timed against the space's baseline run beside it
        (:class:`~fusionnas.evaluators.deployed.DeployedLatencyMeter`).
        """
        if wholes_ms is None and not self.measure_missing:
            raise UserError(f"calibration measures whole networks, which cannot be done for {self.device!r} here")
        if len(archs) < 2:
            raise UserError(f"calibration needs at least 2 architectures, got {len(archs)}")
        sums = [sum(self.part_latencies(arch).values()) for arch in archs]
        if wholes_ms is None:
            wholes_ms = self.measure_whole(archs)
        self.calibration = fit_calibration(sums, [operator_counts(a) for a in archs], wholes_ms)
        return self.calibration

    def measure_whole(self, archs: Sequence[Arch]) -> list[float]:
        """Milliseconds of ``archs`` as whole networks here, each timed against the space's baseline."""
        if self.device not in MEASURABLE_DEVICES:
            raise UserError(f"whole networks cannot be measured on {self.device!r} from here")
        return [self.meter.measure(self.space.build(arch)).ms for arch in archs]

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
            "runtime": self.runtime,
            "threads": self.threads,
            "source": self.source,
            "batch_size": self.batch_size,
            "calibration": self.calibration.to_json(),
            **({"reference_ms": self.reference_ms} if self.reference_ms is not None else {}),
            "host": self.host,
            **({"host_rates": dataclasses.asdict(self.host_rates)} if self.host_rates else {}),
            "entries": dict(sorted(self.entries.items())),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table as JSON (atomically: a crash never leaves half a file)."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str], space: Space | None = None, device: str | None = None,
             runtime: str | None = None, batch_size: int | None = None) -> LatencyModel:
        """Read a table written by :meth:`save` (``fusionnas profile``).

        ``device`` renames the table's device, e.g. a table measured with
        ``--device cpu`` on a Jetson Nano loaded as ``jetson-nano``: entries it
        lacks then raise :class:`MissingLatencyEntry`. ``runtime``, when
        given, must be the table's.
        """
        from fusionnas.spaces import get_space

        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"latency table {str(path)!r} does not exist; write it with `fusionnas profile`") from None
        except json.JSONDecodeError as error:
            raise UserError(f"latency table {str(path)!r} is not valid JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") not in (1, 2, 3, TABLE_FORMAT) or "entries" not in data:
            raise UserError(f"latency table {str(path)!r} is not a fusionnas table (format {TABLE_FORMAT})")
        if space is None:
            space = get_space(data["space"])
        elif space.name != data["space"]:
            raise UserError(f"latency table {str(path)!r} is for space {data['space']!r}, not {space.name!r}")
        stored_runtime = data.get("runtime", "torch")
        if runtime is not None and runtime != stored_runtime:
            raise UserError(f"latency table {str(path)!r} was measured in {stored_runtime}, not {runtime}; "
                            f"profile one with `fusionnas profile --runtime {runtime}` or set runtime = "
                            f'"{stored_runtime}"')
        stored_batch = int(data.get("batch_size", 1))
        if batch_size is not None and batch_size != stored_batch:
            raise UserError(f"latency table {str(path)!r} was measured at batch {stored_batch}, not {batch_size}; "
                            f"profile one with `fusionnas profile --batch {batch_size}` or set batch_size = "
                            f"{stored_batch}")
        entries = {str(k): float(v) for k, v in data["entries"].items()}
        source = data.get("source", "measured")
        device = device or data["device"]
        host = data.get("host") or {}
        threads = int(data.get("threads", host.get("threads", 1)))
        # Missing entries are measured only on the very kind of machine the table came from.
        same_host = all(host.get(k) == v for k, v in host_description(stored_runtime).items())
        measure = source == "measured" and device == data["device"] and device in MEASURABLE_DEVICES and same_host
        calibration = Calibration.from_json(data.get("calibration", (1.0, 0.0)))
        rates = HostRates(**data["host_rates"]) if "host_rates" in data else None
        return cls(space, device, entries, runtime=stored_runtime, source=source, threads=threads, host=host,
                   measure_missing=measure, calibration=calibration, host_rates=rates, batch_size=stored_batch,
                   reference_ms=data.get("reference_ms"))
