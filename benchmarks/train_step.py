"""Training-step time of whole networks with the depthwise conv on channels-last input, or not.

Run: ``python -m benchmarks.train_step [--random 8] [--threads 1]``. For every preset and
some random ``mobilenetv2-cifar`` architectures, one SGD step on a batch of 32 digits-sized
images at 16x16 (the quickstart's proxy), with ``CHANNELS_LAST_DEPTHWISE_TRAINING`` on and
off, the two timed side by side in one process; "x" > 1 means channels-last is faster.
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


def _step(arch: Arch, channels_last: bool, batch: int, resolution: int):
    space = get_space("mobilenetv2-cifar")
    torch.manual_seed(0)
    model = space.build(arch).train()
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        depthwise_conv.CHANNELS_LAST_DEPTHWISE_TRAINING = channels_last
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
    print("| architecture | NCHW depthwise | channels-last depthwise | x |\n|---|---|---|---|")
    ratios = []
    try:
        for name, arch in archs:
            ms = time_side_by_side({"nchw": _step(arch, False, 32, 16), "last": _step(arch, True, 32, 16)},
                                   rounds=args.rounds, warmup=2)
            ratios.append(ms["nchw"] / ms["last"])
            print(f"| {name} | {ms['nchw']:.0f} ms | {ms['last']:.0f} ms | {ratios[-1]:.2f} |", flush=True)
    finally:
        depthwise_conv.CHANNELS_LAST_DEPTHWISE_TRAINING = True
    geomean = math.exp(statistics.fmean(math.log(r) for r in ratios))
    print(f"geometric mean {geomean:.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} networks")


if __name__ == "__main__":
    main()
