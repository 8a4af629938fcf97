"""How well the per-block latency table predicts whole networks on this machine.

Run: ``python -m benchmarks.latency_model [--archs 30] [--space mobilenetv2-cifar]``.
Random architectures of the space are predicted from a lookup table measured
part by part (stem, blocks, head) and then measured whole, on the same
threads; prints the fraction within +-10 % and Kendall's tau between
predicted and measured latency.
"""
from __future__ import annotations

import argparse
import platform

import optuna
import pandas as pd
import torch

from fusionnas.evaluators.latency import LatencyModel, measure_latency
from fusionnas.spaces import get_space


def validate(space_name: str, n_archs: int, seed: int, repeats: int) -> pd.DataFrame:
    """One row per architecture: predicted and measured ms."""
    space = get_space(space_name)
    table = LatencyModel(space, "cpu", repeats=repeats)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rows = []
    for _ in range(n_archs):
        trial = study.ask()
        arch = space.sample(trial)
        study.tell(trial, 0.0)
        predicted = table.predict(arch)
        measured = measure_latency(space.build(arch), space.input_shape, repeats=repeats)
        rows.append({"archid": arch.archid, "predicted_ms": predicted, "measured_ms": measured})
    frame = pd.DataFrame(rows)
    frame["error"] = frame.predicted_ms / frame.measured_ms - 1
    return frame


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2-cifar")
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(2)
    frame = validate(args.space, args.archs, args.seed, args.repeats)
    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    within = (frame.error.abs() <= 0.10).mean()
    tau = frame.predicted_ms.corr(frame.measured_ms, method="kendall")
    print(
        f"\n{args.space}: {len(frame)} architectures, within +-10 %: {within:.0%}, "
        f"Kendall tau: {tau:.3f}, median |error|: {frame.error.abs().median():.1%} "
        f"(goal: >= 90 %, tau >= 0.9)"
    )


if __name__ == "__main__":
    main()
