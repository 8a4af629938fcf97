"""Every registered sampler: its options are study-file keys, it makes its Optuna sampler, it refuses others' keys."""
from __future__ import annotations

import dataclasses
import typing

import optuna
import pytest

from fusionnas.search.problems import StudyConfigError
from fusionnas.search.sampler_config import SAMPLER_CONFIGS, SAMPLERS, BaseSamplerConfig, SamplerConfig


def keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_samplers_options_are_documented_keys_of_the_sampler_table(name: str) -> None:
    cls = SAMPLER_CONFIGS[name]
    assert issubclass(cls, BaseSamplerConfig)
    assert keys(cls) <= keys(SamplerConfig) - {"name"}
    assert all(getattr(cls(), key) is None for key in keys(cls))  # unset: the sampler's own default


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_table_hands_the_named_sampler_its_keys_and_makes_it(name: str) -> None:
    chosen = SamplerConfig(name, seed=3).chosen()
    assert type(chosen) is SAMPLER_CONFIGS[name] and chosen.seed == 3
    assert isinstance(chosen.make_sampler(), optuna.samplers.BaseSampler)


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_key_the_named_sampler_does_not_take_is_refused(name: str) -> None:
    others = sorted(keys(SamplerConfig) - keys(SAMPLER_CONFIGS[name]) - {"name"})
    for key in others:
        value = True if typing.get_type_hints(SamplerConfig)[key] == bool | None else 4
        with pytest.raises(StudyConfigError) as info:
            SamplerConfig(name, **{key: value})
        assert [(p.field, p.fix) for p in info.value.problems] == [(key, "remove the key")]


def test_the_sampler_config_checks_its_own_options() -> None:
    with pytest.raises(StudyConfigError, match="population_size: must be > 1, got 1"):
        SAMPLER_CONFIGS["nsga2"](population_size=1)
    with pytest.raises(StudyConfigError, match="seed: must lie in"):
        SAMPLER_CONFIGS["random"](seed=-1)
