"""The GPU checks, in one run of a few minutes: CUDA latency of the baseline and every preset.

Run on a machine with a CUDA GPU: ``python -m benchmarks.gpu [--rounds 20]``.
For both spaces, batch 1 and 32: torch eager, and the same model replayed
from a captured CUDA graph (what a deployment without Python overhead
sees), each synchronised, median over interleaved rounds; "x" is the speed
relative to the all-conv baseline in the same mode. Then the CUDA tests
(``pytest -k cuda``). Without CUDA it says so and exits 1.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from fusionnas.spaces import get_space


def _graphed(model: torch.nn.Module, x: torch.Tensor):
    """A callable that replays ``model(x)`` from a captured CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream, as capture requires
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)
    return graph.replay


def _time(fn, repeats: int) -> float:
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


@torch.inference_mode()
def cuda_table(space_name: str, batch: int, rounds: int) -> list[dict]:
    """One row per preset (the baseline first): eager and CUDA-graph ms at ``batch``."""
    space = get_space(space_name)
    names = ["baseline", *(n for n in space.presets() if n != "baseline")]
    x = torch.randn(batch, *space.input_shape, device="cuda")
    runs = {}
    for name in names:
        model = space.build(space.preset(name)).eval().cuda()
        runs[name] = {"eager": lambda m=model: m(x), "graph": _graphed(model, x)}
    samples = {(n, mode): [] for n in names for mode in ("eager", "graph")}
    for _ in range(rounds):
        for (name, mode) in samples:
            samples[(name, mode)].append(_time(runs[name][mode], 5))
    ms = {key: statistics.median(values) for key, values in samples.items()}
    return [{"arch": n, "eager ms": ms[(n, "eager")], "eager x": ms[("baseline", "eager")] / ms[(n, "eager")],
             "graph ms": ms[(n, "graph")], "graph x": ms[("baseline", "graph")] / ms[(n, "graph")]}
            for n in names]


def main(argv: list[str] | None = None) -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: this benchmark needs one", file=sys.stderr)
        return 1
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    for space in ("mobilenetv2-cifar", "mobilenetv2-imagenet"):
        for batch in (1, 32):
            print(f"\n## {space}, batch {batch}")
            print("| arch | eager ms | eager x | CUDA graph ms | graph x |\n|---|---|---|---|---|")
            for row in cuda_table(space, batch, args.rounds):
                print(f"| {row['arch']} | {row['eager ms']:.3f} | {row['eager x']:.2f} | {row['graph ms']:.3f} | "
                      f"{row['graph x']:.2f} |", flush=True)
    if args.no_tests:
        return 0
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-k", "cuda", "tests"])


if __name__ == "__main__":
    sys.exit(main())
