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
from _records import frozen_trial

from fusionnas.evaluators.onnx_export import input_batch
from fusionnas.evaluators.runtimes import get_runtime
from fusionnas.results import export_trial, objectives_of, select_trial, trials_frame
from fusionnas.results.export import DEPLOYED_RUNTIMES
from fusionnas.spaces import Arch, get_space
from fusionnas.trial_record import Evaluation, Latency, TrialRecord

SPACE = get_space("mobilenetv2-cifar")
DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def study_with(rows) -> optuna.Study:
    """(accuracy, flops, latency_ms@jetson-nano, feasible, weights) per COMPLETE trial, then one FAIL."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms@jetson-nano"])
    for accuracy, flops, latency, feasible, weights in rows:
        arch = SPACE.baseline() if flops > 8e7 else SPACE.preset("all-bft")
        record = TrialRecord(arch=arch.to_json(), archid=arch.archid, num_classes=10,
                             costs={"flops": flops, "params": 1e6, "memory_mb": 1.0},
                             latencies={"jetson-nano": Latency(latency)}, feasible=feasible,
                             evaluation=Evaluation(val_accuracy=accuracy, weights=weights or None))
        study.add_trial(frozen_trial(record, values=[accuracy, latency], params={"x": 0.5}, distributions=DIST))
    study.add_trial(frozen_trial(TrialRecord(failure_reason="out_of_memory: x"), state=optuna.trial.TrialState.FAIL,
                                 params={"x": 0.1}, distributions=DIST))
    return study


ROWS = [(0.95, 9e7, 14.0, True, None), (0.90, 5e7, 12.0, True, None), (0.92, 5e7, 11.0, True, None),
        (0.99, 9e7, 30.0, False, None)]


def test_select_by_number_and_by_rule() -> None:
    study = study_with(ROWS)
    frame, objectives = trials_frame(study), objectives_of(study)
    assert select_trial(frame, objectives, trial=1)["number"] == 1
    assert select_trial(frame, objectives, best="accuracy")["number"] == 0  # 3 is infeasible
    assert select_trial(frame, objectives, best="accuracy", limits={"latency": 12})["number"] == 2
    # `export --max-latency 12` without --latency-device: the study's one device
    assert select_trial(frame, objectives, best="accuracy", limits={"latency_ms": 12})["number"] == 2
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
    data = {"name": "digits", "classes": [str(d) for d in range(10)], "mean": [0.1, 0.2, 0.3],
            "std": [0.4, 0.5, 0.6], "image_shape": [3, 32, 32]}
    result = export_trial(frame, objectives, select_trial(frame, objectives, trial=0), out, weights_dir=weights,
                          study_name="s", budget={"kind": "proxy", "steps": 2, "batch_size": 8, "resolution": 8,
                                                  "data_fraction": 0.1, "rungs": 1}, data=data)
    assert sorted(result.files) == ["MODEL_CARD.md", "arch.json", "model.onnx", "weights.pt"]
    assert Arch.from_json((out / "arch.json").read_text()) == arch and result.onnx_max_error < 1e-4
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    for batch in (1, 4):  # a dynamic batch by default
        x = torch.randn(batch, *SPACE.input_shape)
        with torch.no_grad():
            expected = model.eval()(x).numpy()
        (logits,) = session.run(None, {"input": x.numpy()})
        assert logits.shape == (batch, 10)
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
    card = (out / "MODEL_CARD.md").read_text()
    # What a user of the model must know: data, classes, normalisation, resolutions, the accuracy's budget.
    assert "- Dataset: digits; 10 classes, output i is class i: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9." in card
    assert ("RGB pixel values scaled to 0-1, then per channel (x - mean) / std with mean (0.1000, 0.2000, 0.3000) "
            "and std (0.4000, 0.5000, 0.6000)") in card
    assert ("`model.onnx` takes 3x32x32 images (the space's input); its accuracy was measured on images resized "
            "bilinearly to 8x8") in card
    assert ("validation accuracy after proxy training for 2 optimiser steps (batch 8, peak lr 0.05, 10% of the "
            "training split, at 8x8)") in card and "--dataset digits --epochs E --init weights.pt" in card
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
