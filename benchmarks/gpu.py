"""The GPU checks, in one run of a few minutes: CUDA latency and proxy-training throughput.

Run on a machine with a CUDA GPU: ``python -m benchmarks.gpu [--rounds 20]``.
For both spaces, batch 1 and 32: torch eager, and the same model replayed
from a captured CUDA graph (what a deployment without Python overhead
sees), each synchronised, median over interleaved rounds; "x" is the speed
relative to the all-conv baseline in the same mode; then every preset
exported as ``fusionnas export`` writes it and timed whole in onnxruntime's
CUDA provider (when ``onnxruntime-gpu`` is installed). Then proxy training of
the baseline and every preset of the CIFAR space on CUDA with mixed
precision (the proxy's default there), with and without channels-last
convolutions: images per second and trials per hour at the quickstart's
budget. Then the weight-sharing supernet of the CIFAR space: its training
throughput (fair single-path steps, images per second, the time of a study's
600 steps) and the seconds to score one architecture by inherited weights.
Then the CUDA tests (``pytest -k cuda``). Without CUDA it says so and exits 1.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from fusionnas.evaluators import get_dataset, train_proxy
from fusionnas.evaluators.proxy import ProxyBudget
from fusionnas.evaluators.runtimes import median_ms, prepare
from fusionnas.evaluators.supernet import SuperNet, score, train_supernet
from fusionnas.search import load_study_config
from fusionnas.spaces import get_space, random_archs


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


def exported_cuda_table(space_name: str, batch: int, rounds: int) -> list[dict] | None:
    """One row per preset: the exported ONNX graph in onnxruntime's CUDA provider at ``batch``, ms and
    speed relative to the baseline (interleaved rounds, each the median of 5 runs); None without
    the provider (``pip install onnxruntime-gpu``)."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return None
    space = get_space(space_name)
    names = ["baseline", *(n for n in space.presets() if n != "baseline")]
    runs = {n: prepare(space.build(space.preset(n)), space.input_shape, "onnxruntime", "cuda", batch_size=batch)
            for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(rounds):
        for name, run in runs.items():
            samples[name].append(median_ms(run, warmup=5 if round_ == 0 else 1, repeats=5))
    ms = {name: statistics.median(values) for name, values in samples.items()}
    return [{"arch": n, "ms": ms[n], "x": ms["baseline"] / ms[n]} for n in names]


def _channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Channels-last weights for the convolutions only (some transforms hold 5-d parameters)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    return model


def training_table(steps: int = 60) -> list[dict]:
    """Proxy training throughput per preset, AMP on, plain and channels-last: images/s, trials/hour."""
    space = get_space("mobilenetv2-cifar")
    quickstart = load_study_config("studies/quickstart.toml").budget
    data = get_dataset("synthetic", seed=0, num_samples=8192, image_size=32)
    budget = ProxyBudget(steps=steps, batch_size=128, device="cuda")
    trial_images = (quickstart.steps or 100) * (quickstart.batch_size or 128)
    rows = []
    for name in space.presets():
        row = {"arch": name}
        for layout in ("plain", "channels-last"):
            model = space.build(space.preset(name), num_classes=data.num_classes)
            if layout == "channels-last":
                model = _channels_last(model.cuda())
            train_proxy(model, data, ProxyBudget(steps=5, batch_size=128, device="cuda"))  # warm-up
            result = train_proxy(model, data, budget)
            per_second = steps * budget.batch_size / result.train_seconds
            row[f"{layout} img/s"] = per_second
            row[f"{layout} trials/h"] = 3600 / (trial_images / per_second)
        rows.append(row)
    return rows


def supernet_row(steps: int = 100, archs: int = 5, device: str = "cuda") -> dict:
    """Supernet training throughput (after a warm-up of 10 steps) and the seconds to score an architecture."""
    space = get_space("mobilenetv2-cifar")
    data = get_dataset("synthetic", seed=0, num_samples=8192, image_size=32)
    supernet = SuperNet(space, num_classes=data.num_classes)
    train_supernet(supernet, data, ProxyBudget(steps=10, batch_size=128, device=device))  # warm-up
    budget = ProxyBudget(steps=steps, batch_size=128, device=device)
    trained = train_supernet(supernet, data, budget)
    per_step = trained["seconds"] / steps
    start = time.perf_counter()
    for arch in random_archs(space, archs, seed=0):
        score(supernet, arch, data, budget)
    return {"step ms": 1000 * per_step, "img/s": budget.batch_size / per_step, "600 steps s": 600 * per_step,
            "score s": (time.perf_counter() - start) / archs}


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
            exported = exported_cuda_table(space, batch, args.rounds)
            if exported is None:
                print("(exported graphs: onnxruntime has no CUDA provider here; the CUDA graph column is the "
                      "deployed form)")
                continue
            print("\n| arch | exported ONNX, onnxruntime CUDA ms | x |\n|---|---|---|")
            for row in exported:
                print(f"| {row['arch']} | {row['ms']:.3f} | {row['x']:.2f} |", flush=True)
    print("\n## proxy training, mobilenetv2-cifar, batch 128, AMP; trials/h at the quickstart's budget")
    print("| arch | img/s | trials/h | channels-last img/s | channels-last trials/h |\n|---|---|---|---|---|")
    for row in training_table():
        print(f"| {row['arch']} | {row['plain img/s']:.0f} | {row['plain trials/h']:.0f} | "
              f"{row['channels-last img/s']:.0f} | {row['channels-last trials/h']:.0f} |", flush=True)
    print("\n## supernet, mobilenetv2-cifar, batch 128 (float32): training, and scoring by inherited weights")
    row = supernet_row()
    print("| step ms | img/s | 600 steps | score an architecture |\n|---|---|---|---|")
    print(f"| {row['step ms']:.1f} | {row['img/s']:.0f} | {row['600 steps s']:.0f} s | {row['score s']:.2f} s |",
          flush=True)
    if args.no_tests:
        return 0
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-k", "cuda", "tests"])


if __name__ == "__main__":
    sys.exit(main())
