"""The native ONNX form: each transform one ``fusionnas`` node, run in OpenVINO by the fusionnas extension.

For every case the graph holds the transforms as single fusionnas nodes (batch
norm and ReLU6 folded in); the nodes' definitions (``onnx_nodes.REFERENCES``, NumPy)
applied to the graph's initializers give torch's reference forms; and OpenVINO
with the extension matches torch within 1e-4 at batch 1 and 4 of a dynamic batch,
both torch as it runs (native kernels where built) and its reference forms.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from fusionnas.errors import UserError
from fusionnas.evaluators.onnx_export import CHECKED_BATCHES, input_batch, onnx_error, to_onnx
from fusionnas.evaluators.runtimes import onnxruntime_session, openvino_model
from fusionnas.kernels import onnx_nodes, reference_forms
from fusionnas.kernels.onnx_nodes import DOMAIN, OPENVINO_EXTENSION, REFERENCES
from fusionnas.layers import ButterflyPointwise, HadamardDepthwise, WHT2d, WHTPointwise
from fusionnas.spaces import get_space
from fusionnas.spaces.blocks import FusionBN

needs_extension = pytest.mark.skipif(
    not OPENVINO_EXTENSION.exists(),
    reason=f"the OpenVINO extension {OPENVINO_EXTENSION.name} is not built (python -m fusionnas.kernels.build)")


def perturbed(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``module`` in eval mode with trained-looking parameters and batch-norm statistics."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return module.eval()


# name -> (module factory, input (C, H, W), the one fusionnas node it exports to)
LAYERS = {
    "wht-expansion": (lambda: WHTPointwise(24, 144), (24, 5, 5), "WHTPointwise"),
    "wht-reduction": (lambda: WHTPointwise(144, 24), (144, 3, 3), "WHTPointwise"),
    "wht-square": (lambda: WHTPointwise(64, 64), (64, 4, 4), "WHTPointwise"),
    "wht-odd": (lambda: WHTPointwise(5, 7), (5, 3, 2), "WHTPointwise"),
    "wht-bn-relu6": (lambda: FusionBN("wht", 96, 576), (96, 4, 4), "WHTPointwise"),
    "wht-bn": (lambda: FusionBN("wht", 576, 96, activation=False), (576, 2, 2), "WHTPointwise"),
    "bft-1-stage": (lambda: ButterflyPointwise(16, 24), (16, 3, 3), "Butterfly"),
    "bft-2-stages": (lambda: ButterflyPointwise(96, 96), (96, 3, 3), "Butterfly"),
    "bft-3-stages": (lambda: ButterflyPointwise(16, 16, radix=(2, 4, 2)), (16, 3, 2), "Butterfly"),
    "bft-expansion": (lambda: ButterflyPointwise(64, 200), (64, 3, 3), "Butterfly"),
    "bft-reduction": (lambda: ButterflyPointwise(200, 64), (200, 3, 3), "Butterfly"),
    "bft-bias": (lambda: ButterflyPointwise(64, 96, bias=True), (64, 2, 3), "Butterfly"),
    "bft-bn-relu6": (lambda: FusionBN("bft", 96, 576), (96, 4, 4), "Butterfly"),
    "bft-bn": (lambda: FusionBN("bft", 576, 96, activation=False), (576, 2, 2), "Butterfly"),
    "hadamard-s1": (lambda: HadamardDepthwise(16), (16, 8, 8), "WHT2d"),
    "hadamard-s1-odd": (lambda: HadamardDepthwise(16), (16, 7, 5), "WHT2d"),
    "hadamard-s2": (lambda: HadamardDepthwise(24, stride=2), (24, 8, 8), "WHT2d"),
    "hadamard-s2-odd": (lambda: HadamardDepthwise(24, stride=2), (24, 7, 5), "WHT2d"),
    "hadamard-s2-small": (lambda: HadamardDepthwise(8, stride=2, block=8), (8, 3, 3), "WHT2d"),
    "wht2d-shared": (lambda: WHT2d(8, (2, 4)), (8, 5, 6), "WHT2d"),
}


def expected_outputs(module: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """torch's output as it runs (native kernels where built) and in its reference forms."""
    with torch.no_grad():
        outputs = [module(x).numpy()]
        with reference_forms():
            outputs.append(module(x).numpy())
    return outputs


def fusionnas_nodes(graph: bytes) -> list[onnx.NodeProto]:
    return [node for node in onnx.load_from_string(graph).graph.node if node.domain == DOMAIN]


