"""Results: a study as a frame, its Pareto frontier and plots, export of a trial, full training."""
from __future__ import annotations

from fusionnas.results.export import ExportResult, export_onnx, export_trial, resolve_metric, select_trial
from fusionnas.results.measure import format_measurements, measure_trials
from fusionnas.results.pareto import (
    compact_ops,
    format_frontier,
    latency_notes,
    objectives_of,
    pareto_front,
    pareto_mask,
    trials_frame,
)
from fusionnas.results.plot import check_plot_path, plot_frontier
from fusionnas.results.train import TrainProgress, TrainResult, read_arch, train_arch

__all__ = [
    "trials_frame",
    "pareto_front",
    "pareto_mask",
    "objectives_of",
    "compact_ops",
    "format_frontier",
    "latency_notes",
    "measure_trials",
    "format_measurements",
    "plot_frontier",
    "check_plot_path",
    "ExportResult",
    "export_trial",
    "export_onnx",
    "resolve_metric",
    "select_trial",
    "TrainProgress",
    "TrainResult",
    "read_arch",
    "train_arch",
]
