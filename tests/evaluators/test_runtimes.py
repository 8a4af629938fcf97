"""Latency in a named runtime, on the very ONNX graph that `fusionnas export` writes."""
import onnx
import pytest
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.onnx_export import node_count, onnx_error, to_onnx
from fusionnas.evaluators.runtimes import RUNTIMES, measure_in_runtime, onnxruntime_session, time_session
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


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_latency_in_each_runtime(runtime):
    ms = measure_in_runtime(small(), (3, 8, 8), runtime, threads=1, warmup=1, repeats=3)
    assert 0 < ms < 1000


def test_a_session_has_fixed_threads_and_times_a_batch():
    session = onnxruntime_session(to_onnx(small(), (3, 8, 8)), "cpu", threads=1)
    assert 0 < time_session(session, (3, 8, 8), warmup=0, repeats=2) < 1000


def test_an_unknown_runtime_is_a_user_error():
    with pytest.raises(UserError, match="unknown runtime 'tvm'; known: torch, onnxruntime"):
        measure_in_runtime(small(), (3, 8, 8), "tvm")


def test_a_kept_export_is_timed_again_without_exporting(monkeypatch):
    import fusionnas.evaluators.runtimes as runtimes

    exports = []
    monkeypatch.setattr(runtimes, "to_onnx", lambda model, shape, **o: exports.append(shape) or to_onnx(model, shape, **o))
    kept: dict[str, bytes] = {}
    for _ in range(3):
        assert measure_in_runtime(small(), (3, 8, 8), "onnxruntime", repeats=2, exported=kept, key="small") > 0
    assert len(exports) == 1 and set(kept) == {"small"}
    measure_in_runtime(small(), (3, 8, 8), "onnxruntime", repeats=2)  # nothing kept without a key
    assert len(exports) == 2 and set(kept) == {"small"}
