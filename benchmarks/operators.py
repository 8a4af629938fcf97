"""Forward time of the transform operators against the 1x1 convolution they replace, in torch and onnxruntime.

Run: ``make bench`` (or ``python -m benchmarks.operators [--quick]``). Every row
is timed side by side with its conv in one process (torch eager and the
operator's exported ONNX graph in onnxruntime, interleaved), on 2 threads, in
eval mode without autograd; "x" > 1 means faster than the conv in the same
runtime. "FLOPs" is the operator's fvcore count over the conv's.
"""
from __future__ import annotations

import argparse
import platform

import torch

from benchmarks._timing import time_side_by_side
from fusionnas.evaluators import count_flops
from fusionnas.evaluators.onnx_export import node_count, to_onnx
from fusionnas.evaluators.runtimes import onnxruntime_session
from fusionnas.layers import create_depthwise, create_fusion, fwht

# (name, input shape (N, C, H, W), output channels)
SHAPES = [
    ("seed 10x1024x32x32", (10, 1024, 32, 32), 1024),
    ("MBv2 96->24 @56", (1, 96, 56, 56), 24),
    ("MBv2 576->96 @14", (1, 576, 14, 14), 96),
    ("MBv2 320->1280 @7", (1, 320, 7, 7), 1280),
    ("MBv2 160->960 @4", (1, 160, 4, 4), 960),
]
DCT_KEPT = (1.0, 0.5, 0.25)


def _dct_with_kept_fraction(c_in: int, c_out: int, fraction: float) -> torch.nn.Module:
    layer = create_fusion("dct", c_in, c_out)
    layer.set_kept_fraction(fraction)
    return layer


def operator_table(shapes=SHAPES, rounds: int = 15, threads: int = 2) -> list[dict]:
    """One row per (shape, operator): median ms in torch and onnxruntime, speed-ups over the 1x1 conv."""
    rows = []
    for label, shape, c_out in shapes:
        c_in = shape[1]
        x = torch.randn(shape)
        layers = {
            "conv 1x1": create_fusion("conv", c_in, c_out),
            "WHTPointwise": create_fusion("wht", c_in, c_out),
            "ButterflyPointwise": create_fusion("bft", c_in, c_out),
        }
        for fraction in DCT_KEPT:
            layers[f"DCTPointwise kept {fraction:.2f}"] = _dct_with_kept_fraction(c_in, c_out, fraction)
        candidates, info = {}, {}
        for name, layer in layers.items():
            layer.eval()
            graph = to_onnx(layer, shape[1:], batch_size=shape[0])
            session = onnxruntime_session(graph, "cpu", threads)
            feed = {"input": x.numpy()}
            info[name] = (node_count(graph), count_flops(layer, shape))
            candidates[(name, "torch")] = lambda m=layer: m(x)
            candidates[(name, "onnxruntime")] = lambda s=session, f=feed: s.run(None, f)
        with torch.inference_mode():
            times = time_side_by_side(candidates, rounds=rounds)
        conv = {rt: times[("conv 1x1", rt)] for rt in ("torch", "onnxruntime")}
        for name in layers:
            nodes, flops = info[name]
            rows.append({"shape": label, "op": name, "ms": times[(name, "torch")],
                         "vs_conv": conv["torch"] / times[(name, "torch")], "ort_ms": times[(name, "onnxruntime")],
                         "ort_vs_conv": conv["onnxruntime"] / times[(name, "onnxruntime")], "nodes": nodes,
                         "flops_vs_conv": flops / info["conv 1x1"][1]})
    return rows


def fwht_table(rounds: int = 15) -> list[dict]:
    """fwht over channels of the seed tensor against a plain copy (the memory floor)."""
    x = torch.randn(10, 1024, 32, 32)
    with torch.inference_mode():
        times = time_side_by_side(
            {"copy (clone)": lambda: x.clone(), "fwht dim=1": lambda: fwht(x, dim=1)}, rounds=rounds
        )
    return [{"op": k, "ms": v, "vs_copy": v / times["copy (clone)"]} for k, v in times.items()]


# (name, input shape at the quickstart's proxy: batch 32 at 16x16 input, output channels)
TRAINING_SHAPES = [
    ("proxy 144->24 @16", (32, 144, 16, 16), 24),
    ("proxy 96->96 @8", (32, 96, 8, 8), 96),
    ("proxy 320->1280 @2", (32, 320, 2, 2), 1280),
]


def training_table(shapes=TRAINING_SHAPES, rounds: int = 15) -> list[dict]:
    """One row per (shape, operator): median ms of a forward and backward pass as proxy training runs
    it, against the 1x1 conv; the channel fusions at ``shapes``, the depthwise operators at their inputs."""
    rows = []
    for label, shape, c_out in shapes:
        c_in = shape[1]
        x = torch.randn(shape, requires_grad=True)
        wht = create_fusion("wht", c_in, c_out)
        layers = {"conv 1x1": create_fusion("conv", c_in, c_out), "WHTPointwise": wht,
                  "WHTPointwise reference form": wht._forward_reference,  # what the FLOP counter traces
                  "DCTPointwise": create_fusion("dct", c_in, c_out), "ButterflyPointwise": create_fusion("bft", c_in, c_out),
                  "depthwise conv 3x3": create_depthwise("conv", c_in, 3, 1),
                  "HadamardDepthwise 3x3": create_depthwise("hadamard", c_in, 3, 1)}
        candidates = {name: lambda f=layer: f(x).sum().backward() for name, layer in layers.items()}
        times = time_side_by_side(candidates, rounds=rounds)
        rows += [{"shape": label, "op": name, "ms": ms, "vs_conv": times["conv 1x1"] / ms} for name, ms in times.items()]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for make quickstart)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rounds = 5 if args.quick else 15
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {rounds} interleaved rounds")
    print(f"{'shape':<20} {'operator':<26} {'FLOPs':>6} {'nodes':>5} {'torch ms':>9} {'x':>6} {'ORT ms':>8} {'x':>6}")
    for row in operator_table(rounds=rounds, threads=args.threads):
        print(f"{row['shape']:<20} {row['op']:<26} {row['flops_vs_conv']:6.2f} {row['nodes']:>5} {row['ms']:9.3f} "
              f"{row['vs_conv']:6.2f} {row['ort_ms']:8.3f} {row['ort_vs_conv']:6.2f}")
    print()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the quickstart's two workers trains
    print("# training: forward + backward, 1 thread; 'x' > 1 means faster than the 1x1 conv")
    print(f"{'shape':<20} {'operator':<28} {'ms':>9} {'x':>6}")
    for row in training_table(rounds=rounds):
        print(f"{row['shape']:<20} {row['op']:<28} {row['ms']:9.3f} {row['vs_conv']:6.2f}")
    torch.set_num_threads(threads)
    print()
    print(f"{'fwht at 10x1024x32x32':<47} {'ms':>9} {'x the copy time':>19}")
    for row in fwht_table(rounds=rounds):
        print(f"{row['op']:<47} {row['ms']:9.2f} {row['vs_copy']:19.2f}")


if __name__ == "__main__":
    main()
