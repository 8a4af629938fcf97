"""Export one trial of a study: arch.json, its proxy-trained weights, model.onnx and a model card.

The trial is named by number or chosen by a rule (:func:`select_trial`:
the best by one metric among feasible completed trials under optional
limits). ``model.onnx`` (opset 17, a dynamic batch unless one is fixed) is
run in onnxruntime on random inputs (at batch 1 and 4 when dynamic) and must
match torch within ``1e-4``, else nothing is written. On request the native
form is written too, or instead: ``model.native.onnx``, each transform one
``fusionnas``-domain node, checked the same way in OpenVINO with the fusionnas
extension. The card gives the latency in each of :data:`DEPLOYED_RUNTIMES`
beside the all-conv baseline's, each runtime timing the form it deploys.
Files appear in ``out`` only once all of them are ready.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fusionnas.errors import UserError
from fusionnas.evaluators.onnx_export import CHECKED_BATCHES, ONNX_FORMS, onnx_error, to_onnx
from fusionnas.evaluators.proxy import ProxyBudget
from fusionnas.evaluators.runtimes import get_runtime, measure_side_by_side
from fusionnas.metrics import natural_direction
from fusionnas.results.pareto import compact_ops, ops_legend
from fusionnas.spaces import Arch, get_space

__all__ = ["DEPLOYED_RUNTIMES", "ONNX_FILES", "ExportResult", "select_trial", "export_trial", "export_onnx",
           "resolve_metric"]

DEPLOYED_RUNTIMES = ("onnxruntime", "openvino")  # where the card times model.onnx on this cpu
ONNX_FILES = {"standard": "model.onnx", "native": "model.native.onnx"}  # the file of each ONNX form
_FORM_RUNTIMES = {"standard": ("onnxruntime", "openvino"), "native": ("openvino",)}  # which runtimes run each form


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_trial` wrote."""

    trial: int
    archid: str
    out: Path
    files: tuple[str, ...]
    onnx_max_error: float
    has_weights: bool
    latency_ms: float = float("nan")  # model.onnx in onnxruntime on this cpu, 1 thread
    baseline_latency_ms: float = float("nan")  # the space's all-conv baseline, measured beside it
    batch_size: int | None = None  # the batch model.onnx is fixed to; None: dynamic
    # runtime -> {"model": ms, "baseline": ms}, each pair timed side by side, for every DEPLOYED_RUNTIMES
    # that runs a form written
    latencies: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # ONNX file -> largest |runtime - torch| (model.onnx in onnxruntime, model.native.onnx in OpenVINO)
    onnx_errors: Mapping[str, float] = field(default_factory=dict)


def resolve_metric(frame: pd.DataFrame, name: str) -> str:
    """The frame column meant by ``name``: ``latency`` (or ``latency_ms``, no device named) is the one
    ``latency_ms@<device>`` column, the default of a study that measures one device."""
    if name in frame.columns and name not in ("number", "state", "archid", "arch", "ops"):
        return name
    aliases = {"latency": "latency_ms@", "latency_ms": "latency_ms@", "memory": "memory_mb"}
    if name in aliases:
        matches = [c for c in frame.columns if c.startswith(aliases[name])]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UserError(f"the study has latency on several devices ({', '.join(matches)}); "
                             f"name one, e.g. `latency_device` {matches[0].split('@', 1)[1]}")
    known = [c for c in frame.columns if c in ("accuracy", "flops", "params", "memory_mb")
             or c.startswith("latency_ms@")]
    raise UserError(f"the study records no metric {name!r}; known: {', '.join(known)}")


