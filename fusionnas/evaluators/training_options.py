"""The rules of the training options a user sets (epochs, steps, batch size, ...), said once.

:class:`~fusionnas.evaluators.proxy.ProxyBudget` checks them for Python callers
and ``fusionnas train``; a study file's ``[budget]`` checks the same rules with
fixes in its own key names.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OptionRule", "TRAINING_OPTIONS", "training_option_problems", "is_int", "is_number"]


@dataclass(frozen=True)
class OptionRule:
    """What one training option must be, and a value to suggest."""

    requirement: str  # "must be > 0"
    holds: Callable[[Any], bool]
    example: str  # "50": the fix writes ``<option> = 50``
    integer: bool = False


# The training options a user sets, ruled once: ProxyBudget checks them for Python callers and
# `fusionnas train`, the study file's [budget] (its fixes in its own key names) for a search.
TRAINING_OPTIONS: dict[str, OptionRule] = {
    "epochs": OptionRule("must be > 0", lambda v: v > 0, "1 (fractions allowed)"),
    "steps": OptionRule("must be > 0", lambda v: v >= 1, "50", integer=True),
    "data_fraction": OptionRule("must lie in (0, 1]", lambda v: 0 < v <= 1, "0.5 (1.0 uses all training data)"),
    "batch_size": OptionRule("must be > 0", lambda v: v >= 1, "64", integer=True),
    "lr": OptionRule("must be > 0", lambda v: v > 0, "0.05"),
    "resolution": OptionRule("must be > 0", lambda v: v >= 1, "32 or remove it", integer=True),
    "bn_recalibration_batches": OptionRule("must be >= 0", lambda v: v >= 0, "8 (batches; 0 turns it off)",
                                           integer=True),
}


def training_option_problems(values: Mapping[str, Any],
                             names: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(key, what is wrong, the fix) for each option of ``values`` that breaks its rule
    (:data:`TRAINING_OPTIONS`), its key as the caller spells it (``names``: option -> key); None
    means unset and passes; ``epochs`` with ``steps`` is wrong."""
    names = names or {}
    problems = []
    if values.get("epochs") is not None and values.get("steps") is not None:
        problems.append((names.get("steps", "steps"), "set together with epochs", "keep epochs or steps, not both"))
    for name, value in values.items():
        rule, key = TRAINING_OPTIONS.get(name), names.get(name, name)
        if rule is None or value is None:
            continue
        if not (is_int(value) if rule.integer else is_number(value)):
            kind = "an integer" if rule.integer else "a number"
            problems.append((key, f"must be {kind}, got {value!r}", f"write {key} = {rule.example}"))
        elif not rule.holds(value):
            problems.append((key, f"{rule.requirement}, got {value!r}", f"write {key} = {rule.example}"))
    return problems


def is_int(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
