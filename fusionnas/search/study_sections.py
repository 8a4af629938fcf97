"""The ``[dataset]``, ``[[objectives]]`` and ``[constraints]`` tables of a study file.

Each is a frozen dataclass whose fields are the table's keys (made by
:func:`~fusionnas.search.problems.study_key`) and whose ``__post_init__``
reports every problem at once; :mod:`fusionnas.search.config` holds the rest
of the schema and re-exports these.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fusionnas.errors import UserError
from fusionnas.metrics import METRICS as METRIC_RECORDS
from fusionnas.metrics import ZERO_COST_PROXIES, column_of
from fusionnas.runtime_names import RUNTIMES, check_runtime_device, default_runtime
from fusionnas.search.problems import StudyConfigProblem, choice, positive, raise_if, study_key

__all__ = ["METRICS", "DIRECTIONS", "MEASURABLE", "DatasetConfig", "Objective", "Constraints"]

METRICS = tuple(METRIC_RECORDS)
DIRECTIONS = ("maximize", "minimize")
MEASURABLE = ("cpu", "cuda")  # latency devices this machine times; the others are estimates at batch 1


@dataclass(frozen=True)
class DatasetConfig:
    """Where training and validation images come from (``root`` None: the loader's default)."""

    name: str = study_key('"cifar10"', doc="the dataset (`dataset = \"digits\"` is short for this table with "
                          "a name only)")
    root: str | None = study_key('"data"', None, doc="folder of its files, relative to the study file; default: "
                                 "`$FUSIONNAS_DATA`, else ~/.cache/fusionnas/data")
    val_fraction: float | None = study_key('0.1', None, doc="share of the training files held out to score "
                                           "proxies; default: the dataset's own")

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        if not self.name:
            problems.append(StudyConfigProblem("name", "is empty", 'write name = "cifar10"'))
        if self.val_fraction is not None and not 0 < self.val_fraction < 1:
            problems.append(StudyConfigProblem(
                "val_fraction", f"must lie in (0, 1), got {self.val_fraction!r}",
                "write val_fraction = 0.1"))
        raise_if(problems)


def _runtime_problems(problems: list[StudyConfigProblem], owner: Any, key: str, applies: bool,
                      otherwise: str, device: str | None, *, fill: bool = True) -> None:
    """Check ``owner.<key>`` (a latency runtime); ``fill`` puts in the device's default."""
    runtime = getattr(owner, key)
    if not applies:
        if runtime is not None:
            problems.append(StudyConfigProblem(key, otherwise, f"remove the {key} key"))
        return
    if runtime is None:
        if fill:
            object.__setattr__(owner, key, default_runtime(str(device)))
    elif runtime not in RUNTIMES:
        problems.append(choice(key, runtime, RUNTIMES, "runtime"))
    elif device in MEASURABLE:
        try:
            check_runtime_device(runtime, device)
        except UserError as error:
            problems.append(StudyConfigProblem(key, error.problem, error.fix))


@dataclass(frozen=True)
class Objective:
    """One value a trial reports; ``latency`` needs a ``device`` (and has a ``runtime``),
    ``zero_cost`` a ``proxy``."""

    metric: str = study_key('"accuracy"', doc="what the objective measures", choices=METRICS)
    direction: str | None = study_key('"maximize"', None, choices=DIRECTIONS, doc="default: the metric's "
                                      "natural one (maximize accuracy and zero_cost, minimize costs)")
    device: str | None = study_key('"jetson-nano"', None, doc="latency only (and required): the device it is "
                                   "measured on, or estimated for")
    proxy: str | None = study_key('"synflow"', None, choices=ZERO_COST_PROXIES,
                                  doc="zero_cost only (and required): the score")
    runtime: str | None = study_key('"onnxruntime"', None, choices=RUNTIMES, doc="latency only: what runs the "
                                    "network; default: the device's (onnxruntime, torch on cuda)")
    batch_size: int | None = study_key('8', None, doc="latency on cpu or cuda only: images per run (also that "
                                       "device's limit's); default 1")

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        positive(problems, "batch_size", self.batch_size, "write batch_size = 8 or remove it")
        if self.metric not in METRICS:
            problems.append(choice("metric", self.metric, METRICS, "metric"))
        if self.direction is None:
            natural = METRIC_RECORDS[self.metric].direction if self.metric in METRIC_RECORDS else "minimize"
            object.__setattr__(self, "direction", natural)
        elif self.direction not in DIRECTIONS:
            problems.append(choice("direction", self.direction, DIRECTIONS, "direction"))
        if self.metric not in METRICS:  # which keys it takes depends on the metric: judged once it is known
            raise_if(problems)
        metric = METRIC_RECORDS[self.metric]
        if self.batch_size is not None and not (metric.needs_device and self.device in MEASURABLE):
            problems.append(StudyConfigProblem(
                "batch_size", f"only latency objectives on {' or '.join(MEASURABLE)} take a batch size, not "
                f"{self.metric!r}{f' on {self.device}' if self.device else ''} (estimates are at batch 1)",
                "remove the batch_size key"))
        if metric.needs_device and self.device is None:
            problems.append(StudyConfigProblem(
                "device", "a latency objective needs a device", 'add device = "jetson-nano"'))
        if not metric.needs_device and self.device is not None:
            problems.append(StudyConfigProblem(
                "device", f"only latency objectives take a device, not {self.metric!r}",
                "remove the device key"))
        _runtime_problems(problems, self, "runtime", metric.needs_device and self.device is not None,
                          "only latency objectives take a runtime", self.device)
        if metric.needs_proxy and self.proxy is None:
            problems.append(StudyConfigProblem(
                "proxy", "a zero_cost objective needs a proxy", 'add proxy = "synflow"'))
        elif metric.needs_proxy and self.proxy not in ZERO_COST_PROXIES:
            problems.append(choice("proxy", self.proxy, ZERO_COST_PROXIES, "zero-cost proxy"))
        if not metric.needs_proxy and self.proxy is not None:
            problems.append(StudyConfigProblem(
                "proxy", f"only zero_cost objectives take a proxy, not {self.metric!r}",
                "remove the proxy key"))
        raise_if(problems)

    @property
    def name(self) -> str:
        """Display name with unit and device, e.g. ``latency_ms@jetson-nano``."""
        return column_of(self.metric, self.device, self.proxy)


@dataclass(frozen=True)
class Constraints:
    """Hard limits; an architecture over any of them is recorded but never trained."""

    max_flops: float | None = study_key('3e8', None, doc="FLOPs (fvcore: one multiply-add is 1) at the "
                                        "space's input size")
    max_params: float | None = study_key('2e6', None, doc="trainable parameters")
    max_latency_ms: float | None = study_key('12.0', None, doc="milliseconds on latency_device (the cheap "
                                             "estimate decides training; a measured network is judged again)")
    latency_device: str | None = study_key('"jetson-nano"', None, doc="device of max_latency_ms (required "
                                           "with it)")
    max_memory_mb: float | None = study_key('64.0', None, doc="peak activation memory, MB at batch 1")
    latency_runtime: str | None = study_key('"onnxruntime"', None, choices=RUNTIMES, doc="runtime of "
                                            "max_latency_ms; default: a latency objective's on the same "
                                            "device, else the device's")

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        for key in ("max_flops", "max_params", "max_latency_ms", "max_memory_mb"):
            positive(problems, key, getattr(self, key), "use a positive limit or remove the key")
        if self.max_latency_ms is not None and self.latency_device is None:
            problems.append(StudyConfigProblem(
                "latency_device", "max_latency_ms needs the device it is measured on",
                'add latency_device = "jetson-nano"'))
        if self.latency_device is not None and self.max_latency_ms is None:
            problems.append(StudyConfigProblem(
                "latency_device", "has no effect without max_latency_ms",
                "add max_latency_ms = 12.0 or remove latency_device"))
        _runtime_problems(problems, self, "latency_runtime", self.latency_device is not None,
                          "has no effect without latency_device", self.latency_device, fill=False)
        raise_if(problems)

    @property
    def limits(self) -> dict[str, float]:
        """The active limits keyed by measurement: flops, params, latency_ms, memory_mb."""
        pairs = {"flops": self.max_flops, "params": self.max_params,
                 "latency_ms": self.max_latency_ms, "memory_mb": self.max_memory_mb}
        return {k: v for k, v in pairs.items() if v is not None}

    def violations(self, measured: Mapping[str, float]) -> dict[str, float]:
        """``measured - limit`` per active limit (<= 0: feasible), for ``trial.set_constraint``."""
        missing = [k for k in self.limits if k not in measured]
        if missing:
            raise ValueError(f"constraints need measured {', '.join(missing)}; "
                             f"got only {', '.join(sorted(measured)) or 'nothing'}")
        return {k: float(measured[k]) - limit for k, limit in self.limits.items()}