def select_trial(frame: pd.DataFrame, objectives: Mapping[str, str], *, trial: int | None = None,
                 best: str | None = None, limits: Mapping[str, float] | None = None) -> pd.Series:
    """The row of trial number ``trial``, or the best feasible completed trial by ``best`` under ``limits``.

    ``limits`` maps metric names (``latency``, ``flops``, ``latency_ms@jetson-nano``) to maxima.
    """
    if (trial is None) == (best is None):
        raise UserError("name a trial (`trial`) or a rule (`best` with optional `limits`), not both or neither")
    if trial is not None:
        rows = frame[frame["number"] == trial]
        if rows.empty:
            last = int(frame["number"].max()) if len(frame) else -1
            raise UserError(f"the study has no trial {trial} (trials 0-{last}); "
                             f"`fusionnas pareto STUDY` lists them")
        row = rows.iloc[0]
        if row["state"] != "COMPLETE":
            why = f" ({row['failure_reason']})" if isinstance(row.get("failure_reason"), str) else ""
            raise UserError(f"trial {trial} is {row['state']}{why}, it has no result to export; "
                             f"pick a COMPLETE trial from `fusionnas pareto STUDY`")
        return row
    column = resolve_metric(frame, best)
    pool = frame[(frame["state"] == "COMPLETE") & frame["feasible"].fillna(False).astype(bool)]
    pool = pool[np.isfinite(pool[column].astype(float))]
    for name, limit in (limits or {}).items():
        limit_column = resolve_metric(frame, name)
        under = pool[pool[limit_column].astype(float) <= limit]
        if under.empty:
            smallest = pool[limit_column].astype(float).min() if len(pool) else math.nan
            raise UserError(f"no feasible trial has {limit_column} <= {limit:g} (the smallest is "
                             f"{smallest:.4g}); raise the limit")
        pool = under
    if pool.empty:
        raise UserError(f"no completed feasible trial has a {column} value yet; run the search first")
    direction = objectives.get(column) or natural_direction(column)
    values = pool[column].astype(float)
    best_value = values.max() if direction == "maximize" else values.min()
    ties = pool[values == best_value]  # among equals: a frontier trial, then the earliest
    return ties.sort_values(["is_pareto", "number"], ascending=[False, True]).iloc[0]


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path, seed: int = 0, *,
                batch_size: int | None = None, form: str = "standard") -> float:
    """Write ``model`` as ONNX (see :func:`~fusionnas.evaluators.onnx_export.to_onnx`) and return the
    largest |onnxruntime - torch| on random inputs (|OpenVINO - torch| for ``form="native"``).

    ``batch_size``: the batch the graph is fixed to; None (default), a dynamic batch.
    Raises UserError when the error exceeds :data:`~fusionnas.evaluators.onnx_export.ONNX_TOLERANCE`
    (relative to the logits).
    """
    graph = _graph(model, input_shape, batch_size, form)
    error, bound = onnx_error(graph, model, input_shape, seed=seed)
    if not error <= bound:
        raise UserError(f"the ONNX model ({form} form) differs from torch by {error:.3g} (> {bound:.3g}); "
                         f"the operators' export paths need fixing, please report it")
    path.write_bytes(graph)
    return error


def _graph(model: torch.nn.Module, input_shape: tuple[int, ...], batch_size: int | None,
           form: str = "standard") -> bytes:
    """``model`` exported at ``batch_size``, or with a dynamic batch when it is None."""
    if batch_size is not None and batch_size < 1:
        raise UserError(f"`batch_size` must be a positive integer, got {batch_size}; or leave it out for a "
                        f"dynamic batch")
    return to_onnx(model, input_shape, batch_size=batch_size or 1, dynamic_batch=batch_size is None, form=form)


def onnx_forms(onnx_form: str) -> tuple[str, ...]:
    """The ONNX forms ``onnx_form`` asks for (``standard``, ``native`` or ``both``); a UserError for another,
    or for the native form where the OpenVINO extension that runs it was not built."""
    if onnx_form != "both" and onnx_form not in ONNX_FORMS:
        raise UserError(f"`onnx_form` must be one of {', '.join(ONNX_FORMS)} or both, got {onnx_form!r}")
    forms = ONNX_FORMS if onnx_form == "both" else (onnx_form,)
    if "native" in forms:
        from fusionnas.kernels.onnx_nodes import openvino_extension

        openvino_extension()  # before any work: the native form is checked in OpenVINO with it
    return forms


