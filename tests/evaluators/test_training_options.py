"""The training options' rules hold alike for ProxyBudget and a study file's [budget]."""
from __future__ import annotations

import re

import pytest

from fusionnas.errors import UserError
from fusionnas.evaluators.proxy import ProxyBudget
from fusionnas.evaluators.training_options import TRAINING_OPTIONS
from fusionnas.search import Budget, StudyConfigError

BAD = {"epochs": 0.0, "steps": 0, "data_fraction": 1.5, "batch_size": 0, "lr": -0.1, "resolution": 0,
       "bn_recalibration_batches": -1}
STUDY_KEY = {"bn_recalibration_batches": "bn_recalibration"}


def test_every_rule_has_a_bad_example() -> None:
    assert set(BAD) == set(TRAINING_OPTIONS)


@pytest.mark.parametrize("option", sorted(BAD))
def test_a_value_one_refuses_the_other_refuses_too(option: str) -> None:
    with pytest.raises(UserError, match=f"^{option} {re.escape(TRAINING_OPTIONS[option].requirement)}"):
        ProxyBudget(**{option: BAD[option]})
    key = STUDY_KEY.get(option, option)
    with pytest.raises(StudyConfigError, match=f"{key}: {re.escape(TRAINING_OPTIONS[option].requirement)}.*write {key} ="):
        Budget(**{key: BAD[option]})


def test_an_integer_option_names_its_type() -> None:
    with pytest.raises(UserError, match="steps must be an integer, got 2.5"):
        ProxyBudget(steps=2.5)
