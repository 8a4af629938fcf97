"""Does offering the transforms find networks that are faster as deployed at equal accuracy?

Run: ``python -m benchmarks.hybrids [--study studies/latency-cpu.toml] [--minutes 6] [--seeds 3]
[--workers 2] [--check 30]``.

For every seed, the study (accuracy against latency measured whole on this
CPU) runs for the same wall-clock time, each time by ``--workers`` processes
on a fresh SQLite file: over its whole space as the file draws it (``full``);
when the file draws the operators as network defaults, also drawing them
layer by layer (``per-layer``); and over the space restricted to the conv
(``conv``: ``[space] fusions = ["conv"], depthwise = ["conv"]``; presets it
lacks are not enqueued). The order of the runs alternates between seeds, so
a slow phase of the machine hurts all alike. Printed per run: trials,
architectures, the hypervolume of its frontier (accuracy in [0, 1]
maximised, latency minimised, reference point at accuracy 0 and
``--reference`` times the all-conv baseline's latency) and its ratio to the
conv-only run's, how many frontier points use a transform, and how many of
those dominate a point of the conv-only frontier.

Then, on the idle machine, ``--check`` trained networks of every run (its
frontier first, then a seeded sample) are measured again whole with their
trained weights, by the study's own protocol
(:class:`~fusionnas.evaluators.deployed.DeployedLatencyMeter`, its reference
calibrated afresh), and the latency recorded during the study is compared
with it: the share within +-10 % says whether measuring beside other workers
holds (in milliseconds, and in the ratio to the baseline, which leaves out
the reference's calibration drift between the two).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch

from benchmarks.sampler import hypervolume_2d, one_run
from fusionnas.evaluators.deployed import DeployedLatencyMeter
from fusionnas.results import trials_frame
from fusionnas.search import SpaceRestriction, StudyConfig, artifacts_dir, load_study_config
from fusionnas.spaces import Arch, get_space
from fusionnas.trial_record import latency_column

CONV_ONLY = {"fusions": ("conv",), "depthwise": ("conv",)}


def variants(base: StudyConfig, seed: int, minutes: float) -> dict[str, StudyConfig]:
    """For one seed: the study as written (``full``), the same drawing its operators layer by layer
    when the file asks for network defaults (``per-layer``), and the study restricted to the conv."""
    common = dict(seed=seed, n_trials=None, timeout_s=minutes * 60,
                  sampler=dataclasses.replace(base.sampler, seed=seed))
    space = get_space(base.space)
    restricted = SpaceRestriction(base.space, CONV_ONLY)
    conv_presets = tuple(p for p in base.enqueue if _in_space(restricted, space.preset(p)))
    runs = {"full": dataclasses.replace(base, name=f"hybrids-{seed}-full", **common)}
    if base.space_restriction is not None and base.space_restriction.network_defaults:
        per_layer = dataclasses.replace(base.space_restriction, network_defaults=False)
        runs["per-layer"] = dataclasses.replace(
            base, name=f"hybrids-{seed}-per-layer",
            space_restriction=per_layer if per_layer.subsets else None, **common)
    runs["conv"] = dataclasses.replace(base, name=f"hybrids-{seed}-conv", space_restriction=restricted,
                                       enqueue=conv_presets, **common)
    return runs


def _in_space(restriction: SpaceRestriction, arch: Arch) -> bool:
    try:
        restriction.space().validate(arch)
    except ValueError:
        return False
    return True


def uses_transform(arch_json: str) -> bool:
    """True when an architecture has any operator other than the conv."""
    arch = json.loads(arch_json)
    ops = [arch["head_fusion"], *(b[k] for b in arch["blocks"] for k in ("expand", "depthwise", "project"))]
    return any(op not in (None, "conv") for op in ops)


def frontier(frame: pd.DataFrame, latency: str) -> pd.DataFrame:
    """The run's own frontier (feasible, top rung, non-dominated), most accurate first."""
    return frame[frame["is_pareto"]].sort_values(["accuracy", latency], ascending=[False, True])


