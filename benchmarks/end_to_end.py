"""Whole networks as deployed: the baseline and every preset in torch eager, onnxruntime, OpenVINO and OpenVINO native.

Run: ``python -m benchmarks.end_to_end [--space mobilenetv2-cifar] [--threads 1]``.
Per architecture: parameters, fvcore FLOPs, ONNX nodes, and the median
latency at batch 1 in each runtime, all candidates (every architecture in
every runtime) interleaved round after round in one process; "x" is the
speed relative to the all-conv baseline in the same runtime (> 1: faster).
The graph runtimes run the graph ``fusionnas export`` writes, each prepared
as :func:`fusionnas.evaluators.runtimes.prepare` does for a latency: the
standard form in onnxruntime and OpenVINO, the native form (one fusionnas
kernel per transform) in OpenVINO native; torch eager runs the native kernels
where they are built (the header says which).
"""
from __future__ import annotations

import argparse
import platform

import torch

from benchmarks._timing import time_side_by_side
from fusionnas import kernels
from fusionnas.evaluators import count_flops, count_params
from fusionnas.evaluators.onnx_export import node_count, to_onnx
from fusionnas.evaluators.runtimes import RUNTIMES, get_runtime, prepare
from fusionnas.spaces import get_space

LABELS = {"torch": "torch", "onnxruntime": "ORT", "openvino": "OV", "openvino-native": "OV-nat"}  # column headers


def end_to_end_table(space_name: str, threads: int, rounds: int) -> list[dict]:
    """One row per architecture (the baseline first): costs, and ms and speed vs the baseline per runtime."""
    space = get_space(space_name)
    names = ["baseline", *(name for name in space.presets() if name != "baseline")]
    shape = (1, *space.input_shape)
    rows, candidates = [], {}
    torch.set_num_threads(threads)
    for name in names:
        model = space.build(space.preset(name)).eval()
        graph = to_onnx(model, space.input_shape)
        rows.append({"arch": name, "params": count_params(model), "flops": count_flops(model, shape),
                     "nodes": node_count(graph)})
        for runtime in RUNTIMES:
            candidates[f"{name} {runtime}"] = prepare(model, space.input_shape, runtime, threads=threads,
                                                      graph=graph if runtime != "openvino-native" else None)
    times = time_side_by_side(candidates, rounds=rounds)
    for row in rows:
        for runtime in RUNTIMES:
            row[runtime] = times[f"{row['arch']} {runtime}"]
            row[f"{runtime} x"] = times[f"baseline {runtime}"] / row[runtime]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2-cifar")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    rows = end_to_end_table(args.space, args.threads, args.rounds)
    versions = ", ".join(f"{runtime} {get_runtime(runtime).version()}" for runtime in RUNTIMES)
    print(f"# {args.space}, batch 1, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
          f"{versions}, {kernels.describe()}, median of {args.rounds} interleaved rounds; x = speed relative to the baseline in the "
          f"same runtime")
    print(f"{'arch':<22} {'params':>10} {'MFLOPs':>8} {'nodes':>6}"
          + "".join(f" {LABELS[r] + ' ms':>9} {'x':>5}" for r in RUNTIMES))
    for r in rows:
        print(f"{r['arch']:<22} {r['params']:>10,} {r['flops'] / 1e6:>8.1f} {r['nodes']:>6}"
              + "".join(f" {r[runtime]:>9.2f} {r[runtime + ' x']:>5.2f}" for runtime in RUNTIMES))


if __name__ == "__main__":
    main()
