"""Choosing a trial (by number or rule) and exporting it: arch.json, weights, ONNX, model card."""
from __future__ import annotations

import json
import re

import numpy as np
import onnxruntime
import optuna
import pandas as pd
import pytest
import torch

from fusionnas.evaluators.onnx_export import input_batch
from fusionnas.evaluators.runtimes import get_runtime
from fusionnas.results import export_trial, objectives_of, select_trial, trials_frame
from fusionnas.results.export import DEPLOYED_RUNTIMES
from fusionnas.spaces import Arch, get_space

SPACE = get_space("mobilenetv2-cifar")
DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def study_with(rows) -> optuna.Study:
    """(accuracy, flops, latency_ms@jetson-nano, feasible, weights) per COMPLETE trial, then one FAIL."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms@jetson-nano"])
    for accuracy, flops, latency, feasible, weights in rows:
        arch = SPACE.baseline() if flops > 8e7 else SPACE.preset("all-bft")
        attrs = {"arch": arch.to_json(), "archid": arch.archid, "flops": flops, "params": 1e6, "memory_mb": 1.0,
                 "latency_ms@jetson-nano": latency, "feasible": feasible, "val_accuracy": accuracy,
                 "num_classes": 10}
        if weights:
            attrs["weights"] = weights
        study.add_trial(optuna.trial.create_trial(values=[accuracy, latency], params={"x": 0.5},
                                                  distributions=DIST, user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"x": 0.1},
                                              distributions=DIST, user_attrs={"failure_reason": "out_of_memory: x"}))
    return study


ROWS = [(0.95, 9e7, 14.0, True, None), (0.90, 5e7, 12.0, True, None), (0.92, 5e7, 11.0, True, None),
        (0.99, 9e7, 30.0, False, None)]


def test_select_by_number_and_by_rule() -> None:
    study = study_with(ROWS)
    frame, objectives = trials_frame(study), objectives_of(study)
    assert select_trial(frame, objectives, trial=1)["number"] == 1
    assert select_trial(frame, objectives, best="accuracy")["number"] == 0  # 3 is infeasible
    assert select_trial(frame, objectives, best="accuracy", limits={"latency": 12})["number"] == 2
    assert select_trial(frame, objectives, best="latency")["number"] == 2
    assert select_trial(frame, objectives, best="flops")["number"] == 2  # a tie broken by the frontier
    with pytest.raises(ValueError, match="no trial 9 .*trials 0-4"):
        select_trial(frame, objectives, trial=9)
    with pytest.raises(ValueError, match="trial 4 is FAIL .*out_of_memory"):
        select_trial(frame, objectives, trial=4)
    with pytest.raises(ValueError, match="latency_ms@jetson-nano <= 5 .*smallest is 11"):
        select_trial(frame, objectives, best="accuracy", limits={"latency": 5})
    with pytest.raises(ValueError, match="no metric 'speed'"):
        select_trial(frame, objectives, best="speed")


def test_export_writes_checked_onnx_weights_and_card(tmp_path) -> None:
    arch = SPACE.preset("all-bft")
    model = SPACE.build(arch, num_classes=10)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(model.state_dict(), weights / "w.pt")
    study = study_with([(0.9, 5e7, 9.0, True, "w.pt"), (0.95, 9e7, 14.0, True, None)])
    frame, objectives = trials_frame(study), objectives_of(study)
    out = tmp_path / "export"
    result = export_trial(frame, objectives, select_trial(frame, objectives, trial=0), out, weights_dir=weights,
                          study_name="s", budget={"steps": 2})
    assert sorted(result.files) == ["MODEL_CARD.md", "arch.json", "model.onnx", "weights.pt"]
    assert Arch.from_json((out / "arch.json").read_text()) == arch and result.onnx_max_error < 1e-4
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, *SPACE.input_shape)  # a dynamic batch by default
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=1e-4, rtol=1e-4)
    card = (out / "MODEL_CARD.md").read_text()
    assert "On the Pareto frontier" in card and "| accuracy (objective) | 0.9 |" in card
    assert "b16 e6 k3 bft/dw/bft" in card and "dynamic batch, checked at batch 1 and 4" in card
    # Latency as deployed: the exported model beside the baseline, in each graph runtime, as a ratio.
    assert result.batch_size is None and list(result.latencies) == list(DEPLOYED_RUNTIMES)
    assert result.latency_ms == result.latencies["onnxruntime"]["model"] > 0 and result.baseline_latency_ms > 0
    assert "## Latency as deployed" in card and "`model.onnx` at batch 1, 1 thread" in card
    for runtime, ms in result.latencies.items():
        name = f"{runtime} {get_runtime(runtime).version()}"
        assert re.search(rf"\| {re.escape(name)} \(.*\) \| {ms['model']:.3f} \| {ms['baseline']:.3f} \| "
                         rf"{ms['baseline'] / ms['model']:.2f}x \|", card), card

    with pytest.raises(ValueError, match="exists and is not empty; .* use `force`"):
        export_trial(frame, objectives, select_trial(frame, objectives, trial=1), out, weights_dir=weights)
    assert Arch.from_json((out / "arch.json").read_text()) == arch  # untouched
    again = export_trial(frame, objectives, select_trial(frame, objectives, trial=1), out, weights_dir=weights,
                         force=True)
    assert not again.has_weights and json.loads((out / "arch.json").read_text())["head_fusion"] == "conv"
    assert "freshly initialised" in (out / "MODEL_CARD.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # no staging left


def test_export_at_a_fixed_batch(tmp_path) -> None:
    study = study_with(ROWS[:1])
    frame, objectives = trials_frame(study), objectives_of(study)
    result = export_trial(frame, objectives, select_trial(frame, objectives, trial=0), tmp_path / "m",
                          weights_dir=None, batch_size=2)
    assert result.batch_size == 2 and input_batch((tmp_path / "m" / "model.onnx").read_bytes()) == 2
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "(opset 17, batch 2;" in card and "`model.onnx` at batch 2" in card
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer, got 0"):
        export_trial(frame, objectives, select_trial(frame, objectives, trial=0), tmp_path / "n",
                     weights_dir=None, batch_size=0)


def test_measure_trials_times_whole_networks_beside_the_baseline() -> None:
    from fusionnas.results import latency_notes, measure_trials

    study = study_with(ROWS[:2])
    frame = trials_frame(study)
    rows = frame[frame["state"] == "COMPLETE"]
    table = measure_trials(rows, {"jetson-nano": "onnxruntime"}, rounds=2, repeats=2)
    assert list(table["trial"]) == ["0", "1", "baseline"]
    assert list(table["latency_ms@jetson-nano (study)"].iloc[:2]) == [14.0, 12.0]
    measured = table["measured_ms@cpu/onnxruntime"]  # a Jetson latency is measured on this cpu
    assert (measured > 0).all()
    assert table["vs_baseline@cpu/onnxruntime"].iloc[-1] == 1.0
    assert table["archid"].iloc[0] == table["archid"].iloc[-1] == SPACE.baseline().archid
    assert latency_notes(frame) == ["latency_ms@jetson-nano: unknown source, torch; `fusionnas pareto --measure` "
                                    "measures whole networks"]


def test_frame_without_trials_selects_nothing() -> None:
    study = optuna.create_study(directions=["maximize"])
    frame = trials_frame(study)
    assert isinstance(frame, pd.DataFrame) and frame.empty
    with pytest.raises(ValueError, match="no trial 0"):
        select_trial(frame, objectives_of(study), trial=0)