def hypervolume(front: pd.DataFrame, column: str, reference: float) -> float:
    """Area dominated by ``front`` in accuracy [0, 1] x ``column`` [0, reference], normalised to 1."""
    points = np.column_stack([1 - front["accuracy"].to_numpy(float), front[column].to_numpy(float) / reference])
    return hypervolume_2d(points)


def dominating_hybrids(front: pd.DataFrame, conv_front: pd.DataFrame, latency: str) -> int:
    """How many of ``front``'s transform networks dominate at least one point of ``conv_front``."""
    count = 0
    conv = conv_front[["accuracy", latency]].to_numpy(float)
    for _, row in front[front["arch"].map(uses_transform)].iterrows():
        acc, ms = row["accuracy"], row[latency]
        if np.any((acc >= conv[:, 0]) & (ms <= conv[:, 1]) & ((acc > conv[:, 0]) | (ms < conv[:, 1]))):
            count += 1
    return count


def idle_check(config: StudyConfig, url: str, frame: pd.DataFrame, latency: str, count: int,
               seed: int) -> pd.DataFrame:
    """Up to ``count`` trained networks of the run (frontier first) measured again whole with their
    weights, as the study measured them: recorded and idle milliseconds per network, and both ratios
    to the baseline."""
    space = get_space(config.space)
    device = latency.split("@")[1]
    whole = frame[(frame["state"] == "COMPLETE") & frame[latency].notna()
                  & frame.get(latency_column("source", device), pd.Series(dtype=object)).eq("whole")]
    whole = whole.drop_duplicates("archid")
    chosen = pd.concat([whole[whole["is_pareto"]], whole[~whole["is_pareto"]].sample(frac=1, random_state=seed)])
    chosen = chosen.head(count)
    if chosen.empty:
        return pd.DataFrame()
    weights = artifacts_dir(config, url) / "weights"
    classes = int(chosen["num_classes"].iloc[0])
    meter = DeployedLatencyMeter(space.build(space.baseline(), num_classes=classes), space.input_shape,
                                 str(chosen[latency_column("runtime", device)].iloc[0]), device,
                                 batch_size=config.latency_batch_sizes[device])
    rows = []
    for _, row in chosen.iterrows():
        model = space.build(Arch.from_json(row["arch"]), num_classes=classes)
        if isinstance(row.get("weights"), str) and (weights / row["weights"]).is_file():
            model.load_state_dict(torch.load(weights / row["weights"], map_location="cpu", weights_only=True))
        idle = meter.measure(model)
        rows.append({"trial": int(row["number"]), "recorded_ms": float(row[latency]), "idle_ms": idle.ms,
                     "recorded_ratio": float(row[latency_column("ratio", device)]), "idle_ratio": idle.ratio})
    return pd.DataFrame(rows)


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/latency-cpu.toml")
    parser.add_argument("--minutes", type=float, default=6.0, help="wall-clock time of every run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per study, cores split")
    parser.add_argument("--reference", type=float, default=1.5,
                        help="hypervolume reference latency, in multiples of the baseline's")
    parser.add_argument("--check", type=int, default=30, help="networks per run measured again on the idle machine")
    parser.add_argument("--keep", metavar="DIR", help="keep every run's storage and artifacts in DIR")
    parser.add_argument("--analyse", metavar="DIR", help="report on the runs kept in DIR (no runs, no idle check)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(2)
    base = load_study_config(args.study)
    latency = next(o.name for o in base.objectives if o.metric == "latency")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, optuna {optuna.__version__}; "
          f"{args.minutes:g} min per run, {args.workers} worker(s), {args.seeds} seeds, accuracy (max) vs {latency} "
          f"(min, measured whole during the study), {args.study}", flush=True)
    rows, checks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            configs = variants(base, seed, args.minutes)
            frames: dict[str, pd.DataFrame] = {}
            if args.analyse:
                for name, config in configs.items():
                    url = f"sqlite:///{Path(args.analyse) / f'{seed}-{name}' / (config.name + '.db')}"
                    frames[name] = trials_frame(optuna.load_study(study_name=config.name, storage=url))
                rows += compare(seed, frames, latency, args.reference)
                continue
            for name in (list(configs) if seed % 2 == 0 else list(configs)[::-1]):
                start = time.perf_counter()
                folder = Path(args.keep or tmp) / f"{seed}-{name}"
                folder.mkdir(parents=True)
                frames[name] = one_run(configs[name], folder, args.minutes * 60, args.workers)
                print(f"seed {seed} {name:<4} {len(frames[name])} trials, {frames[name]['archid'].nunique()} "
                      f"architectures in {time.perf_counter() - start:.0f} s", flush=True)
                url = f"sqlite:///{folder / (configs[name].name + '.db')}"
                check = idle_check(configs[name], url, frames[name], latency, args.check, seed)
                checks.append(check.assign(seed=seed, space=name))
            rows += compare(seed, frames, latency, args.reference)
    report(pd.DataFrame(rows), pd.concat(checks, ignore_index=True) if checks else None, args.reference)


