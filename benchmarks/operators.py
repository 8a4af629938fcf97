"""Forward time of the transform operators against the 1x1 convolution they replace, in torch, onnxruntime and OpenVINO.

Run: ``make bench`` (or ``python -m benchmarks.operators [--quick] [--threads N]``).
Every row is timed side by side with its conv in one process, all candidates
interleaved round after round, in eval mode without autograd; "x" > 1 means
faster than the conv in the same runtime. Columns: torch eager with the native
kernels (``fusionnas.kernels``) and with the reference forms; the exported
standard-operator graph in onnxruntime and in OpenVINO; the native graph (one
``fusionnas`` node per transform) in OpenVINO with the fusionnas extension, the
conv's own graph beside it. "FLOPs" is the operator's fvcore count over the conv's.
"""
from __future__ import annotations

import argparse
import platform

import torch

from benchmarks._timing import time_side_by_side
from fusionnas.evaluators import count_flops
from fusionnas import kernels
from fusionnas.evaluators.onnx_export import node_count, to_onnx
from fusionnas.evaluators.runtimes import onnxruntime_session, openvino_model
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
# (name, input shape, stride): MobileNetV2's depthwise layers
DEPTHWISE_SHAPES = [
    ("MBv2 144 @56", (1, 144, 56, 56), 1),
    ("MBv2 192 @28 s2", (1, 192, 28, 28), 2),
    ("MBv2 384 @14", (1, 384, 14, 14), 1),
    ("MBv2 960 @7", (1, 960, 7, 7), 1),
]


def _dct_with_kept_fraction(c_in: int, c_out: int, fraction: float) -> torch.nn.Module:
    layer = create_fusion("dct", c_in, c_out)
    layer.set_kept_fraction(fraction)
    return layer


def _in_reference_forms(fn):
    def run():
        with kernels.reference_forms():
            return fn()
    return run


def _graph_runners(layer: torch.nn.Module, x: torch.Tensor, threads: int) -> tuple[dict, int]:
    """Runners of the layer's exported graphs (ORT, OV standard, OV native) and the standard graph's nodes."""
    shape = tuple(x.shape)
    standard = to_onnx(layer, shape[1:], batch_size=shape[0])
    feed = x.numpy()
    session = onnxruntime_session(standard, "cpu", threads)
    runners = {"onnxruntime": lambda: session.run(None, {"input": feed}),
               "openvino": (lambda m=openvino_model(standard, "cpu", threads): m(feed))}
    if kernels.openvino_extension_available():
        native = openvino_model(to_onnx(layer, shape[1:], batch_size=shape[0], form="native"), "cpu", threads)
        runners["openvino native"] = lambda: native(feed)
    return runners, node_count(standard)


RUNTIME_COLUMNS = ("torch", "torch reference", "onnxruntime", "openvino", "openvino native")


def operator_table(shapes=SHAPES, rounds: int = 15, threads: int = 2) -> list[dict]:
    """One row per (shape, operator): median ms per runtime column and the speed-up over the 1x1 conv in it.

    The conv has no native form: its standard graph in OpenVINO is the native column's reference too.
    """
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
        rows += _compare(label, layers, x, rounds, threads, reference="conv 1x1")
    return rows


def depthwise_table(shapes=DEPTHWISE_SHAPES, rounds: int = 15, threads: int = 2) -> list[dict]:
    """The Hadamard depthwise operator against the 3x3 depthwise conv (with its batch norm and ReLU6)."""
    rows = []
    for label, shape, stride in shapes:
        layers = {"depthwise conv 3x3": create_depthwise("conv", shape[1], 3, stride),
                  "HadamardDepthwise 3x3": create_depthwise("hadamard", shape[1], 3, stride)}
        rows += _compare(label, layers, torch.randn(shape), rounds, threads, reference="depthwise conv 3x3")
    return rows