def node_definition(graph: bytes, x: np.ndarray) -> np.ndarray:
    """The graph's one fusionnas node computed by its NumPy definition from the graph's initializers."""
    model = onnx.load_from_string(graph)
    (node,) = model.graph.node
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return REFERENCES[node.op_type](x, *(values[name] for name in node.input[1:]), **attributes)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_transform_exports_as_one_node_whose_definition_matches_torch(name: str) -> None:
    make, shape, op = LAYERS[name]
    module = perturbed(make())
    graph = to_onnx(module, shape, dynamic_batch=True, form="native")
    model = onnx.load_from_string(graph)
    assert [(n.domain, n.op_type) for n in model.graph.node] == [(DOMAIN, op)]  # batch norm, ReLU6 folded in
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 17), (DOMAIN, 1)}
    assert input_batch(graph) is None
    assert sorted(model.graph.node[0].input[1:]) == sorted(i.name for i in model.graph.initializer)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    reference = expected_outputs(module, x)[1]
    np.testing.assert_allclose(node_definition(graph, x.numpy()), reference, rtol=1e-4, atol=1e-4)


@needs_extension
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_openvino_runs_the_node_like_torch(name: str) -> None:
    make, shape, _ = LAYERS[name]
    module = perturbed(make())
    compiled = openvino_model(to_onnx(module, shape, dynamic_batch=True, form="native"))
    generator = torch.Generator().manual_seed(2)
    for batch in CHECKED_BATCHES:
        x = torch.randn(batch, *shape, generator=generator)
        got = compiled(x.numpy())[0]
        for expected, path in zip(expected_outputs(module, x), ("as it runs", "reference forms")):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4,
                                       err_msg=f"{name} at batch {batch}, torch {path}")


@needs_extension
def test_a_graph_fixed_at_batch_2_runs_in_openvino() -> None:
    module = perturbed(FusionBN("wht", 24, 144))
    graph = to_onnx(module, (24, 4, 4), batch_size=2, form="native")
    assert input_batch(graph) == 2
    x = torch.randn(2, 24, 4, 4)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(openvino_model(graph, batch_size=2)(x.numpy())[0], expected, rtol=1e-4, atol=1e-4)


@needs_extension
@pytest.mark.parametrize("preset, nodes", [
    ("all-wht-hadamard", {"WHTPointwise": 34, "WHT2d": 17}),  # 16 expansions, 17 projections, the head
    ("all-bft", {"Butterfly": 34}),
])
def test_a_whole_mobilenetv2_runs_its_transforms_as_single_nodes_in_openvino(preset: str, nodes) -> None:
    space = get_space("mobilenetv2-cifar")
    torch.manual_seed(0)
    model = perturbed(space.build(space.preset(preset)))
    shape = tuple(space.input_shape)
    graph = to_onnx(model, shape, dynamic_batch=True, form="native")
    assert collections.Counter(n.op_type for n in fusionnas_nodes(graph)) == nodes
    ops = {n.op_type for n in onnx.load_from_string(graph).graph.node}
    assert not ops & {"MatMul", "Tanh", "Relu", "BatchNormalization", "Pad", "Slice"}  # no transform left over
    error, bound = onnx_error(graph, model, shape)  # in OpenVINO, at batch 1 and 4
    assert error <= bound, (error, bound)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))
    got = openvino_model(graph)(x.numpy())[0]
    for expected in expected_outputs(model, x):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_the_standard_form_is_the_default_and_has_no_fusionnas_nodes() -> None:
    module = perturbed(FusionBN("wht", 24, 144))
    graph = to_onnx(module, (24, 4, 4))
    assert graph == to_onnx(module, (24, 4, 4), form="standard") and not fusionnas_nodes(graph)
    assert DOMAIN not in {o.domain for o in onnx.load_from_string(graph).opset_import}


def test_onnxruntime_refuses_the_native_form_in_one_line() -> None:
    graph = to_onnx(perturbed(HadamardDepthwise(8)), (8, 4, 4), form="native")
    with pytest.raises(UserError, match="fusionnas-domain nodes .* export the standard form") as error:
        onnxruntime_session(graph)
    assert "\n" not in str(error.value)


def test_unknown_form_and_missing_extension_are_one_line_errors(monkeypatch, tmp_path) -> None:
    with pytest.raises(UserError, match="unknown ONNX form 'fast'; known: standard, native"):
        to_onnx(WHTPointwise(4, 4), (4, 2, 2), form="fast")
    monkeypatch.setattr(onnx_nodes, "OPENVINO_EXTENSION", tmp_path / "libfusionnas_openvino.so")
    with pytest.raises(UserError, match=r"is not built: run `python -m fusionnas.kernels.build`") as error:
        onnx_nodes.openvino_extension()
    assert "\n" not in str(error.value)


def test_configurations_without_a_node_keep_the_standard_form() -> None:
    # The kernel takes no 1-pixel tiles at stride 2: that WHT2d traces its standard form, which runs anywhere.
    module = perturbed(WHT2d(8, 1, stride=2))
    graph = to_onnx(module, (8, 5, 5), form="native")
    assert not fusionnas_nodes(graph)
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(onnxruntime_session(graph).run(None, {"input": x.numpy()})[0], expected,
                               rtol=1e-4, atol=1e-4)
