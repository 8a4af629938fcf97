"""Do TPE, NSGA-II and evolution find a better frontier than random search at the same budget?

Run: ``python -m benchmarks.sampler [--trials 40] [--seeds 3]``.
The quickstart study's space and data with a zero-cost objective (no
training: synflow at the study's resolution, maximised, against FLOPs,
minimised), searched by each sampler for the same number of trials and
seeds. Prints the hypervolume of each run's frontier and, per seed, the
ratio of each sampler's hypervolume to random search's (> 1: better).

Hypervolume is taken on (log10 synflow, FLOPs in millions), normalised to
[0, 1] by the range all runs together reached, with the reference point at
the worst corner, so the numbers compare within one invocation only.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time

import numpy as np
import optuna
import torch

from fusionnas.evaluators.data import get_dataset
from fusionnas.results.pareto import pareto_mask
from fusionnas.search import Budget, Objective, SamplerConfig, SearchObjective, load_study_config

SAMPLERS = {
    "random": SamplerConfig("random"),
    "tpe": SamplerConfig("tpe", n_startup_trials=10),
    "tpe-mv": SamplerConfig("tpe", n_startup_trials=10, multivariate=True, group=True),
    "nsga2": SamplerConfig("nsga2", population_size=10),
    "evolution": SamplerConfig("evolution", n_startup_trials=8),
}


def hypervolume_2d(points: np.ndarray) -> float:
    """Area dominated by ``points`` (both coordinates minimised, inside the unit square, reference (1, 1))."""
    front = points[pareto_mask(points, [False, False])]
    front = front[np.argsort(front[:, 0])]
    area, last_y = 0.0, 1.0
    for x, y in front:
        if y < last_y:
            area += (1.0 - x) * (last_y - y)
            last_y = y
    return area


def run(study_path: str, trials: int, seeds: int) -> dict[str, list[np.ndarray]]:
    """Per sampler, one (trials, 2) array of (synflow, FLOPs) per seed."""
    config = load_study_config(study_path)
    config = dataclasses.replace(
        config, objectives=(Objective("zero_cost", proxy="synflow"), Objective("flops")),
        budget=Budget(kind="zero_cost", resolution=config.budget.resolution, zero_cost_proxy="synflow"), enqueue=())
    data = get_dataset(config.dataset.name, config.dataset.root, seed=config.seed,
                       val_fraction=config.dataset.val_fraction)
    results: dict[str, list[np.ndarray]] = {name: [] for name in SAMPLERS}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for seed in range(seeds):
        for name, sampler in SAMPLERS.items():
            run_config = dataclasses.replace(config, seed=seed, sampler=dataclasses.replace(sampler, seed=seed))
            study = optuna.create_study(directions=run_config.directions, sampler=run_config.make_sampler())
            start = time.perf_counter()
            study.optimize(SearchObjective(run_config, data), n_trials=trials)
            values = np.array([t.values for t in study.trials if t.values is not None])
            results[name].append(values)
            print(f"seed {seed} {name:<6} {len(values)} trials in {time.perf_counter() - start:5.1f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/quickstart.toml")
    parser.add_argument("--trials", type=int, default=40, help="trials per sampler and seed (equal budget)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, optuna {optuna.__version__}; "
          f"{args.trials} trials x {args.seeds} seeds per sampler, synflow (max) vs FLOPs (min)")
    results = run(args.study, args.trials, args.seeds)
    # Minimise both: -log10(synflow) and MFLOPs; normalise by the joint range.
    transformed = {name: [np.column_stack([-np.log10(np.maximum(v[:, 0], 1e-300)), v[:, 1] / 1e6]) for v in runs]
                   for name, runs in results.items()}
    everything = np.vstack([v for runs in transformed.values() for v in runs])
    low, high = everything.min(axis=0), everything.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)
    volumes = {name: [hypervolume_2d((v - low) / scale) for v in runs] for name, runs in transformed.items()}
    others = [name for name in SAMPLERS if name != "random"]
    print(f"\n{'seed':<6}" + "".join(f"{name:>10}" for name in SAMPLERS)
          + "".join(f"{name + '/rnd':>14}" for name in others))
    for seed in range(args.seeds):
        hv = {name: volumes[name][seed] for name in SAMPLERS}
        print(f"{seed:<6}" + "".join(f"{hv[name]:>10.4f}" for name in SAMPLERS)
              + "".join(f"{hv[name] / hv['random']:>14.3f}" for name in others))
    mean = {name: statistics.fmean(volumes[name]) for name in SAMPLERS}
    print(f"{'mean':<6}" + "".join(f"{mean[name]:>10.4f}" for name in SAMPLERS)
          + "".join(f"{mean[name] / mean['random']:>14.3f}" for name in others))

if __name__ == "__main__":
    main()
