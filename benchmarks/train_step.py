"""Training-step time of whole networks: plain PyTorch against fusionnas' depthwise-conv training.

Run: ``python -m benchmarks.train_step [--random 8] [--threads 1]``. For every preset and
some random ``mobilenetv2-cifar`` architectures, one SGD step on a batch of 32 digits-sized
images at 16x16 (the quickstart's proxy) in three ways, timed side by side in one process:
plain (NCHW depthwise convs, PyTorch's own weight gradient), channels-last depthwise convs
before a conv projection (``CHANNELS_LAST_DEPTHWISE_TRAINING``), and that plus the depthwise
weight gradient chosen per shape (``FAST_DEPTHWISE_WEIGHT_GRADIENT``, the default). "x" is
plain's time over the variant's: > 1 means faster than plain.
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics

import torch
from torch import nn

import fusionnas.layers.depthwise_conv as depthwise_conv
from benchmarks._timing import time_side_by_side
from fusionnas.spaces import Arch, get_space, random_archs


def _step(arch: Arch, channels_last: bool, fast_gradient: bool, batch: int, resolution: int):
    space = get_space("mobilenetv2-cifar")
    torch.manual_seed(0)
    model = space.build(arch).train()
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        depthwise_conv.CHANNELS_LAST_DEPTHWISE_TRAINING = channels_last
        depthwise_conv.FAST_DEPTHWISE_WEIGHT_GRADIENT = fast_gradient
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=8, help="random architectures besides the presets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the quickstart's workers use 1)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = get_space("mobilenetv2-cifar")
    archs = [(name, space.preset(name)) for name in space.presets()]
    archs += [(f"random {i}", arch) for i, arch in enumerate(random_archs(space, args.random, seed=1))]
    print(f"{platform.processor() or platform.machine()}, {args.threads} thread(s), batch 32 at 16x16, "
          f"median of {args.rounds} interleaved steps")
    print("| architecture | plain | channels-last depthwise | x | + weight gradient per shape | x |\n"
          "|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {"last": [], "fast": []}
    try:
        for name, arch in archs:
            ms = time_side_by_side({"plain": _step(arch, False, False, 32, 16),
                                    "last": _step(arch, True, False, 32, 16),
                                    "fast": _step(arch, True, True, 32, 16)}, rounds=args.rounds, warmup=2)
            for key in ratios:
                ratios[key].append(ms["plain"] / ms[key])
            print(f"| {name} | {ms['plain']:.0f} ms | {ms['last']:.0f} ms | {ratios['last'][-1]:.2f} | "
                  f"{ms['fast']:.0f} ms | {ratios['fast'][-1]:.2f} |", flush=True)
    finally:
        depthwise_conv.CHANNELS_LAST_DEPTHWISE_TRAINING = True
        depthwise_conv.FAST_DEPTHWISE_WEIGHT_GRADIENT = True
    for key, label in (("last", "channels-last depthwise"), ("fast", "+ weight gradient per shape")):
        geomean = math.exp(statistics.fmean(math.log(r) for r in ratios[key]))
        print(f"{label}: geometric mean {geomean:.2f}x plain's speed, range {min(ratios[key]):.2f}-"
              f"{max(ratios[key]):.2f}x over {len(ratios[key])} networks")


if __name__ == "__main__":
    main()
