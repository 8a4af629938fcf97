"""The costs of an architecture, as a study measures them: parameters, FLOPs, memory, latency.

:class:`CostEvaluator` is the one place that turns an architecture into the
costs a study records and limits: the objective calls it for every trial,
the runner for its checks before the first trial. Latency comes twice:

* before training, the cheap estimate that decides hard limits: the sum of
  the network's parts in the study's latency table (one per device, in the
  study's runtime for it; measured tables are kept in the artifacts folder,
  merged with other workers'), or the Jetson estimate
  (source ``table`` or ``estimated``);
* after training, on a device this machine can run (``cpu``, ``cuda``), the
  whole trained network as deployed (exported, in the study's runtime),
  timed against the space's baseline beside it
  (:mod:`fusionnas.evaluators.deployed`; source ``whole``), one measurement at a
  time per machine while every worker on it pauses its training
  (:class:`~fusionnas.search.quiet_host.QuietHost`). The table's figure is
  kept as the estimate, beside the ratio to the baseline
  (:class:`~fusionnas.trial_record.Latency`).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fusionnas.atomic import atomic_path
from fusionnas.evaluators import count_flops, count_params, elementwise_flops
from fusionnas.evaluators.deployed import DeployedLatencyMeter
from fusionnas.evaluators.latency import MEASURABLE_DEVICES, LatencyModel, host_description, peak_activation_bytes
from fusionnas.evaluators.parts import model_parts
from fusionnas.interrupts import STOP
from fusionnas.metrics import column_of
from fusionnas.search.quiet_host import QuietHost
from fusionnas.spaces import Arch, InvertedResidual
from fusionnas.trial_record import COSTS, Latency, TrialRecord

if TYPE_CHECKING:
    from fusionnas.search.config import StudyConfig
    from fusionnas.spaces import Space

__all__ = ["CostEvaluator", "COST_KEYS", "one_thread"]

logger = logging.getLogger(__name__)

COST_KEYS = COSTS  # plus a latency per device


@contextmanager
def one_thread() -> Iterator[None]:
    """Batch-1 tracing and one-batch scores gain nothing from threads, and on a busy machine
    their many tiny operators slow down by orders of magnitude when threads wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class CostEvaluator:
    """Costs of architectures under one study's terms.

    Args:
        config: the study (its latency devices and runtimes, tables, limits).
        artifacts: folder where measured latency tables are kept (None: kept in memory only).
        space: the space the study searches (default: the config's).
    """

    def __init__(self, config: StudyConfig, artifacts: Path | None = None, *, space: Space | None = None) -> None:
        self.config = config
        self.space = space if space is not None else config.search_space()
        self.artifacts = Path(artifacts) if artifacts is not None else None
        devices = [o.device for o in config.objectives if o.device is not None]
        devices.append(config.constraints.latency_device)
        self.latency_devices: list[str] = list(dict.fromkeys(d for d in devices if d))
        self._tables: dict[str, LatencyModel] = {}
        self._saved_entries: dict[str, int] = {}
        self._part_flops: dict[str, int] = {}
        self._meters: dict[str, DeployedLatencyMeter] = {}
        self.host = QuietHost(self.artifacts, poll=STOP.check)

    @property
    def names(self) -> list[str]:
        """The costs a trial records, as columns (``latency_ms@<device>`` per latency device)."""
        return [*COSTS, *(column_of("latency", d) for d in self.latency_devices)]

    def complete(self, record: TrialRecord) -> bool:
        """Whether ``record`` holds every cost this study records."""
        return set(COSTS) <= set(record.costs) and set(self.latency_devices) <= set(record.latencies)

    def measure(self, arch: Arch, model: torch.nn.Module, record: TrialRecord | None = None) -> TrialRecord:
        """``record`` (default: a new one) with the costs of ``arch`` (built as ``model``) it lacks; a
        latency from the device's table, with its source (``table`` or ``estimated``) and runtime."""
        record = record if record is not None else TrialRecord()
        measures = {"params": count_params, "flops": self.flops,
                    "memory_mb": lambda m: peak_activation_bytes(m, self.space.input_shape) / 2**20}
        with one_thread():
            for name, measure in measures.items():
                if name not in record.costs:
                    record.costs[name] = measure(model)
        for device in self.latency_devices:
            if device not in record.latencies:
                table = self.latency_table(device)
                record.latencies[device] = Latency(table.predict(arch), "estimated" if table.is_estimate else "table",
                                                   table.runtime)
        return record

    @property
    def measured_devices(self) -> list[str]:
        """The latency devices whose trained networks are measured whole here (``cpu``, ``cuda``)."""
        return [d for d in self.latency_devices if d in MEASURABLE_DEVICES]

    def measure_whole(self, model: torch.nn.Module, num_classes: int, record: TrialRecord) -> None:
        """``model`` (trained) measured whole as deployed on every device of :attr:`measured_devices`,
        into ``record.latencies`` (source ``whole``, with the ratio to the space's baseline run beside
        it); the table's figure it replaces is kept as the estimate."""
        for device in self.measured_devices:
            model.to(device)
            meter = self._meter(device, num_classes)
            run = meter.prepare(model)  # the export, while the other workers train
            with self.host.measuring():
                whole = meter.time(run)
            known = record.latencies.get(device)
            estimate = known.estimate_ms if known is not None and known.measured_whole else (
                known.ms if known is not None else None)
            runtime = known.runtime if known is not None else self.config.latency_runtimes[device]
            record.latencies[device] = Latency(whole.ms, "whole", runtime, estimate, whole.ratio, whole.reference_ms)

    def _meter(self, device: str, num_classes: int) -> DeployedLatencyMeter:
        """The meter of ``device``, its reference the space's baseline with ``num_classes`` classes;
        the reference's calibrated time is kept in the artifacts folder for every worker on this machine."""
        key = f"{device}/{num_classes}"
        if key in self._meters:
            return self._meters[key]
        runtime, batch = self.config.latency_runtimes[device], self.config.latency_batch_sizes[device]
        reference = self.space.build(self.space.baseline(), num_classes=num_classes)
        record = {"device": device, "runtime": runtime, "threads": 1, "batch_size": batch,
                  "reference": self.space.baseline().archid, "num_classes": num_classes,
                  "host": host_description(runtime)}
        path = self.artifacts / f"latency-reference-{self._table_name(device)}.json" if self.artifacts else None
        stored = _read_json(path) if path is not None else None
        known_ms = stored["ms"] if stored and {k: stored.get(k) for k in record} == record else None
        meter = DeployedLatencyMeter(reference, self.space.input_shape, runtime, device, batch_size=batch,
                                     reference_ms=known_ms)
        if path is not None and known_ms is None:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({**record, "ms": meter.reference_ms}, indent=1) + "\n")
        self._meters[key] = meter
        return meter

    def flops(self, model: torch.nn.Module) -> int:
        """fvcore's FLOPs of ``model`` as built, at the space's input size, counted part by part.

        The stem and head are traced once per worker and kept by their
        latency-table keys, which name their full configuration and input
        shape; an inverted-residual block by its stages' keys (expand,
        depthwise, project: see ``InvertedResidual.stages``) plus the
        residual add, since stages recur across architectures far more often
        than blocks do (over 15 random architectures 53% of the stages were
        new against 95% of the blocks; over 60, 22% against 87%). Built
        models only: a trained DCT layer prunes, and its count drops.
        """
        if not hasattr(model, "parts"):
            return count_flops(model, (1, *self.space.input_shape))
        total = 0
        for part in model_parts(model, self.space.input_shape):
            if not isinstance(part.module, InvertedResidual):
                total += self._counted(part.key, part.module, part.input_shape)
                continue
            for key, stage, shape in part.module.stages(part.input_shape):
                total += self._counted(f"{key}@{'x'.join(map(str, shape))}", stage, shape)
            if part.module.use_residual:
                total += elementwise_flops(part.input_shape)
        return total

    def _counted(self, key: str, module: torch.nn.Module, input_shape: tuple[int, int, int]) -> int:
        """fvcore's count of ``module`` at batch 1, traced once per ``key``."""
        if key not in self._part_flops:
            self._part_flops[key] = count_flops(module, (1, *input_shape))
        return self._part_flops[key]

    def constraint_measures(self, record: TrialRecord) -> dict[str, float]:
        """What the study's limits compare: ``flops``, ``params``, ``memory_mb``, ``latency_ms``."""
        measured = dict(record.costs)
        device = self.config.constraints.latency_device
        if device is not None:
            measured["latency_ms"] = record.latencies[device].ms
        return measured

    def latency_table(self, device: str) -> LatencyModel:
        """The latency table of ``device`` in the study's runtime for it: the study's table, a
        measured table kept in the artifacts folder (cpu, cuda), or the device profile's estimate."""
        if device in self._tables:
            return self._tables[device]
        runtime = self.config.latency_runtimes[device]
        table_path = self.config.latency_tables.get(device)
        batch = self.config.latency_batch_sizes[device]
        if table_path is not None:
            model = LatencyModel.load(table_path, self.space, device, runtime, batch)
        elif device in MEASURABLE_DEVICES and self.artifacts is not None:
            path = self._artifact_table(device)
            model = LatencyModel.load(path, self.space, device, runtime, batch) if path.is_file() else None
            if model is not None and not model.measure_missing:
                logger.warning("%s was measured on another machine; measuring afresh", path)
                model = None
            model = model or LatencyModel(self.space, device, runtime=runtime, batch_size=batch)
        else:
            model = LatencyModel(self.space, device, runtime=runtime, batch_size=batch)
        if model.is_estimate:
            logger.warning("%s", model.describe())
        else:
            logger.info("%s", model.describe())
        self._tables[device] = model
        self._saved_entries[device] = len(model.entries)
        return model

    def _artifact_table(self, device: str) -> Path:
        assert self.artifacts is not None
        return self.artifacts / f"latency-{self._table_name(device)}.json"

    def _table_name(self, device: str) -> str:
        """``<device>-<runtime>``, with ``-b<N>`` at a batch size other than 1."""
        batch = self.config.latency_batch_sizes[device]
        return f"{device}-{self.config.latency_runtimes[device]}{f'-b{batch}' if batch != 1 else ''}"

    def save_tables(self) -> None:
        """Persist measured tables that grew, merged with what other workers saved."""
        if self.artifacts is None:
            return
        for device, model in self._tables.items():
            if not model.measure_missing or len(model.entries) == self._saved_entries.get(device):
                continue
            path = self._artifact_table(device)
            try:
                if path.is_file():
                    for key, ms in LatencyModel.load(path, self.space, device).entries.items():
                        model.entries.setdefault(key, ms)
                self.artifacts.mkdir(parents=True, exist_ok=True)
                model.save(path)
                self._saved_entries[device] = len(model.entries)
            except (OSError, ValueError) as error:
                logger.warning("could not save the latency table %s: %s", path, error)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
