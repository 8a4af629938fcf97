"""A space's operators drawn as a network-wide default with per-layer overrides.

Drawn layer by layer, a MobileNetV2 with 34 fusion layers and four fusion
operators is almost never all-butterfly, the one hybrid family that runs
faster than the all-conv network as deployed on a CPU, and a sampler must
learn from 34 weak signals that the butterfly helps. With network defaults
the same architectures are parameterised otherwise: ``net.fusion`` and
``net.depthwise`` pick the operator of every layer, and each layer draws
``<layer>.own`` (False or True) and, only when True, its own operator
``<layer>`` (a conditional parameter). A random draw is then mostly its
default, and a sampler learns the default's effect from one parameter.

Layers are told apart by their parameter names: ``<...>.expand``,
``<...>.project`` and ``head.fusion`` are fusions, ``<...>.depthwise`` are
depthwise operators; every other parameter is drawn as it is.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["GROUPS", "operator_parameters", "sample_operators", "operator_params"]

GROUPS = {"fusion": (".expand", ".project", "head.fusion"), "depthwise": (".depthwise",)}
_OWN = (False, True)


def _group(name: str) -> str | None:
    return next((g for g, endings in GROUPS.items() if name.endswith(endings)), None)


def _defaults(per_layer: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Group -> the operators its layers offer (in first-offered order), for groups with a choice."""
    offered: dict[str, list[Any]] = {}
    for name, options in per_layer.items():
        group = _group(name)
        if group is not None:
            offered.setdefault(group, [])
            offered[group] += [o for o in options if o not in offered[group]]
    return {g: values for g, values in offered.items() if len(values) > 1}


def operator_parameters(per_layer: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """The parameters (name -> values) that replace ``per_layer``'s: ``net.<group>`` first, then
    every parameter, each operator layer's preceded by its ``.own``."""
    defaults = _defaults(per_layer)
    parameters = {f"net.{g}": values for g, values in defaults.items()}
    for name, options in per_layer.items():
        if _group(name) in defaults:
            parameters[f"{name}.own"] = list(_OWN)
        parameters[name] = list(options)
    return parameters


def sample_operators(trial: optuna.trial.BaseTrial, per_layer: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Draw ``per_layer``'s values through :func:`operator_parameters`: the layer-by-layer values."""
    defaults = {g: trial.suggest_categorical(f"net.{g}", values) for g, values in _defaults(per_layer).items()}
    values = {}
    for name, options in per_layer.items():
        group = _group(name)
        if group in defaults:
            own = trial.suggest_categorical(f"{name}.own", list(_OWN))
            if not own and defaults[group] in options:
                values[name] = defaults[group]
                continue
        values[name] = trial.suggest_categorical(name, list(options))
    return values


def operator_params(values: Mapping[str, Any], per_layer: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The parameters that make :func:`sample_operators` return ``values`` (layer-by-layer): each
    group's default is its most common operator (ties: the first offered)."""
    defaults = {}
    for group, offered in _defaults(per_layer).items():
        counts = Counter(values[n] for n in per_layer if _group(n) == group)
        defaults[group] = max(offered, key=lambda op: (counts[op], -offered.index(op)))
    params: dict[str, Any] = {f"net.{g}": d for g, d in defaults.items()}
    for name in per_layer:
        group = _group(name)
        if group in defaults:
            own = values[name] != defaults[group]
            params[f"{name}.own"] = own
            if not own:
                continue
        params[name] = values[name]
    return params