def compare(seed: int, frames: dict[str, pd.DataFrame], latency: str, reference: float) -> list[dict]:
    """One row per run of a seed: hypervolume and its ratio to the conv-only run's, transform networks on
    its frontier and how many of them dominate a conv-only frontier point.

    Latency is taken relative to the baseline measured beside each network (``latency_column("ratio", device)``): each
    run calibrates its own reference time, and on these VMs two calibrations minutes apart differ by
    up to ~10 %, which would tilt a comparison in milliseconds between runs.
    """
    ratio = latency_column("ratio", latency.split("@", 1)[1])
    fronts = {name: frontier(frame, latency).dropna(subset=[ratio]) for name, frame in frames.items()}
    hv = {name: hypervolume(front, ratio, reference) for name, front in fronts.items()}
    rows = []
    for name, front in fronts.items():
        baseline = frames[name]
        baseline = baseline[(baseline["preset"] == "baseline") & baseline[latency].notna()][latency]
        rows.append({"seed": seed, "space": name, "trials": len(frames[name]),
                     "archs": frames[name]["archid"].nunique(), "baseline_ms": float(baseline.median()),
                     "hv": hv[name], "hv/conv": hv[name] / hv["conv"] if hv["conv"] else np.nan,
                     "frontier (transform)": f"{len(front)} ({int(front['arch'].map(uses_transform).sum())})",
                     "dominating hybrids": dominating_hybrids(front, fronts["conv"], ratio) if name != "conv" else 0,
                     "frontier accuracy@x_baseline_time": _best(front, ratio)})
    return rows


def _best(front: pd.DataFrame, latency: str) -> str:
    return " ".join(f"{a:.3f}@{ms:.2f}" for a, ms in zip(front["accuracy"], front[latency]))


def report(table: pd.DataFrame, checks: pd.DataFrame | None, reference: float) -> None:
    """The per-seed table, and how the latencies recorded during the studies compare with idle ones."""
    print(f"\nhypervolume: accuracy x latency up to {reference:g}x the baseline's (goal: full hv/conv >= 1.1 on "
          f"every seed, with hybrids on the full space's frontier that dominate conv-only points)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nmean hv/conv: " + ", ".join(f"{k} {v:.3f}" for k, v in table.groupby("space", sort=False)["hv/conv"]
                                        .mean().items()))
    if checks is None:
        return
    error = checks["recorded_ms"] / checks["idle_ms"] - 1
    ratio_error = checks["recorded_ratio"] / checks["idle_ratio"] - 1
    print(f"\nrecorded during the studies vs measured again idle ({len(checks)} networks, trained weights):\n"
          f"  milliseconds: {(error.abs() <= 0.10).mean():.0%} within +-10 % (goal >= 95 %), median |error| "
          f"{error.abs().median():.1%}, Kendall tau {checks['recorded_ms'].corr(checks['idle_ms'], method='kendall'):.3f}\n"
          f"  ratio to the baseline: {(ratio_error.abs() <= 0.10).mean():.0%} within +-10 %, median |error| "
          f"{ratio_error.abs().median():.1%}")
    print(checks.assign(error=error, ratio_error=ratio_error).groupby(["seed", "space"])[["error", "ratio_error"]]
          .agg(["mean", "min", "max"]).to_string(float_format=lambda v: f"{v:.3f}"))

if __name__ == "__main__":
    main()
