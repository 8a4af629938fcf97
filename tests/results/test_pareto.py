"""The trials frame, the Pareto frontier (infeasible trials never on it), tables and plots."""
from __future__ import annotations

import numpy as np
import optuna
import pytest

from fusionnas.results import compact_ops, format_frontier, objectives_of, pareto_mask, plot_frontier, trials_frame
from fusionnas.spaces import get_space

SPACE = get_space("mobilenetv2-cifar")
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


def test_pareto_mask() -> None:
    values = [[0.9, 10], [0.8, 5], [0.7, 7], [0.9, 10], [0.95, 20]]
    assert pareto_mask(values, [True, False]).tolist() == [True, True, False, True, True]
    assert pareto_mask(values, [False, False]).tolist() == [False, True, True, False, False]
    assert pareto_mask(np.zeros((0, 2)), [True, False]).tolist() == []


def synthetic_study() -> optuna.Study:
    """accuracy (max) vs flops (min): trials 0-2 feasible, 3 infeasible but 'better', 4 failed."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "flops"])
    base, hybrid = SPACE.baseline(), SPACE.preset("wht-last-third")
    rows = [(base, 0.90, 9e7, True), (hybrid, 0.85, 6e7, True), (hybrid, 0.80, 7e7, True), (base, None, 1e6, False)]
    for arch, accuracy, flops, feasible in rows:
        attrs = {"arch": arch.to_json(), "archid": arch.archid, "flops": flops, "params": 1e6, "memory_mb": 1.0,
                 "feasible": feasible}
        if accuracy is not None:
            attrs["val_accuracy"] = accuracy
        trial = optuna.trial.create_trial(values=[accuracy or 0.0, flops], params={"x": 0.5}, distributions=DIST,
                                          user_attrs=attrs,
                                          system_attrs={"constraints:flops": 0.0 if feasible else 1.0})
        study.add_trial(trial)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"x": 0.1},
                                              distributions=DIST, user_attrs={"failure_reason": "diverged: nan"}))
    return study


def test_trials_frame_and_frontier() -> None:
    study = synthetic_study()
    frame = trials_frame(study)
    assert objectives_of(study) == {"accuracy": "maximize", "flops": "minimize"}
    assert list(frame["number"]) == [0, 1, 2, 3, 4]
    assert list(frame["is_pareto"]) == [True, True, False, False, False]
    assert np.isnan(frame.loc[3, "accuracy"])  # never trained: no accuracy, not a zero
    assert frame.loc[4, "failure_reason"] == "diverged: nan" and frame.loc[4, "state"] == "FAIL"
    assert {"arch", "archid", "flops", "params", "feasible", "ops"} <= set(frame.columns)
    text = format_frontier(frame, objectives_of(study))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["trial", "archid", "accuracy", "FLOPs"]
    assert lines[2].split()[0] == "0" and lines[3].split()[0] == "1"  # most accurate first
    assert len([line for line in lines if line[:5].strip().isdigit()]) == 2
    assert "wcw wcw | w" in text  # the WHT hybrid: WHT expand and project in the last blocks, WHT head


def test_compact_ops() -> None:
    ops = compact_ops(SPACE.preset("all-wht-hadamard").to_json())
    assert ops.startswith("-hw whw ") and ops.endswith(" | w") and len(ops.split()) == 17 + 2


@pytest.mark.parametrize("name", ["frontier.png", "frontier.html"])
def test_plot_writes_png_or_html(tmp_path, name) -> None:
    study = synthetic_study()
    path = plot_frontier(trials_frame(study), objectives_of(study), tmp_path / name,
                         baseline_archid=SPACE.baseline().archid, title="synthetic")
    data = path.read_bytes()
    if name.endswith(".png"):
        assert data.startswith(b"\x89PNG")
    else:
        assert b"data:image/png;base64," in data and b"Frontier" in data


def test_plot_rejects_unknown_formats(tmp_path) -> None:
    study = synthetic_study()
    with pytest.raises(ValueError, match="name the file .png or .html"):
        plot_frontier(trials_frame(study), objectives_of(study), tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="does not exist"):
        plot_frontier(trials_frame(study), objectives_of(study), tmp_path / "no" / "x.png")
