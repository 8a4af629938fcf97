"""The ``[space]`` table: a study searches a subset of a registered space, sampled by the space itself."""
from __future__ import annotations

import optuna
import pytest

from _studies import ZERO_COST, ZERO_COST_TOML, study_config, write_study
from fusionnas.search import SpaceRestriction, StudyConfigError, load_study_config, run_study
from fusionnas.spaces import Arch, choices_fingerprint, get_space, random_archs, registry
from fusionnas.trial_record import StudyRecord, TrialRecord

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

CONV_ONLY = {"name": "mobilenetv2-cifar", "fusions": ["conv"], "depthwise": ["conv"]}


def test_a_space_table_in_a_study_file(tmp_path) -> None:
    text = ZERO_COST_TOML.replace('space = "mobilenetv2-cifar"\n', "") + (
        '[space]\nname = "mobilenetv2-cifar"\nfusions = ["wht", "conv"]\nkernels = [3]\nwidths = [1]\n')
    config = load_study_config(write_study(tmp_path, text))
    assert config.space == "mobilenetv2-cifar"
    assert config.space_restriction == SpaceRestriction(
        "mobilenetv2-cifar", {"fusions": ("conv", "wht"), "kernels": (3,), "widths": (1.0,)})
    space = config.search_space()
    assert space.restrictions()["fusions"] == ("conv", "wht") and space.baseline() == get_space(config.space).baseline()
    plain = load_study_config(write_study(tmp_path, ZERO_COST_TOML, name="plain"))
    assert plain.space_restriction is None and plain.search_space() is get_space("mobilenetv2-cifar")


def test_every_bad_list_is_reported() -> None:
    with pytest.raises(StudyConfigError) as info:
        SpaceRestriction("mobilenetv2-cifar", {"fusions": ["fft"], "kernels": [], "widths": [0.75]})
    assert [p.line() for p in info.value.problems] == [
        "fusions: 'fft' is not offered by mobilenetv2-cifar; offered: conv, wht, dct, bft",
        "kernels: is empty, so nothing could be sampled; list some of: 3, 5",
    ]


def test_a_space_without_restrictions_is_searched_whole_only(monkeypatch) -> None:
    class Fixed:  # a space of a plugin written before restriction existed
        name = "fixed"

    monkeypatch.setitem(registry._SPACES, "fixed", Fixed())
    with pytest.raises(StudyConfigError, match="name: space fixed cannot be restricted .*; "
                                               'write space = "fixed" to search all of it'):
        SpaceRestriction("fixed", {"fusions": ["conv"]})


def test_a_conv_only_study_samples_only_conv(tmp_path) -> None:
    config = study_config(tmp_path, ZERO_COST, space=CONV_ONLY)
    space = config.search_space()
    archs = random_archs(space, 20, seed=3)
    assert {f for a in archs for b in a.blocks for f in (b.expand, b.depthwise, b.project)} == {None, "conv"}
    assert {a.head_fusion for a in archs} == {"conv"}
    assert len({a.archid for a in archs}) == 20  # ratios, kernels and widths still vary
    base = get_space(config.space)
    assert all(Arch.from_json(a.to_json()) == a for a in archs) and base.size() > space.size()
    assert choices_fingerprint(space) != choices_fingerprint(base)


def test_a_restricted_study_runs_and_records_its_choices(tmp_path) -> None:
    config = study_config(tmp_path, ZERO_COST, space=CONV_ONLY, n_trials=3, enqueue=["baseline"])
    study = run_study(config, progress=False)
    space = config.search_space()
    assert StudyRecord.read(study).space_choices == choices_fingerprint(space)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    archs = [Arch.from_json(TrialRecord.read(t).arch) for t in study.trials]
    assert archs[0] == get_space(config.space).baseline()
    for arch in archs:
        space.validate(arch)  # conv only, as the archs of the space itself
