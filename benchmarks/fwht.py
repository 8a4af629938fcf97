"""fwht per vector against FFHT and against a copy, over the last dim and over the channels of NCHW tensors.

Run: ``python -m benchmarks.fwht [--threads 1 2] [--quick]``. FFHT (the AVX
FWHT library, built with -march=native) is the ``bench`` extra, which ``make
bench`` installs; without it its columns read n/a.

For each n, a 16 MB float32 tensor (2^22 / n vectors) is transformed whole by
fusionnas ``fwht(x, dim=-1)``. FFHT runs in place, once over the whole buffer
in one call (``ffht.fht_(a, threads)``, OpenMP over the vectors) and once a
vector per Python call (up to 2048 vectors spread over the buffer, one thread,
the call overhead included). "copy" is ``x.clone()``, which reads and writes
the same bytes as an out-of-place transform. All are medians of interleaved
rounds, in ns per vector; the ratios are fusionnas over the other (< 1:
fusionnas faster). Issue 31's goals: fusionnas / FFHT <= 1 at n = 128..4096,
and over NCHW channels fwht / copy <= 1.5.
"""
from __future__ import annotations

import argparse
import platform
from importlib import metadata

import numpy as np
import torch

from benchmarks._timing import time_side_by_side
from fusionnas.layers import fwht

try:
    import ffht
except ImportError:  # the optional `bench` extra
    ffht = None

SIZES = (128, 256, 512, 1024, 2048, 4096)
TENSOR_MB = 16
MAX_CALLS = 2048  # FFHT vectors timed one call each, per round
# (name, shape): the seed tensor, and what the WHT layer transforms at MobileNetV2's shapes
# (channels zero-padded to next_power_of_two(max(c_in, c_out))).
NCHW_SHAPES = [
    ("seed 10x1024x32x32", (10, 1024, 32, 32)),
    ("MBv2 96->24 @56", (1, 128, 56, 56)),
    ("MBv2 576->96 @14", (1, 1024, 14, 14)),
    ("MBv2 320->1280 @7", (1, 2048, 7, 7)),
    ("MBv2 160->960 @4", (1, 1024, 4, 4)),
]


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ffht_version() -> str:
    """The installed ffht-unofficial's version, or why FFHT is left out."""
    if ffht is None:
        return "FFHT not installed (make bench installs it)"
    try:
        return f"ffht-unofficial {metadata.version('ffht-unofficial')}"
    except metadata.PackageNotFoundError:
        return "ffht (version unknown)"


def last_dim_row(n: int, threads: int, rounds: int, megabytes: float = TENSOR_MB) -> dict:
    """ns per vector of fusionnas fwht, FFHT (one call for all, one call each) and a clone, at length n."""
    vectors = max(1, int(megabytes * 2**20) // (4 * n))
    x = torch.randn(vectors, n)
    candidates = {}
    calls = 0
    if ffht is not None:
        # A torch buffer: 64-byte aligned, as FFHT's docs ask. FFHT works in place and each
        # pass scales by up to n, so "reset" (first: candidates run in dict order) restores
        # the input every round and the values stay finite.
        buf = torch.empty_like(x).numpy()
        src = x.numpy()
        step = -(-vectors // MAX_CALLS)
        rows = [buf[i] for i in range(0, vectors, step)]
        calls = len(rows)
        check = src[:4].copy()
        ffht.fht_(check)
        np.testing.assert_allclose(check, fwht(x[:4]).numpy(), rtol=1e-4, atol=1e-4 * n**0.5)

        def per_call() -> None:
            f = ffht.fht_
            for row in rows:
                f(row)

        candidates["reset"] = lambda: np.copyto(buf, src)
        candidates["ffht batch"] = lambda: ffht.fht_(buf, threads)
        candidates["ffht call"] = per_call
    candidates["fusionnas"] = lambda: fwht(x, dim=-1)
    candidates["copy"] = lambda: x.clone()
    with torch.inference_mode():
        ms = time_side_by_side(candidates, rounds=rounds)
    ns = {k: v * 1e6 / vectors for k, v in ms.items()}
    if calls:
        ns["ffht call"] = ms["ffht call"] * 1e6 / calls
    return {"n": n, "vectors": vectors, **{k: ns.get(k) for k in ("fusionnas", "ffht call", "ffht batch", "copy")}}


def nchw_rows(rounds: int) -> list[dict]:
    """ms of fwht over the channels (dim 1) of each of NCHW_SHAPES against a clone of the tensor."""
    rows = []
    for label, shape in NCHW_SHAPES:
        x = torch.randn(shape)
        with torch.inference_mode():
            ms = time_side_by_side({"fwht": lambda: fwht(x, dim=1), "copy": lambda: x.clone()}, rounds=rounds)
        rows.append({"shape": label, "input": "x".join(map(str, shape)), "fwht": ms["fwht"], "copy": ms["copy"],
                     "vs_copy": ms["fwht"] / ms["copy"]})
    return rows


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f}" if a is not None and b is not None else f"{'n/a':>6}"


def _ns(v: float | None) -> str:
    return f"{v:10,.0f}" if v is not None else f"{'n/a':>10}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="vector lengths (powers of two)")
    parser.add_argument("--mb", type=float, default=TENSOR_MB, help="tensor size per length, in MB")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else 15
    torch.manual_seed(0)
    print(f"# {cpu_name()}, torch {torch.__version__}, {ffht_version()}, threads {args.threads}, "
          f"median of {rounds} interleaved rounds")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n# fwht(x, dim=-1) over a {args.mb:g} MB float32 tensor, {threads} thread(s): ns per vector; "
              f"FFHT call: one vector a Python call, 1 thread")
        print(f"{'n':>5} {'vectors':>8} {'fusionnas':>10} {'FFHT call':>10} {'FFHT batch':>10} {'copy':>10} "
              f"{'/FFHT call':>10} {'/FFHT batch':>11} {'/copy':>6}")
        for n in args.sizes:
            r = last_dim_row(n, threads, rounds, args.mb)
            print(f"{n:>5} {r['vectors']:>8} {_ns(r['fusionnas'])} {_ns(r['ffht call'])} {_ns(r['ffht batch'])} "
                  f"{_ns(r['copy'])} {_ratio(r['fusionnas'], r['ffht call']):>10} "
                  f"{_ratio(r['fusionnas'], r['ffht batch']):>11} {_ratio(r['fusionnas'], r['copy'])}")
        print(f"\n# fwht(x, dim=1) over NCHW channels, {threads} thread(s): ms; goal /copy <= 1.5")
        print(f"{'shape':<20} {'input':<18} {'fwht ms':>9} {'copy ms':>9} {'/copy':>6}")
        for row in nchw_rows(rounds):
            print(f"{row['shape']:<20} {row['input']:<18} {row['fwht']:9.3f} {row['copy']:9.3f} {row['vs_copy']:6.2f}")


if __name__ == "__main__":
    main()