def export_trial(frame: pd.DataFrame, objectives: Mapping[str, str], row: pd.Series, out: str | Path, *,
                 weights_dir: Path | None, study_name: str = "", budget: Mapping[str, Any] | None = None,
                 force: bool = False, num_classes: int | None = None, batch_size: int | None = None,
                 data: Mapping[str, Any] | None = None, onnx_form: str = "standard") -> ExportResult:
    """Write ``row``'s trial to ``out``: arch.json, weights.pt (when trained), model.onnx, MODEL_CARD.md.

    ``budget``: the study's budget (``Budget`` fields: kind, steps or epochs, batch_size, lr, resolution,
    data_fraction, rungs); ``data``: the dataset's name, classes, mean, std and image_shape
    (``DataSplits.describe()``); the card states both.

    ``model.onnx`` has a dynamic batch, or is fixed to ``batch_size``; it is
    timed at that batch (1 when dynamic) in every :data:`DEPLOYED_RUNTIMES`.
    ``onnx_form``: ``standard`` (model.onnx), ``native`` (model.native.onnx, the transforms as fusionnas
    nodes for OpenVINO with the fusionnas extension) or ``both``; OpenVINO times the native form where
    it is written, onnxruntime the standard one.
    An existing non-empty ``out`` is an error unless ``force`` (then those files are replaced).
    """
    forms = onnx_forms(onnx_form)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UserError(f"`out` {out} exists and is not empty; choose a new folder or use `force` to "
                         f"overwrite")
    arch = Arch.from_json(row["arch"])
    space = get_space(arch.space)
    state = None
    weights_name = row.get("weights") if isinstance(row.get("weights"), str) else None
    if weights_dir is not None and weights_name and (weights_dir / weights_name).is_file():
        state = torch.load(weights_dir / weights_name, map_location="cpu", weights_only=True)
    if state is not None:
        num_classes = int(state["classifier.1.weight"].shape[0])
    elif num_classes is None and isinstance(row.get("num_classes"), (int, float)) and row["num_classes"] > 0:
        num_classes = int(row["num_classes"])
    model = space.build(arch, num_classes=num_classes or space.num_classes)
    if state is not None:
        model.load_state_dict(state)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (staging / "arch.json").write_text(arch.to_json(indent=2) + "\n", encoding="utf-8")
        if state is not None:
            torch.save(state, staging / "weights.pt")
        input_shape = tuple(space.input_shape)
        errors = {ONNX_FILES[form]: export_onnx(model, input_shape, staging / ONNX_FILES[form], batch_size=batch_size,
                                                form=form) for form in forms}
        baseline = space.build(space.baseline(), num_classes=model.classifier[-1].out_features)
        models = {"model": model, "baseline": baseline}
        # Each runtime times the last form written that it runs: OpenVINO the native one where there is one.
        timed = {runtime: form for form in forms for runtime in _FORM_RUNTIMES[form]}
        latency = {}
        for runtime in [r for r in DEPLOYED_RUNTIMES if r in timed]:
            form = timed[runtime]
            graphs = {"model": (staging / ONNX_FILES[form]).read_bytes(),
                      "baseline": _graph(baseline, input_shape, batch_size, form)}
            latency[runtime] = measure_side_by_side(models, input_shape, runtime, threads=1, rounds=5,
                                                    batch_size=batch_size or 1, graphs=graphs)
        card = model_card(frame, objectives, row, arch, study_name=study_name, budget=budget,
                          has_weights=state is not None, onnx_error=max(errors.values()), input_shape=input_shape,
                          num_classes=model.classifier[-1].out_features, latency_ms=latency, batch_size=batch_size,
                          data=data, onnx_errors=errors,
                          timed_files={runtime: ONNX_FILES[form] for runtime, form in timed.items()})
        (staging / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for item in sorted(staging.iterdir()):
            item.replace(out / item.name)
            files.append(item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    onnxruntime = latency.get("onnxruntime", {})
    return ExportResult(int(row["number"]), arch.archid, out, tuple(files), max(errors.values()), state is not None,
                        onnxruntime.get("model", math.nan), onnxruntime.get("baseline", math.nan), batch_size, latency,
                        errors)


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
             or c.startswith("latency_ms@") or c in objectives]
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