def _compare(label: str, layers: dict, x: torch.Tensor, rounds: int, threads: int, reference: str) -> list[dict]:
    candidates, info = {}, {}
    for name, layer in layers.items():
        layer.eval()
        runners, nodes = _graph_runners(layer, x, threads)
        info[name] = (nodes, count_flops(layer, tuple(x.shape)))
        candidates[(name, "torch")] = lambda m=layer: m(x)
        candidates[(name, "torch reference")] = _in_reference_forms(lambda m=layer: m(x))
        candidates.update({(name, runtime): run for runtime, run in runners.items()})
    if (reference, "openvino native") not in candidates and any(k[1] == "openvino native" for k in candidates):
        candidates[(reference, "openvino native")] = candidates[(reference, "openvino")]
    with torch.inference_mode():
        times = time_side_by_side(candidates, rounds=rounds)
    rows = []
    for name in layers:
        nodes, flops = info[name]
        row = {"shape": label, "op": name, "nodes": nodes, "flops_vs_conv": flops / info[reference][1]}
        for runtime in RUNTIME_COLUMNS:
            if (name, runtime) in times:
                row[runtime] = times[(name, runtime)]
                row[f"{runtime} x"] = times[(reference, runtime)] / times[(name, runtime)]
        rows.append(row)
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
    it, with the native kernels and with the reference forms, against the 1x1 conv; the channel fusions
    at ``shapes``, the depthwise operators at their inputs."""
    rows = []
    for label, shape, c_out in shapes:
        c_in = shape[1]
        x = torch.randn(shape, requires_grad=True)
        layers = {"conv 1x1": create_fusion("conv", c_in, c_out), "WHTPointwise": create_fusion("wht", c_in, c_out),
                  "DCTPointwise": create_fusion("dct", c_in, c_out), "ButterflyPointwise": create_fusion("bft", c_in, c_out),
                  "depthwise conv 3x3": create_depthwise("conv", c_in, 3, 1),
                  "HadamardDepthwise 3x3": create_depthwise("hadamard", c_in, 3, 1)}
        candidates = {}
        for name, layer in layers.items():
            step = lambda f=layer: f(x).sum().backward()  # noqa: E731
            candidates[(name, "native")] = step
            candidates[(name, "reference")] = _in_reference_forms(step)
        times = time_side_by_side(candidates, rounds=rounds)
        conv = {form: times[("conv 1x1", form)] for form in ("native", "reference")}
        rows += [{"shape": label, "op": name, "ms": times[(name, "native")], "vs_conv": conv["native"] / times[(name, "native")],
                  "reference_ms": times[(name, "reference")],
                  "reference_vs_conv": conv["reference"] / times[(name, "reference")]} for name in layers]
    return rows


def _print_table(rows: list[dict]) -> None:
    columns = [c for c in RUNTIME_COLUMNS if any(c in row for row in rows)]
    print(f"{'shape':<20} {'operator':<26} {'FLOPs':>6} {'nodes':>5}" + "".join(f" {c[:16]:>16} {'x':>5}" for c in columns))
    for row in rows:
        cells = "".join(f" {row[c]:16.3f} {row[c + ' x']:5.2f}" if c in row else f" {'-':>16} {'':>5}" for c in columns)
        print(f"{row['shape']:<20} {row['op']:<26} {row['flops_vs_conv']:6.2f} {row['nodes']:>5}{cells}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for make quickstart)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rounds = 5 if args.quick else 15
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {kernels.describe()}, median of {rounds} interleaved rounds; ms, x = the conv's time over this")
    _print_table(operator_table(rounds=rounds, threads=args.threads))
    print()
    _print_table(depthwise_table(rounds=rounds, threads=args.threads))
    print()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the quickstart's two workers trains
    print("# training: forward + backward, 1 thread, native kernels and reference forms; x = the conv's time over this")
    print(f"{'shape':<20} {'operator':<28} {'native ms':>10} {'x':>6} {'reference ms':>13} {'x':>6}")
    for row in training_table(rounds=rounds):
        print(f"{row['shape']:<20} {row['op']:<28} {row['ms']:10.3f} {row['vs_conv']:6.2f} {row['reference_ms']:13.3f} "
              f"{row['reference_vs_conv']:6.2f}")
    torch.set_num_threads(threads)
    print()
    print(f"{'fwht at 10x1024x32x32':<47} {'ms':>9} {'x the copy time':>19}")
    for row in fwht_table(rounds=rounds):
        print(f"{row['op']:<47} {row['ms']:9.2f} {row['vs_copy']:19.2f}")


if __name__ == "__main__":
    main()
