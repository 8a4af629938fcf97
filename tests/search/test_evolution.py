"""The evolutionary sampler: random start, mutants of feasible frontier parents, no repeats."""
from __future__ import annotations

import numpy as np
import optuna
import pytest

from fusionnas.search import SamplerConfig
from fusionnas.search.evolution import EvolutionSampler
from fusionnas.spaces import get_space

N_PARAMS, VALUES = 8, (0, 1, 2, 3)


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


_TABLES = np.random.RandomState(7).rand(2, N_PARAMS, len(VALUES))  # cost and quality per choice


def toy(trial: optuna.Trial) -> tuple[float, float]:
    """A knapsack-like frontier over 8 four-valued choices: total cost (min) against total quality (max)."""
    x = [trial.suggest_categorical(f"x{i}", VALUES) for i in range(N_PARAMS)]
    cost, quality = (float(sum(table[i, v] for i, v in enumerate(x))) for table in _TABLES)
    return cost, -quality


def distance(a: dict, b: dict) -> int:
    return sum(a[k] != b[k] for k in a)


def hypervolume(study: optuna.Study) -> float:
    """Area dominated by the trials, both objectives minimised, reference (8, 0): the worst corner."""
    points = sorted({tuple(t.values) for t in study.trials})
    area, last = 0.0, 0.0
    for f1, f2 in points:
        if f2 < last:
            area += (N_PARAMS - f1) * (last - f2)
            last = f2
    return area


def test_after_the_start_every_trial_mutates_one_or_two_choices_of_an_earlier_one() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=EvolutionSampler(n_startup_trials=5, seed=0))
    study.optimize(toy, n_trials=30)
    trials = study.trials
    for trial in trials[5:]:
        nearest = min(distance(trial.params, earlier.params) for earlier in trials[:trial.number])
        assert nearest in (1, 2), trial.number


def test_parents_are_feasible_trials() -> None:
    """With x0 == 0 infeasible, every mutant's nearest earlier trial that it can descend from is feasible."""

    def constrained(trial: optuna.Trial) -> tuple[float, float]:
        values = toy(trial)
        trial.set_constraint("x0", 1.0 if trial.params["x0"] == 0 else -1.0)
        return values

    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=EvolutionSampler(n_startup_trials=6, seed=1))
    study.optimize(constrained, n_trials=40)
    trials = study.trials
    assert any(t.constraints["x0"] > 0 for t in trials[:6])  # the random start met the infeasible region
    for trial in trials[6:]:
        feasible_before = [t for t in trials[:trial.number] if t.constraints["x0"] <= 0]
        if feasible_before:
            assert min(distance(trial.params, t.params) for t in feasible_before) in (1, 2), trial.number


def test_no_architecture_is_proposed_twice_while_new_ones_are_near() -> None:
    def small(trial: optuna.Trial) -> tuple[float, float]:
        a, b = trial.suggest_categorical("a", (0, 1)), trial.suggest_categorical("b", (0, 1))
        return float(a + b), float(2 - a - b)

    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=EvolutionSampler(n_startup_trials=1, seed=0))
    study.optimize(small, n_trials=4)
    assert len({(t.params["a"], t.params["b"]) for t in study.trials}) == 4


def test_it_finds_a_better_frontier_than_random_search_on_the_toy_problem() -> None:
    """Deterministic (seeded); over five seeds the mean hypervolume beats random search's."""
    results = {"evolution": [], "random": []}
    for seed in range(5):
        for name, sampler in (("evolution", EvolutionSampler(n_startup_trials=8, seed=seed)),
                              ("random", optuna.samplers.RandomSampler(seed=seed))):
            study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
            study.optimize(toy, n_trials=60)
            results[name].append(hypervolume(study))
    assert np.mean(results["evolution"]) > 1.08 * np.mean(results["random"]), results


def test_it_samples_the_mobilenet_space() -> None:
    space = get_space("mobilenetv2-cifar")

    def count_ops(trial: optuna.Trial) -> tuple[float, float]:
        arch = space.sample(trial)
        ops = [op for b in arch.blocks for op in (b.expand, b.project)]
        return float(ops.count("conv")), float(ops.count("wht"))

    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=SamplerConfig("evolution", seed=0, n_startup_trials=4).make_sampler())
    study.optimize(count_ops, n_trials=12)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 12  # twelve different architectures
    for trial in study.trials[4:]:
        assert min(distance(trial.params, t.params) for t in study.trials[:trial.number]) in (1, 2)


@pytest.mark.parametrize("options, message", [
    ({"n_startup_trials": -1}, "n_startup_trials"),
    ({"population_size": 1}, "population_size"),
])
def test_bad_options_are_refused(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        EvolutionSampler(**options)
