"""The operators' ONNX export forms: the same function as torch, in few nodes, for any batch.

Each operator is exported (in eval mode, with trained-looking parameters) at
MobileNetV2's shapes and the seed's, run in onnxruntime and compared with
the torch reference; the graph's node count is bounded; a graph exported at
batch 2 gives the same numbers as torch at batch 2; every registered
operator exported with a dynamic batch runs batch 1 and 4 in every graph
runtime (onnxruntime, OpenVINO) like torch.
"""
import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from _onnx import run_graph
from _runtimes import GRAPH_RUNTIMES
from fusionnas.evaluators.onnx_export import CHECKED_BATCHES, input_batch, node_count, onnx_error, to_onnx
from fusionnas.layers import create_depthwise, create_fusion, list_depthwise, list_fusions
from fusionnas.spaces.blocks import FusionBN


# (in, out, map side): MobileNetV2's expansions, projections and head, and odd sizes.
SHAPES = [(16, 16, 4), (96, 24, 8), (24, 144, 8), (160, 960, 4), (576, 96, 4), (320, 1280, 2), (5, 7, 3),
          (1024, 1024, 2)]
NODES = {"wht": 13, "bft": 9}  # largest graph allowed (Pad/Slice included)


def perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in eval mode with trained-looking parameters (not the initial values, whose structure
    could hide an error); a DCT's thresholds keep bands of different sizes, so its DCT path runs."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for m in module.modules():
            if hasattr(m, "set_kept_fraction"):
                m.threshold.uniform_(0.1, 0.6)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return module.eval()


def trained(kind: str, c_in: int, c_out: int) -> torch.nn.Module:
    torch.manual_seed(c_in * 7 + c_out)
    return perturbed(create_fusion(kind, c_in, c_out))


@pytest.mark.parametrize("kind", sorted(NODES))
@pytest.mark.parametrize("c_in, c_out, side", SHAPES)
def test_export_form_matches_torch_in_few_nodes(kind, c_in, c_out, side):
    layer = trained(kind, c_in, c_out)
    graph = to_onnx(layer, (c_in, side, side))
    error, bound = onnx_error(graph, layer, (c_in, side, side))
    assert error <= bound, (error, bound)
    assert node_count(graph) <= NODES[kind]


@pytest.mark.parametrize("kind", sorted(NODES))
def test_export_form_exported_at_batch_2_runs_batch_2(kind):
    layer = trained(kind, 96, 24)
    graph = to_onnx(layer, (96, 4, 4), batch_size=2)
    x = torch.randn(2, 96, 4, 4)
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = layer(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, rtol=1e-4, atol=1e-4)


def assert_runs_every_batch_like_torch(module: torch.nn.Module, shape: tuple[int, int, int], runtime: str) -> bytes:
    """Export ``module`` with a dynamic batch; at each checked batch ``runtime`` must match torch."""
    graph = to_onnx(module, shape, dynamic_batch=True)
    assert input_batch(graph) is None
    for batch in CHECKED_BATCHES:
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            expected = module(x).numpy()
        np.testing.assert_allclose(run_graph(graph, runtime, x.numpy()), expected, rtol=1e-4, atol=1e-4,
                                   err_msg=f"batch {batch} in {runtime}")
    return graph


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
@pytest.mark.parametrize("kind", list_fusions())
@pytest.mark.parametrize("c_in, c_out, side", [(24, 40, 5), (96, 24, 4)])
def test_every_fusion_with_its_batch_norm_runs_any_batch_in_each_runtime(runtime, kind, c_in, c_out, side):
    torch.manual_seed(c_in + c_out)
    block = perturbed(FusionBN(kind, c_in, c_out))
    graph = assert_runs_every_batch_like_torch(block, (c_in, side, side), runtime)
    ops = [node.op_type for node in onnx.load_from_string(graph).graph.node]
    assert "BatchNormalization" not in ops  # folded into the operator, the DCT's too
    if kind == "dct":
        assert "MatMul" in ops  # its DCT path, not the dense conv it falls back to


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
@pytest.mark.parametrize("kind", list_depthwise())
@pytest.mark.parametrize("stride", [1, 2])
def test_every_depthwise_operator_runs_any_batch_in_each_runtime(runtime, kind, stride):
    torch.manual_seed(stride)
    assert_runs_every_batch_like_torch(perturbed(create_depthwise(kind, 8, 3, stride)), (8, 6, 6), runtime)


@pytest.mark.parametrize("kind", sorted(NODES))
@pytest.mark.parametrize("c_in, c_out, activation", [(96, 24, False), (24, 144, True), (160, 960, True),
                                                      (5, 7, False)])
def test_a_following_batch_norm_is_folded_into_the_operator(kind, c_in, c_out, activation):
    from fusionnas.spaces.blocks import FusionBN

    torch.manual_seed(c_in + c_out)
    block = FusionBN(kind, c_in, c_out, activation=activation)
    bn = block[1]
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    block.eval()
    graph = to_onnx(block, (c_in, 4, 4))
    error, bound = onnx_error(graph, block, (c_in, 4, 4))
    assert error <= bound, (error, bound)
    ops = [node.op_type for node in onnx.load_from_string(graph).graph.node]
    assert "BatchNormalization" not in ops
    assert len(ops) <= NODES[kind] + activation


@pytest.mark.parametrize("channels, side, stride, block", [(32, 8, 1, 4), (144, 7, 2, 4), (24, 5, 1, 8),
                                                            (16, 9, 2, 8), (3, 4, 1, 4)])
@pytest.mark.parametrize("shared", [False, True])
def test_tile_wht_exports_as_one_gemm_each_way(channels, side, stride, block, shared):
    """HadamardDepthwise (and the seed's 2D WHT layer): channels folded into the batch, a strided conv,
    thresholding, a 1x1 conv and DepthToSpace."""
    from fusionnas.layers.wht import WHT2d

    torch.manual_seed(channels + side)
    layer = WHT2d(channels, block, stride=stride, shared=shared)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    layer.eval()
    graph = to_onnx(layer, (channels, side, side), batch_size=2)
    error, bound = onnx_error(graph, layer, (channels, side, side))
    assert error <= bound, (error, bound)
    padded = side % block != 0
    assert node_count(graph) <= 13 + (stride == 2) + 3 * padded  # Pad and a Slice per side only where needed
