"""How well the per-part latency table predicts whole networks on this machine, per runtime.

Run: ``python -m benchmarks.latency_model [--runtime onnxruntime|torch|openvino|all] [--archs 30]
[--calibration-archs 40] [--space mobilenetv2-cifar] [--threads 1]``.

A table is profiled part by part (stem, blocks, head) for the calibration
networks (the presets and random ones) and for the validation networks
(other random ones). Every network is also measured whole as deployed
(exported whole, for a graph runtime). Parts and wholes alike are timed
against the space's baseline network run beside them, the median ratio of
alternating runs times the baseline's calibrated time
(:class:`~fusionnas.evaluators.deployed.DeployedLatencyMeter`). The
correction from the sum of parts to the whole is fitted on the calibration
networks two ways: a line on the sums (the table's calibration before
2026-12-07) and with a term per operator (:mod:`fusionnas.evaluators.latency_fit`,
the default). Printed per runtime: each validation network predicted both
ways against its measurement; the fraction within +-10 %, Kendall's tau and
the median error of each; and Kendall's tau of the Jetson Nano estimate
(parts measured here, scaled to the board) against the same measurements:
an estimate can only be judged by how it ranks here, having no board.
"""
from __future__ import annotations

import argparse
import platform

import onnxruntime
import pandas as pd
import torch

from fusionnas.evaluators.latency import LatencyModel
from fusionnas.evaluators.latency_fit import fit_line, operator_counts
from fusionnas.runtime_names import RUNTIMES
from fusionnas.spaces import get_space, random_archs


def validate(space_name: str, runtime: str, n_archs: int, seed: int, repeats: int, threads: int,
             calibration_archs: int) -> tuple[LatencyModel, pd.DataFrame]:
    """Profile and calibrate a table on one set of architectures, then predict and measure another:
    one row per validation architecture."""
    space = get_space(space_name)
    table = LatencyModel(space, "cpu", runtime=runtime, threads=threads, repeats=repeats)
    calibration = [space.preset(name) for name in space.presets()]
    calibration += random_archs(space, calibration_archs, seed=seed + 1000)
    archs = random_archs(space, n_archs, seed=seed)
    table.profile([*calibration, *archs])
    wholes = table.measure_whole([*calibration, *archs])
    fitted = table.calibrate(calibration, wholes[:len(calibration)])
    sums = [sum(table.part_latencies(a).values()) for a in archs]
    line = fit_line([sum(table.part_latencies(a).values()) for a in calibration], wholes[:len(calibration)])
    nano = LatencyModel(space, "jetson-nano", runtime=runtime, threads=threads, repeats=repeats)
    frame = pd.DataFrame([{
        "archid": a.archid, "measured_ms": whole, "parts_ms": s, "line_ms": line.apply(s, {}),
        "predicted_ms": fitted.apply(s, operator_counts(a)), "nano_estimate_ms": nano.predict(a),
    } for a, s, whole in zip(archs, sums, wholes[len(calibration):])])
    frame["error"] = frame.predicted_ms / frame.measured_ms - 1
    frame["line_error"] = frame.line_ms / frame.measured_ms - 1
    return table, frame


def summary_row(runtime: str, frame: pd.DataFrame, predicted: str, error: str, label: str) -> dict:
    """Within +-10 %, Kendall's tau and the median error of one prediction column."""
    return {"runtime": runtime, "prediction": label, "archs": len(frame),
            "within_10pct": f"{(frame[error].abs() <= 0.10).mean():.0%}",
            "kendall_tau": round(frame[predicted].corr(frame.measured_ms, method="kendall"), 3),
            "median_abs_error": f"{frame[error].abs().median():.1%}"}


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2-cifar")
    parser.add_argument("--runtime", choices=(*RUNTIMES, "all"), default="onnxruntime",
                        help="the runtime to validate in, or all of them one after the other")
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every measurement")
    parser.add_argument("--calibration-archs", type=int, default=40,
                        help="random archs the table is calibrated on (besides the presets)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.machine()} {platform.processor()}, torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}, {args.threads} thread(s), batch 1")
    runtimes = RUNTIMES if args.runtime == "all" else (args.runtime,)
    summary = []
    for runtime in runtimes:
        table, frame = validate(args.space, runtime, args.archs, args.seed, args.repeats, args.threads,
                                args.calibration_archs)
        c = table.calibration
        terms = ", ".join(f"{k} {v * 1e3:+.0f} us" for k, v in c.terms.items())
        print(f"\n## {runtime}: table of {len(table.entries)} entries; calibration: whole = {c.scale:.3f} x "
              f"sum(parts) {c.offset:+.3f} ms, per layer: {terms}")
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        summary.append(summary_row(runtime, frame, "predicted_ms", "error", "per-operator terms"))
        summary.append(summary_row(runtime, frame, "line_ms", "line_error", "a line on the sums"))
        summary[-2]["nano_estimate_tau"] = round(frame.nano_estimate_ms.corr(frame.measured_ms, method="kendall"), 3)
    print(f"\n{args.space} (goal: within +-10 % >= 95 %, tau >= 0.95):")
    print(pd.DataFrame(summary).to_string(index=False))


if __name__ == "__main__":
    main()
