"""The operators' ONNX export forms: the same function as torch, in few nodes, for any batch.

Each operator is exported (in eval mode, with trained-looking parameters) at
MobileNetV2's shapes and the seed's, run in onnxruntime and compared with
the torch reference; the graph's node count is bounded; a graph exported at
batch 2 gives the same numbers as torch at batch 2.
"""
import numpy as np
import onnxruntime
import pytest
import torch

from fusionnas.evaluators.onnx_export import node_count, onnx_error, to_onnx
from fusionnas.layers import create_fusion

# (in, out, map side): MobileNetV2's expansions, projections and head, and odd sizes.
SHAPES = [(16, 16, 4), (96, 24, 8), (24, 144, 8), (160, 960, 4), (576, 96, 4), (320, 1280, 2), (5, 7, 3),
          (1024, 1024, 2)]
NODES = {"wht": 13, "bft": 9}  # largest graph allowed (Pad/Slice included)


def trained(kind: str, c_in: int, c_out: int) -> torch.nn.Module:
    torch.manual_seed(c_in * 7 + c_out)
    layer = create_fusion(kind, c_in, c_out)
    with torch.no_grad():
        for p in layer.parameters():  # not the initial values, whose structure could hide an error
            p.add_(0.1 * torch.randn_like(p))
    return layer.eval()


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
    ops = [node.op_type for node in __import__("onnx").load_from_string(graph).graph.node]
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
