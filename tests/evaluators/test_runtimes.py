"""Latency in a named runtime, on the very ONNX graph that `fusionnas export` writes."""
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from _onnx import run_graph
from _runtimes import GRAPH_RUNTIMES, runtime_params
from fusionnas.errors import UserError
from fusionnas.evaluators.onnx_export import input_batch, node_count, onnx_error, to_onnx
from fusionnas.evaluators.runtimes import (get_runtime, measure_in_runtime, measure_side_by_side,
                                           onnxruntime_session, openvino_model, prepare, time_session)
from fusionnas.spaces import get_space



def small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


def test_the_exported_graph_is_valid_onnx_and_runs_like_torch():
    model = small()
    graph = to_onnx(model, (3, 8, 8))
    onnx.checker.check_model(onnx.load_from_string(graph))
    error, bound = onnx_error(graph, model, (3, 8, 8))
    assert error <= bound < 1e-3
    assert node_count(to_onnx(nn.Conv2d(4, 4, 1), (4, 2, 2))) == 1
    assert model.training  # the caller's mode is restored


def test_a_preset_runs_in_onnxruntime_like_torch():
    space = get_space("mobilenetv2-cifar")
    model = space.build(space.preset("all-bft"), num_classes=10)
    graph = to_onnx(model, space.input_shape)
    error, bound = onnx_error(graph, model, space.input_shape)
    assert error <= bound


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("runtime", runtime_params())
def test_latency_in_each_runtime(runtime, batch_size):
    ms = measure_in_runtime(small(), (3, 8, 8), runtime, threads=1, warmup=1, repeats=3, batch_size=batch_size)
    assert 0 < ms < 1000
    assert get_runtime(runtime).version()[0].isdigit()


@pytest.mark.parametrize("runtime", runtime_params())
def test_a_runner_runs_its_batch(runtime):
    out = prepare(small(), (3, 8, 8), runtime, batch_size=4)()  # a tensor, or the graph's outputs
    assert tuple((out if isinstance(out, torch.Tensor) else out[0]).shape) == (4, 4)


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_a_dynamic_batch_preset_runs_batch_4_like_torch(runtime):
    space = get_space("mobilenetv2-cifar")
    model = space.build(space.preset("all-bft"), num_classes=10).eval()
    graph = to_onnx(model, space.input_shape, dynamic_batch=True)
    x = torch.randn(4, *space.input_shape)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(run_graph(graph, runtime, x.numpy()), expected, rtol=1e-4, atol=1e-4)
    assert measure_side_by_side({"m": model}, space.input_shape, runtime, rounds=1, repeats=1, batch_size=4,
                                graphs={"m": graph})["m"] > 0


def test_a_dynamic_batch_graph_is_checked_at_several_batches():
    class BatchBaked(nn.Module):  # the batch read as a Python int: a constant in the graph
        def forward(self, x):
            return x * int(x.shape[0])

    graph = to_onnx(BatchBaked(), (2, 3, 3), dynamic_batch=True)
    assert input_batch(graph) is None and input_batch(to_onnx(BatchBaked(), (2, 3, 3), batch_size=3)) == 3
    error, bound = onnx_error(graph, BatchBaked(), (2, 3, 3))  # right at batch 1, wrong at batch 4
    assert error > bound


def test_openvino_runs_on_the_cpu_only_and_its_graph_at_its_batch():
    with pytest.raises(UserError, match="runtime openvino runs on the cpu only, got device 'cuda'; use device cpu"):
        measure_in_runtime(small(), (3, 8, 8), "openvino", "cuda")
    with pytest.raises(UserError, match="exported at batch 1, asked to run batch 4; export it at batch 4 or"):
        openvino_model(to_onnx(small(), (3, 8, 8)), batch_size=4)


def test_a_session_has_fixed_threads_and_times_a_batch():
    session = onnxruntime_session(to_onnx(small(), (3, 8, 8)), "cpu", threads=1)
    assert 0 < time_session(session, (3, 8, 8), warmup=0, repeats=2) < 1000


def test_an_unknown_runtime_is_a_user_error():
    with pytest.raises(UserError, match="unknown runtime 'tvm'; known: torch, onnxruntime, openvino"):
        measure_in_runtime(small(), (3, 8, 8), "tvm")
