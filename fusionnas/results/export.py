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
from fusionnas.evaluators.onnx_export import ONNX_FILES, ONNX_FORMS, onnx_error, to_onnx
from fusionnas.evaluators.runtimes import measure_side_by_side
from fusionnas.metrics import natural_direction
from fusionnas.results.model_card import model_card
from fusionnas.spaces import Arch, Space, get_space
from fusionnas.trial_record import latency_column

__all__ = ["DEPLOYED_RUNTIMES", "ONNX_FILES", "ExportResult", "select_trial", "export_trial", "export_onnx",
           "resolve_metric"]

DEPLOYED_RUNTIMES = ("onnxruntime", "openvino")  # where the card times model.onnx on this cpu
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
    latency = latency_column("ms", "")  # the prefix of every device's column
    aliases = {"latency": latency, "latency_ms": latency, "memory": "memory_mb"}
    if name in aliases:
        matches = [c for c in frame.columns if c.startswith(aliases[name])]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UserError(f"the study has latency on several devices ({', '.join(matches)}); "
                             f"name one, e.g. `latency_device` {matches[0].split('@', 1)[1]}")
    known = [c for c in frame.columns if c in ("accuracy", "flops", "params", "memory_mb")
             or c.startswith(latency)]
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
        raise UserError(f"`out` {out} exists and is not empty; choose a new folder or use `force` to overwrite")
    arch, space, model, state = _trial_model(row, weights_dir, num_classes)
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
        timed, latency = _time_deployed(staging, forms, {"model": model, "baseline": baseline}, input_shape, batch_size)
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


def _trial_model(row: pd.Series, weights_dir: Path | None,
                 num_classes: int | None) -> tuple[Arch, Space, torch.nn.Module, dict[str, torch.Tensor] | None]:
    """The trial's arch, its space, its network and the stored proxy-trained weights loaded into it (else None)."""
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
    return arch, space, model, state


def _time_deployed(staging: Path, forms: tuple[str, ...], models: Mapping[str, torch.nn.Module],
                   input_shape: tuple[int, ...],
                   batch_size: int | None) -> tuple[dict[str, str], dict[str, Mapping[str, float]]]:
    """The form each of :data:`DEPLOYED_RUNTIMES` times, and its model and baseline timed side by side."""
    # Each runtime times the last form written that it runs: OpenVINO the native one where there is one.
    timed = {runtime: form for form in forms for runtime in _FORM_RUNTIMES[form]}
    latency = {}
    for runtime in [r for r in DEPLOYED_RUNTIMES if r in timed]:
        form = timed[runtime]
        graphs = {"model": (staging / ONNX_FILES[form]).read_bytes(),
                  "baseline": _graph(models["baseline"], input_shape, batch_size, form)}
        latency[runtime] = measure_side_by_side(models, input_shape, runtime, threads=1, rounds=5,
                                                batch_size=batch_size or 1, graphs=graphs)
    return timed, latency
