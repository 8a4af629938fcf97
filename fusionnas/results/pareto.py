"""A study as a pandas frame, its Pareto frontier, and the frontier as a terminal table.

One row per trial: ``number``, ``state``, ``archid``, ``arch`` (JSON),
``ops`` (operators per block, see :func:`compact_ops`), every objective by
its metric name (``accuracy``, ``flops``, ``latency_ms@jetson-nano``, ...:
measured values only, NaN where a trial was not trained), every recorded cost
(``params``, ``flops``, ``memory_mb``, ``latency_ms@<device>``, with
``latency_source@<device>`` and ``latency_runtime@<device>``: measured whole,
predicted by the part table, or estimated, in which runtime; for a network
measured whole also ``latency_estimate_ms@<device>``, ``latency_ratio@<device>``
and ``latency_reference_ms@<device>``), ``feasible``,
``failure_reason``, ``reused_from``, ``train_seconds``, ``proxy_steps`` and
``supernet_steps`` (the budget its accuracy comes from), ``rung`` and
``promoted_from`` (multi-fidelity studies, :mod:`fusionnas.search.rungs`), and
``is_pareto``: the trial is COMPLETE, feasible, at the highest rung any
finished trial reached (the frontier is drawn at the study's highest
fidelity), and no other such trial is at least as good in every objective
and better in one. Infeasible trials are never on the frontier.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fusionnas.frontier import pareto_mask
from fusionnas.layers.registry import operator_letters
from fusionnas.trial_record import TrialRecord, latency_column

if TYPE_CHECKING:
    import optuna

__all__ = ["trials_frame", "pareto_front", "pareto_mask", "objectives_of", "compact_ops",
           "format_frontier", "latency_notes", "ops_legend"]

def ops_legend() -> str:
    """The key to :func:`compact_ops`' letters, from the operator registry."""
    letters = {letter: name for name, letter in operator_letters().items() if name is not None}
    pairs = ", ".join(f"{letter} {name}" for letter, name in letters.items())
    return f"ops: per block expand/depthwise/project, then the head; {pairs}, - none"


def compact_ops(arch_json: str | None) -> str:
    """Three letters per block (expand, depthwise, project) and the head: ``-cc ccw ... | w``."""
    if not arch_json:
        return ""
    data = json.loads(arch_json)
    letter = operator_letters()
    blocks = " ".join("".join(letter.get(b.get(k), "?") for k in ("expand", "depthwise", "project"))
                      for b in data.get("blocks", []))
    return f"{blocks} | {letter.get(data.get('head_fusion'), '?')}"


def objectives_of(study: optuna.Study) -> dict[str, str]:
    """Objective name -> ``maximize``/``minimize``, in the study's order."""
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    return {name: direction.name.lower() for name, direction in zip(names, study.directions)}


def pareto_front(frame: pd.DataFrame, objectives: Mapping[str, str]) -> pd.Series:
    """``is_pareto`` for every row of ``frame``: COMPLETE, feasible, finite and non-dominated."""
    columns = list(objectives)
    eligible = (frame["state"] == "COMPLETE") & frame["feasible"].fillna(False).astype(bool)
    eligible &= np.isfinite(frame[columns].astype(float)).all(axis=1)
    if "rung" in frame and eligible.any():  # lower rungs' accuracies are of a lower fidelity: not comparable
        eligible &= frame["rung"] == frame.loc[eligible, "rung"].max()
    mask = pd.Series(False, index=frame.index)
    if eligible.any():
        sub = frame.loc[eligible, columns].astype(float).to_numpy()
        maximize = [objectives[c] == "maximize" for c in columns]
        mask.loc[eligible] = pareto_mask(sub, maximize)
    return mask


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial of ``study`` (see the module docstring), sorted by number."""
    objectives = objectives_of(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        record = TrialRecord.read(t)
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, **record.columns(),
                               "ops": compact_ops(record.arch)}
        for name in objectives:
            row[name] = _number(record.value(name))
        row["feasible"] = bool(record.feasible) if t.state.is_finished() else None
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["number", "state", "archid", "arch", "ops", *objectives, "feasible"])
    frame["is_pareto"] = pareto_front(frame, objectives) if len(frame) else pd.Series(dtype=bool)
    return frame.sort_values("number").reset_index(drop=True)


def latency_columns(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, device) of every latency column of ``frame`` (``latency_ms@<device>``)."""
    devices = [(c, c.split("@", 1)[1]) for c in frame.columns if isinstance(c, str) and "@" in c]
    return [(column, device) for column, device in devices if column == latency_column("ms", device)]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _fmt(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in ("flops", "params"):
        return f"{value / 1e6:.2f}M"
    if column in ("accuracy", "val_accuracy"):
        return f"{value:.3f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column.startswith("x_baseline@"):
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def format_frontier(frame: pd.DataFrame, objectives: Mapping[str, str], *, all_trials: bool = False) -> str:
    """The frontier (or every finished trial) as a plain-text table, best first by the first objective."""
    rows = frame if all_trials else frame[frame["is_pareto"]]
    if rows.empty:
        return "no feasible completed trial yet: the frontier is empty"
    first = next(iter(objectives), "number")
    rows = rows.sort_values(first, ascending=objectives.get(first) != "maximize", na_position="last")
    costs = [c for c in ("accuracy", "flops", "params") if c in frame.columns]
    for column, device in latency_columns(frame):
        costs.append(column)
        ratio = latency_column("ratio", device)
        if ratio in rows.columns and rows[ratio].notna().any():  # measured whole beside the baseline
            rows = rows.assign(**{f"x_baseline@{device}": 1 / rows[ratio]})
            costs.append(f"x_baseline@{device}")
    costs += [c for c in frame.columns if c == "memory_mb"]
    costs += [c for c in objectives if c not in costs]
    columns = ["number", "archid", *costs, "feasible", "ops"]
    header = {"number": "trial", "flops": "FLOPs", "params": "params"}
    table = [[header.get(c, c) for c in columns]]
    table += [[_fmt(c, row[c]) for c in columns] for _, row in rows.iterrows()]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns) - 1)]
    lines = ["  ".join([*(cell.rjust(w) for cell, w in zip(r[:-1], widths)), r[-1]]) for r in table]
    notes = latency_notes(rows)
    if any(c.startswith("x_baseline@") for c in costs):
        notes.append("x_baseline: speed relative to the all-conv baseline, measured beside it (> 1: faster)")
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], "", ops_legend(), *notes])


def latency_notes(frame: pd.DataFrame) -> list[str]:
    """One line per latency column saying where its figures came from."""
    notes = []
    for column, device in latency_columns(frame):
        sources = set(frame.get(latency_column("source", device), pd.Series(dtype=object)).dropna())
        sources = {"table" if s == "measured" else s for s in sources}  # "measured": a table, before 2026-12-07
        runtimes = set(frame.get(latency_column("runtime", device), pd.Series(dtype=object)).dropna())
        runtime = "/".join(sorted(runtimes)) or "torch"  # trials stored before runtimes were recorded
        said = {
            "whole": f"trained networks measured whole in {runtime} on {device}, against the all-conv baseline "
                     f"run beside them",
            "table": f"predicted from parts measured in {runtime} on {device} (the estimate before training)",
            "estimated": f"ESTIMATE: parts measured here in {runtime}, scaled to {device} (no table profiled on "
                         f"the device)",
        }
        what = "; ".join(said.get(s, f"{s}, {runtime}") for s in sorted(sources)) or f"unknown source, {runtime}"
        notes.append(f"{column}: {what}; `fusionnas pareto --measure` measures whole networks")
    return notes
