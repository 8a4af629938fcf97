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

import pandas as pd
import torch

from fusionnas.evaluators.latency import LatencyModel, measure_latency
from fusionnas.spaces import get_space, random_archs


def validate(space_name: str, n_archs: int, seed: int, repeats: int, calibration_archs: int) -> tuple[LatencyModel, pd.DataFrame]:
    """Profile a table (with its calibration) on one set of architectures, then predict and
    measure another: one row per validation architecture."""
    space = get_space(space_name)
    table = LatencyModel.profile_space(space, "cpu", samples=calibration_archs, seed=seed + 1000, repeats=repeats)
    rows = []
    for arch in random_archs(space, n_archs, seed=seed):
        predicted = table.predict(arch)
        measured = measure_latency(space.build(arch), space.input_shape, repeats=repeats)
        rows.append({"archid": arch.archid, "predicted_ms": predicted, "measured_ms": measured})
    frame = pd.DataFrame(rows)
    frame["error"] = frame.predicted_ms / frame.measured_ms - 1
    return table, frame


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2-cifar")
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every measurement")
    parser.add_argument("--calibration-archs", type=int, default=20, help="random archs the table is calibrated on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table, frame = validate(args.space, args.archs, args.seed, args.repeats, args.calibration_archs)
    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1")
    scale, offset = table.calibration
    print(f"# table: {len(table.entries)} entries; calibration: whole = {scale:.3f} x sum(parts) {offset:+.3f} ms")
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
