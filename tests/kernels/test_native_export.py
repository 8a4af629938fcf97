"""``fusionnas export --onnx-form``: model.onnx (standard), model.native.onnx (fusionnas nodes) or both,
each checked against torch (the native form in OpenVINO with the extension) and timed where it deploys."""
from __future__ import annotations

import math

import numpy as np
import onnxruntime
import optuna
import pytest
import torch
from _records import frozen_trial
from test_openvino_extension import needs_extension, perturbed

from fusionnas.cli import build_parser
from fusionnas.errors import UserError
from fusionnas.evaluators.runtimes import openvino_model
from fusionnas.kernels import onnx_nodes
from fusionnas.kernels.onnx_nodes import has_native_nodes
from fusionnas.results import export_trial, objectives_of, select_trial, trials_frame
from fusionnas.results import export as export_module
from fusionnas.results.export import DEPLOYED_RUNTIMES
from fusionnas.spaces import get_space
from fusionnas.trial_record import Evaluation, TrialRecord

SPACE = get_space("mobilenetv2-cifar")
ARCH = SPACE.preset("all-wht-hadamard")
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture
def quick_timing(monkeypatch) -> None:
    """Latencies timed in 1 round of 2 runs (what is timed matters here, not the figures)."""
    measure = export_module.measure_side_by_side
    monkeypatch.setattr(export_module, "measure_side_by_side",
                        lambda *args, **kwargs: measure(*args, **{**kwargs, "rounds": 1, "repeats": 2}))


@pytest.fixture
def trial(tmp_path):
    """(frame, objectives, row, weights folder, model) of a one-trial study with trained-looking weights."""
    model = perturbed(SPACE.build(ARCH, num_classes=10))
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(model.state_dict(), weights / "w.pt")
    study = optuna.create_study(directions=["maximize"])
    study.set_metric_names(["accuracy"])
    record = TrialRecord(arch=ARCH.to_json(), archid=ARCH.archid, num_classes=10,
                         costs={"flops": 1e7, "params": 1e5, "memory_mb": 1.0}, feasible=True,
                         evaluation=Evaluation(val_accuracy=0.5, weights="w.pt"))
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(frozen_trial(record, values=[0.5], params={"x": 0.5}, distributions=distributions))
    frame, objectives = trials_frame(study), objectives_of(study)
    return frame, objectives, select_trial(frame, objectives, trial=0), weights, model


@needs_extension
def test_both_forms_are_written_checked_and_each_timed_where_it_deploys(tmp_path, trial, quick_timing) -> None:
    frame, objectives, row, weights, model = trial
    out = tmp_path / "both"
    result = export_trial(frame, objectives, row, out, weights_dir=weights, onnx_form="both")
    assert sorted(result.files) == ["MODEL_CARD.md", "arch.json", "model.native.onnx", "model.onnx", "weights.pt"]
    assert set(result.onnx_errors) == {"model.onnx", "model.native.onnx"}
    assert max(result.onnx_errors.values()) == result.onnx_max_error < 1e-4
    native, standard = (out / "model.native.onnx").read_bytes(), (out / "model.onnx").read_bytes()
    assert has_native_nodes(native) and not has_native_nodes(standard)
    x = torch.randn(2, *SPACE.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(expected).max() > 0.1  # not a trivially small output
    session = onnxruntime.InferenceSession(standard, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(openvino_model(native)(x.numpy())[0], expected, rtol=1e-4, atol=1e-4)
    assert list(result.latencies) == list(DEPLOYED_RUNTIMES) and result.latency_ms > 0
    card = (out / "MODEL_CARD.md").read_text()
    assert "`model.onnx` (opset 17, dynamic batch, checked at batch 1 and 4; onnxruntime matches torch" in card
    assert "`model.native.onnx` (opset 17 and the fusionnas domain" in card and "OpenVINO matches torch" in card
    assert "(onnxruntime: `model.onnx`, openvino: `model.native.onnx`) at batch 1, 1 thread" in card


@needs_extension
def test_the_native_form_alone_is_timed_in_openvino_only(tmp_path, trial, quick_timing) -> None:
    frame, objectives, row, weights, _ = trial
    result = export_trial(frame, objectives, row, tmp_path / "native", weights_dir=weights, onnx_form="native",
                          batch_size=2)
    assert "model.onnx" not in result.files and "model.native.onnx" in result.files
    assert list(result.latencies) == ["openvino"] and math.isnan(result.latency_ms)
    assert "(openvino: `model.native.onnx`) at batch 2" in (tmp_path / "native" / "MODEL_CARD.md").read_text()


def test_an_unknown_form_or_a_missing_extension_is_a_one_line_error(tmp_path, trial, monkeypatch) -> None:
    frame, objectives, row, weights, _ = trial
    with pytest.raises(UserError, match="`onnx_form` must be one of standard, native or both, got 'fast'"):
        export_trial(frame, objectives, row, tmp_path / "a", weights_dir=weights, onnx_form="fast")
    monkeypatch.setattr(onnx_nodes, "OPENVINO_EXTENSION", tmp_path / "libfusionnas_openvino.so")
    with pytest.raises(UserError, match="libfusionnas_openvino.so.* is not built: run `python -m fusionnas.kernels"):
        export_trial(frame, objectives, row, tmp_path / "b", weights_dir=weights, onnx_form="both")
    assert not (tmp_path / "b").exists()


def test_the_command_line_takes_the_form() -> None:
    parse = build_parser().parse_args
    assert parse(["export", "s.toml", "--trial", "0", "--out", "d"]).onnx_form == "standard"
    assert parse(["export", "s.toml", "--trial", "0", "--out", "d", "--onnx-form", "both"]).onnx_form == "both"
