"""space.params(arch): the Optuna parameters that make space.sample return arch (for enqueue_trial)."""
from __future__ import annotations

import optuna
import pytest

from fusionnas.spaces import get_space, list_spaces, random_archs


@pytest.mark.parametrize("name", list_spaces())
def test_params_round_trip_through_sample(name) -> None:
    space = get_space(name)
    for arch in [space.preset(p) for p in space.presets()] + random_archs(space, 3, seed=1):
        params = space.params(arch)
        assert set(params) == set(space.choices())
        assert space.sample(optuna.trial.FixedTrial(params)) == arch


def test_params_validates_the_arch() -> None:
    cifar, imagenet = get_space("mobilenetv2-cifar"), get_space("mobilenetv2-imagenet")
    with pytest.raises(ValueError, match="space"):
        cifar.params(imagenet.baseline())
