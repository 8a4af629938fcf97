"""Whole networks measured in a runtime, beside what the latency tables predicted for them.

A search ranks architectures by predicted latency (per-part tables, or a
Jetson estimate); :func:`measure_trials` re-measures chosen trials whole, in
the study's runtime, together with the space's all-conv baseline, so a user
sees how far to trust the prediction and what a hybrid gains over the
baseline as deployed.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch

from fusionnas.evaluators.latency import MEASURABLE_DEVICES
from fusionnas.evaluators.runtimes import default_runtime, measure_side_by_side
from fusionnas.spaces import Arch, get_space
from fusionnas.trial_record import latency_column

__all__ = ["measure_trials", "measurement_plan", "format_measurements"]


def measurement_plan(runtimes: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Latency column -> (where to measure, runtime); Jetson columns are measured on this cpu.

    A study without a latency gets ``cpu`` in its default runtime.
    """
    if not runtimes:
        return {latency_column("ms", "cpu"): ("cpu", default_runtime("cpu"))}
    return {latency_column("ms", device): (device if device in MEASURABLE_DEVICES else "cpu", runtime)
            for device, runtime in runtimes.items()}


def measure_trials(rows: pd.DataFrame, runtimes: Mapping[str, str], *, threads: int = 1,
                   rounds: int = 5, repeats: int = 10, batch_sizes: Mapping[str, int] | None = None,
                   weights_dir: Path | None = None) -> pd.DataFrame:
    """``trial``, ``archid``, ``accuracy`` and ``flops`` where ``rows`` has them, then per latency
    column the study's figure, ``measured_ms@<where>/<runtime>`` and the speed relative to the baseline
    (``vs_baseline``: baseline ms / trial ms), one row per trial of ``rows`` plus a ``baseline`` row;
    every model timed side by side, with its trained weights when ``weights_dir`` holds them (a
    trained DCT layer prunes), at the device's batch size of ``batch_sizes`` (default 1)."""
    if rows.empty:
        return pd.DataFrame()
    archs = {int(r["number"]): Arch.from_json(r["arch"]) for _, r in rows.iterrows()}
    space = get_space(next(iter(archs.values())).space)
    classes = {int(r["number"]): int(r["num_classes"]) if pd.notna(r.get("num_classes")) else None
               for _, r in rows.iterrows()}
    models = {str(n): space.build(a, num_classes=classes[n]) for n, a in archs.items()}
    if weights_dir is not None and "weights" in rows.columns:
        for _, row in rows.iterrows():
            name = row["weights"]
            if isinstance(name, str) and (Path(weights_dir) / name).is_file():
                state = torch.load(Path(weights_dir) / name, map_location="cpu", weights_only=True)
                models[str(int(row["number"]))].load_state_dict(state)
    models["baseline"] = space.build(space.baseline(), num_classes=next(iter(classes.values())))
    table = pd.DataFrame({"trial": list(models),
                          "archid": [*(a.archid for a in archs.values()), space.baseline().archid]})
    for column in ("accuracy", "flops"):
        if column in rows.columns:
            known = dict(zip(rows["number"].astype(int).astype(str), rows[column].astype(float)))
            table[column] = [known.get(name, float("nan")) for name in models]
    for column, (where, runtime) in measurement_plan(runtimes).items():
        batch = (batch_sizes or {}).get(column.split("@", 1)[1], 1)
        measured = measure_side_by_side(models, space.input_shape, runtime, where, threads=threads,
                                        rounds=rounds, repeats=repeats, batch_size=batch)
        if column in rows.columns:
            predicted = dict(zip(rows["number"].astype(int).astype(str), rows[column].astype(float)))
            table[f"{column} (study)"] = [predicted.get(name, float("nan")) for name in models]
        name = f"measured_ms@{where}/{runtime}" + (f"/b{batch}" if batch != 1 else "")
        table[name] = [measured[key] for key in models]
        table[f"vs_baseline@{where}/{runtime}"] = measured["baseline"] / table[name]
    return table


def format_measurements(table: pd.DataFrame, threads: int) -> str:
    """The table of :func:`measure_trials` as text, with a line on how it was measured."""
    if table.empty:
        return "nothing to measure: the frontier is empty"
    shown = table.assign(flops=table["flops"] / 1e6).rename(columns={"flops": "MFLOPs"}) if "flops" in table else table
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    return (f"{text}\n\nmeasured whole as exported ({threads} thread{'s' * (threads > 1)}), with trained weights, "
            f"side by side with the all-conv baseline: each network's fastest of interleaved rounds (vs_baseline "
            f"> 1: faster than it); the study's figure is what the search used (a part-table estimate before "
            f"training, a whole measurement after it); a Jetson latency is measured on this cpu, the estimate's "
            f"own kind of runtime")
