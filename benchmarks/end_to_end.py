"""Whole networks as deployed: the baseline and every preset in torch eager and in onnxruntime.

Run: ``python -m benchmarks.end_to_end [--space mobilenetv2-cifar] [--threads 1]``.
Per architecture: parameters, fvcore FLOPs, ONNX nodes, and the median
latency at batch 1 in each runtime, all candidates interleaved round after
round in one process; "x" is the speed relative to the all-conv baseline in
the same runtime (> 1: faster). The onnxruntime graph is the one
``fusionnas export`` writes, with onnxruntime's full graph optimisation.
"""
from __future__ import annotations

import argparse
import platform

import onnxruntime
import torch

from benchmarks._timing import time_side_by_side
from fusionnas.evaluators import count_flops, count_params
from fusionnas.evaluators.onnx_export import node_count, to_onnx
from fusionnas.evaluators.runtimes import onnxruntime_session
from fusionnas.spaces import get_space


def end_to_end_table(space_name: str, threads: int, rounds: int) -> list[dict]:
    """One row per architecture (the baseline first): costs and ms in torch and onnxruntime."""
    space = get_space(space_name)
    names = ["baseline", *(name for name in space.presets() if name != "baseline")]
    shape = (1, *space.input_shape)
    x = torch.randn(shape)
    feed = {"input": x.numpy()}
    rows, candidates = [], {}
    torch.set_num_threads(threads)
    for name in names:
        model = space.build(space.preset(name)).eval()
        graph = to_onnx(model, space.input_shape)
        session = onnxruntime_session(graph, "cpu", threads)
        rows.append({"arch": name, "params": count_params(model), "flops": count_flops(model, shape),
                     "nodes": node_count(graph)})
        candidates[f"{name} torch"] = lambda m=model: m(x)
        candidates[f"{name} onnxruntime"] = lambda s=session: s.run(None, feed)
    with torch.inference_mode():
        times = time_side_by_side(candidates, rounds=rounds)
    base = {runtime: times[f"baseline {runtime}"] for runtime in ("torch", "onnxruntime")}
    for row in rows:
        for runtime in ("torch", "onnxruntime"):
            ms = times[f"{row['arch']} {runtime}"]
            row[runtime] = ms
            row[f"{runtime} x"] = base[runtime] / ms
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv2-cifar")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    rows = end_to_end_table(args.space, args.threads, args.rounds)
    print(f"# {args.space}, batch 1, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, median of {args.rounds} "
          f"interleaved rounds; x = speed relative to the baseline in the same runtime")
    print(f"{'arch':<18} {'params':>10} {'MFLOPs':>8} {'nodes':>6} {'torch ms':>9} {'x':>5} "
          f"{'ORT ms':>8} {'x':>5}")
    for r in rows:
        print(f"{r['arch']:<18} {r['params']:>10,} {r['flops'] / 1e6:>8.1f} {r['nodes']:>6} {r['torch']:>9.2f} "
              f"{r['torch x']:>5.2f} {r['onnxruntime']:>8.2f} {r['onnxruntime x']:>5.2f}")


if __name__ == "__main__":
    main()
