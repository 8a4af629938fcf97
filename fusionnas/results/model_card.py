"""The MODEL_CARD.md of an exported trial: what it is, what it costs, how it was judged, where it sits."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fusionnas.evaluators.onnx_export import CHECKED_BATCHES, ONNX_FILES
from fusionnas.evaluators.proxy import ProxyBudget
from fusionnas.evaluators.runtimes import get_runtime
from fusionnas.results.pareto import compact_ops, ops_legend
from fusionnas.spaces import Arch
from fusionnas.trial_record import latency_column

__all__ = ["model_card", "frontier_position"]


def _value(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if column in ("flops", "params"):
        return f"{value:,.0f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def frontier_position(frame: pd.DataFrame, objectives: Mapping[str, str], row: pd.Series) -> str:
    """One sentence on where ``row`` sits relative to the frontier."""
    front = frame[frame["is_pareto"]]
    if not bool(row.get("feasible")):
        return "Infeasible: it breaks a limit of the study, so it was never trained and is not on the frontier."
    if bool(row.get("is_pareto")):
        first = next(iter(objectives))
        ordered = front.sort_values(first, ascending=objectives[first] != "maximize")
        rank = list(ordered["number"]).index(row["number"]) + 1
        return (f"On the Pareto frontier: {rank} of {len(front)} frontier trials by {first} "
                f"(frontier trials: {', '.join(str(n) for n in ordered['number'])}).")
    columns = list(objectives)
    maximize = np.array([objectives[c] == "maximize" for c in columns])
    mine = np.where(maximize, -row[columns].astype(float).to_numpy(), row[columns].astype(float).to_numpy())
    dominating = []
    for _, other in front.iterrows():
        theirs = other[columns].astype(float).to_numpy()
        theirs = np.where(maximize, -theirs, theirs)
        if np.all(theirs <= mine) and np.any(theirs < mine):
            dominating.append(str(other["number"]))
    return f"Not on the frontier: dominated by trial(s) {', '.join(dominating) or '?'}."


_RUNTIME_SETTINGS = {"onnxruntime": "CPU execution provider", "openvino": "CPU, latency hint, 1 stream, f32"}


def _latency_section(latency_ms: Mapping[str, Mapping[str, float]] | None, batch_size: int | None,
                     timed_files: Mapping[str, str] | None = None) -> list[str]:
    if not latency_ms:
        return []
    import platform

    files = {runtime: (timed_files or {}).get(runtime, ONNX_FILES["standard"]) for runtime in latency_ms}
    if set(files.values()) == {ONNX_FILES["standard"]}:
        graph = f"`{ONNX_FILES['standard']}`"
    else:
        graph = "The ONNX form each runtime deploys (" + ", ".join(f"{r}: `{f}`" for r, f in files.items()) + ")"
    lines = [
        "## Latency as deployed", "",
        f"{graph} at batch {batch_size or 1}, 1 thread, on {platform.processor() or platform.machine()}; "
        f"in each runtime measured side by side with the space's all-conv baseline exported the same way:", "",
        "| runtime | this model, ms | baseline, ms | speed vs baseline |", "|---|---|---|---|",
    ]
    for runtime, times in latency_ms.items():
        name = f"{runtime} {get_runtime(runtime).version()} ({_RUNTIME_SETTINGS.get(runtime, 'CPU')})"
        model, baseline = times["model"], times["baseline"]
        lines.append(f"| {name} | {model:.3f} | {baseline:.3f} | {baseline / model:.2f}x |")
    return [*lines, "", "Measured on the exporting machine; on another device, `fusionnas profile` there.", ""]


def _resolution(budget: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """The side images had while the accuracy was measured: the budget's, else the dataset's own."""
    if budget.get("resolution"):
        return f"{budget['resolution']}x{budget['resolution']}"
    shape = data.get("image_shape")
    return f"{shape[1]}x{shape[2]}" if shape else "the dataset's own size"


def _inputs_section(data: Mapping[str, Any], budget: Mapping[str, Any], input_shape: tuple[int, ...]) -> list[str]:
    """What an image must look like for this model: dataset, classes, normalisation, resolution."""
    channels, height, width = input_shape
    if "classes" in data:
        classes = (f"{len(data['classes'])} classes, output i is class i: "
                   f"{', '.join(str(c) for c in data['classes'])}")
        scale = ", ".join(f"{v:.4f}" for v in data["mean"]), ", ".join(f"{v:.4f}" for v in data["std"])
        norm = (f"{'RGB' if channels == 3 else f'{channels}-channel'} pixel values scaled to 0-1, then per channel "
                f"(x - mean) / std with mean ({scale[0]}) and std ({scale[1]})")
    else:
        classes = "classes not recorded with the study, and its files are not on this machine"
        norm = "not recorded with the study (its mean and std come from the dataset's training split)"
    trained = _resolution(budget, data)
    if trained == f"{height}x{width}" or not trained[0].isdigit():
        measured = f", and its accuracy was measured at {trained}."
    else:
        measured = (f"; its accuracy was measured on images resized bilinearly to {trained} (the study's training "
                    f"resolution) before normalising, so at {height}x{width} it may differ: `fusionnas train "
                    f"--init weights.pt` trains on at {height}x{width}.")
    return [
        "## Data and inputs", "",
        f"- Dataset: {data.get('name', 'not recorded')}; {classes}.",
        f"- Input normalisation: {norm}.",
        f"- Input resolution: `model.onnx` takes {channels}x{height}x{width} images (the space's input){measured}",
        "",
    ]


def _accuracy_budget(row: pd.Series, budget: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """How much training the accuracy reflects: proxy steps and rung, or the supernet's steps."""
    rung, rungs = int(row.get("rung", 0) or 0), int(budget.get("rungs", 1) or 1)
    supernet = row.get("supernet_steps")
    if isinstance(supernet, (int, float)) and math.isfinite(supernet) and rung == 0:
        return (f"of weights inherited from the study's weight-sharing supernet ({int(supernet)} training steps), "
                f"batch norm recalibrated, at {_resolution(budget, data)}")
    steps = row.get("proxy_steps")
    if isinstance(steps, (int, float)) and math.isfinite(steps) and steps > 0:
        amount = f"{int(steps)} optimiser steps"
    elif budget.get("steps") or budget.get("epochs"):
        amount = f"{budget['steps']} optimiser steps" if budget.get("steps") else f"{budget['epochs']:g} epochs"
    else:
        amount = "the study's budget"
    where = f", rung {rung} of {rungs}" if rungs > 1 else ""
    return (f"after proxy training for {amount}{where} (batch {budget.get('batch_size') or ProxyBudget.batch_size}, "
            f"peak lr {budget.get('lr') or ProxyBudget.lr:g}, {float(budget.get('data_fraction', 1.0)):.0%} of the "
            f"training split, at {_resolution(budget, data)})")


