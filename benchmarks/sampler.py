"""Which sampler (and fidelity) finds the better frontier than random search in the same wall-clock time?

Run: ``python -m benchmarks.sampler [--study studies/quickstart.toml] [--minutes 5] [--seeds 3]
[--samplers random,tpe,tpe-mv,nsga2,evolution] [--budgets study] [--workers 2]``.

Every (seed, sampler, budget) runs the study's real objectives (accuracy on
its data against FLOPs or latency, with its constraints) through
:func:`fusionnas.search.run_study` on a fresh SQLite file for the same
wall-clock time; the runs of one seed are interleaved, so a slow phase of the
machine hurts all samplers alike. For each run the frontier is the study's
own (``is_pareto``: feasible, at the highest rung reached). Printed side by
side: trials and architectures evaluated, the hypervolume of each frontier
(accuracy maximised, the cost minimised; normalised per seed by the range all
its runs reached, reference point at the worst corner) and its ratio to
random search's, and per cost level (quarters of the largest cost on any
frontier) the best accuracy each found under it.

``--workers N`` runs each study as ``fusionnas search --workers N`` does: N
processes on its storage, the cores split between them (the quickstart's way
on 2 cores). ``--budgets`` compares fidelities too: ``study`` is the study file's budget,
``rungs:S:R:E`` the same with ``steps = S, rungs = R, reduction = E``.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch

from fusionnas.frontier import pareto_mask
from fusionnas.results import trials_frame
from fusionnas.search import Budget, SamplerConfig, StudyConfig, load_study_config, run_study

SAMPLERS = {
    "random": SamplerConfig("random"),
    "tpe": SamplerConfig("tpe", n_startup_trials=10),
    "tpe-mv": SamplerConfig("tpe", n_startup_trials=10, multivariate=True, group=True),
    "nsga2": SamplerConfig("nsga2", population_size=10),
    "evolution": SamplerConfig("evolution", n_startup_trials=8),
}


def hypervolume_2d(points: np.ndarray) -> float:
    """Area dominated by ``points`` (both coordinates minimised, inside the unit square, reference (1, 1))."""
    if len(points) == 0:
        return 0.0
    front = points[pareto_mask(points, [False, False])]
    front = front[np.argsort(front[:, 0])]
    area, last_y = 0.0, 1.0
    for x, y in front:
        if y < last_y:
            area += (1.0 - x) * (last_y - y)
            last_y = y
    return area


def budget_of(config: StudyConfig, spec: str) -> Budget:
    """``study`` or ``rungs:S:R:E`` (see the module docstring)."""
    if spec == "study":
        return config.budget
    kind, steps, rungs, reduction = spec.split(":")
    if kind != "rungs":
        raise SystemExit(f"unknown budget {spec!r}; use study or rungs:STEPS:RUNGS:REDUCTION")
    return dataclasses.replace(config.budget, epochs=None, steps=int(steps), rungs=int(rungs),
                               reduction=int(reduction))


def one_run(config: StudyConfig, folder: Path, seconds: float, workers: int) -> pd.DataFrame:
    """The trials frame of one timed run of ``config`` by ``workers`` processes on a fresh SQLite file."""
    url = f"sqlite:///{folder / (config.name + '.db')}"
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_work, args=(config, url, seconds, threads)) for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"a worker of {config.name} exited with {process.exitcode}")
    return trials_frame(optuna.load_study(study_name=config.name, storage=url))


def _work(config: StudyConfig, url: str, seconds: float, threads: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(threads)
    run_study(config, storage=url, progress=False, timeout_s=seconds)


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/quickstart.toml")
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock time of every run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samplers", default="random,tpe,evolution")
    parser.add_argument("--budgets", default="study", help="comma-separated: study, rungs:S:R:E")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per study, cores split")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(2)
    base = load_study_config(args.study)
    cost = next(o.name for o in base.objectives if o.metric != "accuracy")
    samplers = [s for s in args.samplers.split(",") if s]
    if "random" not in samplers:
        samplers.insert(0, "random")
    budgets = [b for b in args.budgets.split(",") if b]
    runs = [(s, b) for b in budgets for s in samplers]
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, optuna {optuna.__version__}; "
          f"{args.minutes:g} min per run, {args.workers} worker(s), {args.seeds} seeds, accuracy (max) vs {cost} "
          f"(min), {args.study}",
          flush=True)
    frames: dict[tuple[int, str, str], pd.DataFrame] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for sampler, budget in runs:
                config = dataclasses.replace(
                    base, name=f"bench-{seed}-{sampler}-{budget.replace(':', '-')}", seed=seed, enqueue=(),
                    n_trials=None, timeout_s=args.minutes * 60, budget=budget_of(base, budget),
                    sampler=dataclasses.replace(SAMPLERS[sampler], seed=seed))
                start = time.perf_counter()
                frame = one_run(config, Path(tmp), args.minutes * 60, args.workers)
                frames[seed, sampler, budget] = frame
                print(f"seed {seed} {sampler:<9} {budget:<14} {len(frame)} trials, {frame['archid'].nunique()} "
                      f"architectures in {time.perf_counter() - start:.0f} s", flush=True)
    report(frames, args.seeds, runs, cost)


def report(frames: dict, seeds: int, runs: list[tuple[str, str]], cost: str) -> None:
    """Hypervolume ratios to random search and the best accuracy per cost level, per run."""
    rows = []
    for seed in range(seeds):
        fronts = {run: frames[(seed, *run)].query("is_pareto")[["accuracy", cost]].to_numpy(float) for run in runs}
        every = np.vstack([f for f in fronts.values() if len(f)] or [np.zeros((1, 2))])
        low, high = every.min(axis=0), every.max(axis=0)
        scale = np.where(high > low, high - low, 1.0)
        levels = every[:, 1].max() * np.array([0.25, 0.5, 0.75, 1.0])
        for run, front in fronts.items():
            points = np.column_stack([(high[0] - front[:, 0]) / scale[0], (front[:, 1] - low[1]) / scale[1]])
            frame = frames[(seed, *run)]
            row = {"seed": seed, "sampler": run[0], "budget": run[1], "trials": len(frame),
                   "archs": frame["archid"].nunique(), "hv": hypervolume_2d(points)}
            for level, limit in zip(("q1", "q2", "q3", "q4"), levels):
                under = front[front[:, 1] <= limit]
                row[f"best@{level}"] = under[:, 0].max() if len(under) else np.nan
            rows.append(row)
    table = pd.DataFrame(rows)
    random_hv = table[table.sampler == "random"].set_index(["seed", "budget"])["hv"]
    table["hv/random"] = [hv / random_hv.get((s, "study"), random_hv.get((s, b), np.nan))
                          for s, b, hv in zip(table.seed, table.budget, table.hv)]
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    columns = ["trials", "archs", "hv", "hv/random", "best@q1", "best@q2", "best@q3", "best@q4"]
    mean = table.groupby(["sampler", "budget"], sort=False)[columns].mean()  # best@qK: over seeds that have one
    print("\nmean over seeds (best@qK: best accuracy at a cost under K quarters of the largest)\n"
          + mean.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
