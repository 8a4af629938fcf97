"""The metrics a study can optimise or limit, each described once.

A :class:`Metric` says what the study file calls it, the column it gets in
objectives and frames (``latency_ms@<device>``, a zero-cost score under its
proxy's name), its label, its natural
direction, whether it is only known after training, and whether it needs a
device or a proxy. The study config, the objective, the frontier table,
export and plots read it here. Free of heavy imports: study files are
checked against it before torch is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "ZERO_COST_PROXIES", "column_of", "metric_of_column", "cost_metrics", "natural_direction", "label_of"]

# Names of the zero-cost proxies (their implementations: fusionnas.evaluators.zero_cost).
ZERO_COST_PROXIES = ("synflow", "naswot", "grad_norm")


@dataclass(frozen=True)
class Metric:
    """One metric: names, direction, and what it needs (see the module docstring)."""

    name: str  # in the study file: metric = "..."
    column: str  # objective and frame column (``@<device>`` added for a latency)
    label: str  # axis label
    unit: str  # what one unit of the value is, for help texts
    direction: str  # the natural one: "maximize" or "minimize"
    trained: bool  # known only after (proxy) training
    needs_device: bool = False
    needs_proxy: bool = False


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "accuracy", "proxy accuracy", "fraction", "maximize", trained=True),
    Metric("flops", "flops", "FLOPs", "flops", "minimize", trained=False),
    Metric("params", "params", "parameters", "parameters", "minimize", trained=False),
    Metric("latency", "latency_ms", "latency (ms)", "ms", "minimize", trained=False,
           needs_device=True),
    Metric("memory", "memory_mb", "peak memory (MiB)", "mib", "minimize", trained=False),
    Metric("zero_cost", "zero_cost", "zero-cost score", "score", "maximize", trained=False,
           needs_proxy=True),
)}


def column_of(metric: str, device: str | None = None, proxy: str | None = None) -> str:
    """The column of ``metric``: ``accuracy``, ``latency_ms@cpu``, ``synflow``, ..."""
    if METRICS[metric].needs_proxy:
        return str(proxy)
    base = METRICS[metric].column
    return f"{base}@{device}" if device else base


def cost_metrics() -> list[Metric]:
    """The metrics a trial can be limited by (minimised, measured without training): flops, latency, ..."""
    return [m for m in METRICS.values() if m.direction == "minimize" and not m.trained]


def metric_of_column(column: str) -> Metric | None:
    """The metric a column holds; None for anything else."""
    base = column.split("@", 1)[0]
    if base in ZERO_COST_PROXIES:
        return METRICS["zero_cost"]
    base = "accuracy" if base == "val_accuracy" else base  # the frame has both columns
    return next((m for m in METRICS.values() if base == m.column), None)


def natural_direction(column: str) -> str:
    """``maximize`` or ``minimize`` for a metric's column; costs (and unknown columns) are minimised."""
    metric = metric_of_column(column)
    return metric.direction if metric else "minimize"


def label_of(column: str) -> str:
    """An axis label: ``latency on cpu (ms)``, ``FLOPs``, ``synflow``."""
    metric = metric_of_column(column)
    if metric is None or metric.needs_proxy:
        return column
    if metric.needs_device and "@" in column:
        return f"latency on {column.split('@', 1)[1]} (ms)"
    return metric.label
