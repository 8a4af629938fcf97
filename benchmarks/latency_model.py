"""How well the per-part latency table predicts whole networks on this machine, per runtime.

Run: ``python -m benchmarks.latency_model [--runtime onnxruntime|torch|both] [--archs 30]
[--space mobilenetv2-cifar] [--threads 1]``. A table is measured part by part
(stem, blocks, head) in the runtime and calibrated on other architectures;
then random architectures of the space are predicted and measured whole
(exported whole, for onnxruntime), on the same threads, in interleaved
rounds (each network's fastest of 5 rounds; parts likewise keep the fastest
of three passes). Prints the fraction
within +-10 % and Kendall's tau between predicted and measured latency, and
Kendall's tau of the Jetson Nano estimate (parts measured here, scaled to
the board) against the same measurements: an estimate can only be judged
by how it ranks here, having no board to measure.
"""
from __future__ import annotations

import argparse
import platform

import onnxruntime
import pandas as pd
import torch

from fusionnas.evaluators.latency import LatencyModel
from fusionnas.evaluators.runtimes import measure_side_by_side
from fusionnas.spaces import get_space, random_archs


def validate(space_name: str, runtime: str, n_archs: int, seed: int, repeats: int, threads: int,
             calibration_archs: int) -> tuple[LatencyModel, pd.DataFrame]:
    """Profile a table (with its calibration) on one set of architectures, then predict and
    measure another: one row per validation architecture."""
    space = get_space(space_name)
    table = LatencyModel.profile_space(space, "cpu", samples=calibration_archs, seed=seed + 1000, runtime=runtime,
                                       threads=threads, repeats=repeats)
    nano = LatencyModel(space, "jetson-nano", runtime=runtime, threads=threads, repeats=repeats)
    archs = random_archs(space, n_archs, seed=seed)
    measured = measure_side_by_side({a.archid: space.build(a) for a in archs}, space.input_shape, runtime,
                                    threads=threads, rounds=5, repeats=repeats)
    rows = [{"archid": a.archid, "predicted_ms": table.predict(a), "measured_ms": measured[a.archid],
             "nano_estimate_ms": nano.predict(a)} for a in archs]
    frame = pd.DataFrame(rows)
    frame["error"] = frame.predicted_ms / frame.measured_ms - 1
    return table, frame


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2-cifar")
    parser.add_argument("--runtime", choices=("onnxruntime", "torch", "both"), default="both")
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every measurement")
    parser.add_argument("--calibration-archs", type=int, default=20, help="random archs the table is calibrated on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.machine()} {platform.processor()}, torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}, {args.threads} thread(s), batch 1")
    runtimes = ("onnxruntime", "torch") if args.runtime == "both" else (args.runtime,)
    summary = []
    for runtime in runtimes:
        table, frame = validate(args.space, runtime, args.archs, args.seed, args.repeats, args.threads,
                                args.calibration_archs)
        scale, offset = table.calibration
        print(f"\n## {runtime}: table of {len(table.entries)} entries; calibration: whole = {scale:.3f} x "
              f"sum(parts) {offset:+.3f} ms")
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        summary.append({
            "runtime": runtime, "archs": len(frame),
            "within_10pct": f"{(frame.error.abs() <= 0.10).mean():.0%}",
            "kendall_tau": round(frame.predicted_ms.corr(frame.measured_ms, method="kendall"), 3),
            "median_abs_error": f"{frame.error.abs().median():.1%}",
            "nano_estimate_tau": round(frame.nano_estimate_ms.corr(frame.measured_ms, method="kendall"), 3),
        })
    print(f"\n{args.space} (goal: within +-10 % >= 90 %, tau >= 0.9):")
    print(pd.DataFrame(summary).to_string(index=False))


if __name__ == "__main__":
    main()