def model_card(frame: pd.DataFrame, objectives: Mapping[str, str], row: pd.Series, arch: Arch, *,
               study_name: str, budget: Mapping[str, Any] | None, has_weights: bool, onnx_error: float,
               input_shape: tuple[int, ...], num_classes: int,
               latency_ms: Mapping[str, Mapping[str, float]] | None = None, batch_size: int | None = None,
               data: Mapping[str, Any] | None = None, onnx_errors: Mapping[str, float] | None = None,
               timed_files: Mapping[str, str] | None = None) -> str:
    """The MODEL_CARD.md text of an exported trial.

    ``latency_ms``: per runtime, ``model`` and ``baseline`` measured side by side;
    ``batch_size``: the batch model.onnx is fixed to (None: dynamic), also the timed one;
    ``budget`` and ``data``: see :func:`export_trial`; ``onnx_errors``: the ONNX files written and
    their errors (default: model.onnx with ``onnx_error``); ``timed_files``: the file each runtime timed.
    """
    costs = [c for c in row.index if c in ("accuracy", "flops", "params", "memory_mb")
             or c.startswith(latency_column("ms", "")) or c in objectives]
    files = "`arch.json` (rebuild: `get_space(arch.space).build(Arch.from_json(text))`), "
    files += "`weights.pt` (state_dict after proxy training), " if has_weights else ""
    checked = " and ".join(map(str, CHECKED_BATCHES))
    batch = f"batch {batch_size}" if batch_size else f"dynamic batch, checked at batch {checked}"
    described = {
        ONNX_FILES["standard"]: f"(opset 17, {batch}; onnxruntime matches torch within {{:.1e}})",
        ONNX_FILES["native"]: f"(opset 17 and the fusionnas domain, each transform one node with its batch norm and "
                              f"ReLU6, for OpenVINO with the fusionnas extension libfusionnas_openvino.so; {batch}; "
                              f"OpenVINO matches torch within {{:.1e}})",
    }
    errors = onnx_errors or {ONNX_FILES["standard"]: onnx_error}
    files += " and ".join(f"`{name}` {described[name].format(error)}" for name, error in errors.items())
    budget = dict(budget or {})
    data = dict(data or {})
    if has_weights:
        training = (f"Accuracy is the validation accuracy {_accuracy_budget(row, budget, data)}: a ranking "
                    f"signal, not what full training reaches; `fusionnas train arch.json --dataset "
                    f"{data.get('name', 'DATASET')} --epochs E --init weights.pt` trains it on from these weights.")
    else:
        training = "No trained weights: the ONNX model holds freshly initialised weights."
    lines = [
        f"# {arch.space} {arch.archid}", "",
        f"Study {study_name}, trial {int(row['number'])}. Input {tuple(input_shape)} per image, "
        f"{num_classes} classes.", "", f"Files: {files}.", "",
        *_inputs_section(data, budget, input_shape),
        "## Costs and accuracy", "", "| metric | value |", "|---|---|",
        *[f"| {c}{' (objective)' if c in objectives else ''} | {_value(c, row[c])} |" for c in dict.fromkeys(costs)],
        "", training, "", *_latency_section(latency_ms, batch_size, timed_files),
        "## Where it sits", "", frontier_position(frame, objectives, row), "",
        "## Architecture", "", f"`{compact_ops(row['arch'])}`", "", ops_legend(), "", "```",
        *[f"b{i:<2} {block.describe()}" for i, block in enumerate(arch.blocks)],
        f"head {arch.head_fusion}", "```", "",
    ]
    return "\n".join(lines)
