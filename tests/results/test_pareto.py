"""The trials frame, the Pareto frontier (infeasible trials never on it), tables and plots."""
from __future__ import annotations

import numpy as np
import optuna
import pytest
from _records import frozen_trial

from fusionnas.results import compact_ops, format_frontier, objectives_of, pareto_mask, plot_frontier, trials_frame
from fusionnas.spaces import get_space
from fusionnas.trial_record import Evaluation, TrialRecord

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
        record = TrialRecord(arch=arch.to_json(), archid=arch.archid,
                             costs={"flops": flops, "params": 1e6, "memory_mb": 1.0}, feasible=feasible,
                             evaluation=Evaluation(val_accuracy=accuracy))
        trial = frozen_trial(record, values=[accuracy or 0.0, flops], params={"x": 0.5}, distributions=DIST,
                             system_attrs={"constraints:flops": 0.0 if feasible else 1.0})
        study.add_trial(trial)
    study.add_trial(frozen_trial(TrialRecord(failure_reason="diverged: nan"), state=optuna.trial.TrialState.FAIL,
                                 params={"x": 0.1}, distributions=DIST))
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


def rung_study() -> optuna.Study:
    """Two rungs: the baseline (0) and two hybrids (1, 2) at rung 0, then the baseline (3) and hybrid 1 (4)
    promoted to rung 1, where accuracies are higher; an infeasible trial (5) never trained."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "flops"])
    base, hybrid = SPACE.baseline(), SPACE.preset("wht-last-third")
    rows = [(base, 0.50, 9e7, 0), (hybrid, 0.45, 6e7, 0), (SPACE.preset("all-bft"), 0.40, 5e7, 0),
            (base, 0.80, 9e7, 1), (hybrid, 0.70, 6e7, 1), (SPACE.preset("all-wht"), None, 1e6, 0)]
    for arch, accuracy, flops, rung in rows:
        record = TrialRecord(arch=arch.to_json(), archid=arch.archid, costs={"flops": flops, "params": 1e6},
                             feasible=accuracy is not None, rung=rung, evaluation=Evaluation(val_accuracy=accuracy))
        study.add_trial(frozen_trial(record, values=[accuracy or 0.0, flops], params={"x": 0.5}, distributions=DIST))
    return study


def test_the_plot_draws_the_top_rung_with_the_baseline_once_and_numbered_frontier() -> None:
    from fusionnas.results.plot import _figure, plot_layers

    frame = trials_frame(rung_study())
    layers = plot_layers(frame, SPACE.baseline().archid)
    assert list(layers.points["number"]) == [3, 4] and list(layers.infeasible["number"]) == [5]
    assert list(layers.baseline["number"]) == [3] and list(layers.front["number"]) == [3, 4]
    assert "2 trials at rung 1, the highest reached; 3 at lower rungs" in layers.caption
    fig, plt = _figure(frame, objectives_of(rung_study()), SPACE.baseline().archid, "study s: digits, 48 steps")
    try:
        ax = fig.axes[0]
        labels = ax.get_legend_handles_labels()[1]
        assert labels.count("conv baseline") == 1
        assert sorted(t.get_text() for t in ax.texts) == ["#3", "#4"]
        star = next(c for c in ax.collections if c.get_label() == "conv baseline")
        assert star.get_zorder() < min(line.get_zorder() for line in ax.lines)  # never hides a frontier point
        assert fig.get_suptitle() == "study s: digits, 48 steps\nobjectives: proxy accuracy (max), FLOPs (min)"
    finally:
        plt.close(fig)


def test_the_html_plot_is_interactive(tmp_path) -> None:
    study = rung_study()
    text = plot_frontier(trials_frame(study), objectives_of(study), tmp_path / "front.html",
                         baseline_archid=SPACE.baseline().archid, title="study s").read_text()
    assert "plotly" in text and "trial 3 (" in text and "#4" in text and "Frontier" in text
    assert "conv baseline" in text and "lower rungs" in text
