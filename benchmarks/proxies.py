"""Do the cheap scores rank architectures like training does?

Run: ``python -m benchmarks.proxies [--archs 20] [--study studies/quickstart.toml]``.
Trains random architectures of the study's space on its dataset with the
study's proxy budget, scores each untrained copy with every zero-cost proxy,
and prints the Spearman rank correlation of each score, of FLOPs and of
parameters with the trained validation accuracy.
"""
from __future__ import annotations

import argparse
import platform
import time

import pandas as pd
import torch

from fusionnas.evaluators import count_flops, count_params
from fusionnas.evaluators.data import get_dataset, iterate_batches
from fusionnas.evaluators.proxy import ProxyBudget, ProxyTrainingError, train_proxy
from fusionnas.evaluators.zero_cost import ZERO_COST_PROXIES, score
from fusionnas.search import load_study_config
from fusionnas.spaces import get_space, random_archs


def _scoring_batch(data, budget: ProxyBudget, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """One normalised training batch at the budget's resolution, as the proxies see it."""
    generator = torch.Generator().manual_seed(0)
    return next(iterate_batches(
        data.x_train, data.y_train, size, mean=data.mean, std=data.std, shuffle=True,
        generator=generator, resolution=budget.resolution,
    ))


def correlations(study_path: str, n_archs: int, seed: int, steps: int | None = None) -> pd.DataFrame:
    """One row per architecture: trained accuracy, every zero-cost score, FLOPs, params."""
    config = load_study_config(study_path)
    space = get_space(config.space)
    data = get_dataset(config.dataset.name, config.dataset.root, seed=config.seed,
                       val_fraction=config.dataset.val_fraction)
    options = config.budget.proxy_options()
    if steps is not None:
        options.pop("epochs", None)
        options["steps"] = steps
    budget = ProxyBudget(**options, seed=config.seed, device="cpu")
    x, y = _scoring_batch(data, budget)
    side = budget.resolution or space.input_shape[-1]
    rows = []
    for i, arch in enumerate(random_archs(space, n_archs, seed=seed)):
        row = {"archid": arch.archid}
        torch.manual_seed(seed + i)
        model = space.build(arch, num_classes=data.num_classes)
        for name in ZERO_COST_PROXIES:
            row[name] = score(name, model, x, y)
        row["flops"] = count_flops(model, (1, space.input_shape[0], side, side))
        row["params"] = count_params(model)
        start = time.perf_counter()
        try:
            row["accuracy"] = train_proxy(model, data, budget).val_accuracy
        except ProxyTrainingError as error:
            row["accuracy"] = float("nan")
            row["failure"] = error.reason
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(f"  {i + 1}/{n_archs} {arch.archid} accuracy {row['accuracy']:.3f} ({row['seconds']:.1f} s)", flush=True)
    return pd.DataFrame(rows)


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/quickstart.toml", help="space, data and budget to use")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="training steps per architecture (default: the study's)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    frame = correlations(args.study, args.archs, args.seed, args.steps)
    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    trained = frame.dropna(subset=["accuracy"])
    steps = args.steps or "the study's"
    print(f"\nSpearman rank correlation with trained accuracy ({len(trained)} architectures, "
          f"{args.study}, {steps} steps):")
    for column in (*ZERO_COST_PROXIES, "flops", "params"):
        print(f"  {column:<10} {trained[column].corr(trained.accuracy, method='spearman'):+.3f}")


if __name__ == "__main__":
    main()
