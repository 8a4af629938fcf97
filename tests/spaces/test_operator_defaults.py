"""Operators drawn as a network default with per-layer overrides: the same architectures, drawn otherwise."""
from __future__ import annotations

from collections import Counter

import optuna
import pytest

from _studies import ZERO_COST_TOML, write_study
from fusionnas.search import StudyConfigError, load_study_config
from fusionnas.spaces import get_space, random_archs
from fusionnas.spaces.operator_defaults import operator_parameters, operator_params, sample_operators

SPACE = get_space("mobilenetv2-cifar")
DEFAULTS = SPACE.with_network_defaults()


def _fusions(arch) -> list[str]:
    return [arch.head_fusion, *(f for b in arch.blocks for f in (b.expand, b.project) if f is not None)]


@pytest.mark.parametrize("arch", [*random_archs(SPACE, 12, seed=5), *(SPACE.preset(p) for p in SPACE.presets())],
                         ids=lambda a: a.archid)
def test_every_architecture_is_drawn_back_from_its_parameters(arch) -> None:
    params = DEFAULTS.params(arch)
    assert DEFAULTS.sample(optuna.trial.FixedTrial(params)) == arch
    assert set(params) <= set(DEFAULTS.choices())


def test_a_uniform_network_is_its_defaults_and_nothing_of_its_own() -> None:
    params = DEFAULTS.params(SPACE.preset("all-bft"))
    assert params["net.fusion"] == "bft" and params["net.depthwise"] == "conv"
    assert not any(v for k, v in params.items() if k.endswith(".own"))
    assert "b3.project" not in params and "b3.kernel" in params  # drawn only when the layer has its own


def test_the_parameters_and_the_space_s_size() -> None:
    choices = DEFAULTS.choices()
    assert choices["net.fusion"] == list(SPACE.fusions) and choices["net.depthwise"] == list(SPACE.depthwise)
    assert choices["b3.project.own"] == [False, True] and choices["b3.project"] == list(SPACE.fusions)
    assert "b3.kernel.own" not in choices and "b0.expand.own" not in choices  # not operators; no choice
    assert DEFAULTS.size() == SPACE.size()  # the same architectures


def test_random_draws_are_mostly_their_default() -> None:
    """Layer by layer, 34 fusion layers share one operator almost never; with defaults, often."""
    def uniform_share(space) -> float:
        archs = random_archs(space, 200, seed=0)
        return sum(Counter(_fusions(a)).most_common(1)[0][1] >= 0.6 * len(_fusions(a)) for a in archs) / len(archs)

    assert uniform_share(SPACE) == 0.0
    assert uniform_share(DEFAULTS) > 0.5


def test_the_functions_work_on_any_parameter_names() -> None:
    layers = {"a.expand": ["x", "y"], "a.width": [1, 2], "head.fusion": ["x", "y"]}
    assert list(operator_parameters(layers)) == ["net.fusion", "a.expand.own", "a.expand", "a.width",
                                                 "head.fusion.own", "head.fusion"]
    values = {"a.expand": "y", "a.width": 2, "head.fusion": "x"}
    params = operator_params(values, layers)
    assert params == {"net.fusion": "x", "a.expand.own": True, "a.expand": "y", "a.width": 2,
                      "head.fusion.own": False}  # a tie: the first offered is the default
    assert sample_operators(optuna.trial.FixedTrial(params), layers) == values


def test_a_study_file_draws_network_defaults(tmp_path) -> None:
    text = ZERO_COST_TOML.replace('space = "mobilenetv2-cifar"\n', "")
    config = load_study_config(write_study(tmp_path, text + '[space]\nname = "mobilenetv2-cifar"\n'
                                                       "network_defaults = true\n"))
    assert "net.fusion" in config.search_space().choices()
    plain = load_study_config(write_study(tmp_path, ZERO_COST_TOML, name="plain"))
    assert config.fingerprint != plain.fingerprint
    with pytest.raises(StudyConfigError, match="network_defaults: expected true or false, got 'yes'"):
        load_study_config(write_study(tmp_path, text + '[space]\nname = "mobilenetv2-cifar"\n'
                                                       'network_defaults = "yes"\n', name="bad"))
