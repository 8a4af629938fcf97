"""The ``[space]`` table of a study file: which subset of a registered space a study searches.

``space = "mobilenetv2-cifar"`` searches the whole space; the table form keeps
only the listed values of the space's restrictable choices
(``space.restrictions()``), each list optional::

    [space]
    name = "mobilenetv2-cifar"
    fusions = ["conv"]
    depthwise = ["conv"]
    expand_ratios = [6]
    kernels = [3, 5]
    widths = [1.0]
    network_defaults = true    # operators: a network default, then per-layer overrides

``network_defaults`` changes how the operators are drawn, not which
architectures exist (:mod:`fusionnas.spaces.operator_defaults`).

The restricted space (:meth:`~fusionnas.spaces.Space.restrict`) keeps the
space's name, presets, baseline and archids, so what reads a study's
architectures (export, train, pareto, latency tables) uses the space itself.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fusionnas.errors import UserError
from fusionnas.search.problems import StudyConfigProblem, choice, raise_if, study_key

if TYPE_CHECKING:
    from fusionnas.spaces import Space

__all__ = ["SpaceRestriction"]


@dataclass(frozen=True)
class SpaceRestriction:
    """The lists of a ``[space]`` table, checked against the registered space ``name`` and kept in
    its own values and order (``widths = [1]`` -> ``(1.0,)``), so the study's fingerprint does not
    depend on how a list was written."""

    name: str
    subsets: Mapping[str, tuple[Any, ...]]  # restrictable choice -> the values kept
    network_defaults: bool = study_key('true', False, doc="draw the operators as a network-wide default with "
                                       "per-layer overrides (fusionnas.spaces.operator_defaults): the same "
                                       "architectures, drawn otherwise")

    def __post_init__(self) -> None:
        from fusionnas.spaces import RestrictionError, get_space, list_spaces, restricted_choices

        if self.name not in list_spaces():
            raise_if([choice("name", self.name, list_spaces(), "space")])
        space = get_space(self.name)
        if not isinstance(self.network_defaults, bool):
            raise_if([StudyConfigProblem(
                "network_defaults", f"expected true or false, got {self.network_defaults!r}",
                "write network_defaults = true")])
        if self.network_defaults and not callable(getattr(space, "with_network_defaults", None)):
            raise_if([StudyConfigProblem(
                "network_defaults", f"space {self.name} cannot draw network defaults (no with_network_defaults)",
                "remove network_defaults")])
        if not all(callable(getattr(space, method, None)) for method in ("restrictions", "restrict")):
            raise_if([StudyConfigProblem(
                "name", f"space {self.name} cannot be restricted (it has no restrictions or restrict method)",
                f'write space = "{self.name}" to search all of it')])
        kept: dict[str, tuple[Any, ...]] = {}
        problems: list[StudyConfigProblem] = []
        for key, values in self.subsets.items():  # each on its own, so that every bad list is reported
            try:
                kept.update(restricted_choices(self.name, space.restrictions(), {key: values}))
            except RestrictionError as error:
                problems.append(StudyConfigProblem(error.field, error.problem, error.fix))
        raise_if(problems)
        object.__setattr__(self, "subsets", kept)

    def space(self) -> Space:
        """The registered space, offering only these lists to the sampler."""
        from fusionnas.spaces import get_space

        space = get_space(self.name)
        space = space.restrict(**self.subsets) if self.subsets else space
        return space.with_network_defaults() if self.network_defaults else space

    def enqueue_problems(self, presets: Sequence[str]) -> list[StudyConfigProblem]:
        """An ``enqueue[i]`` problem for each preset that lies outside the restricted space."""
        space = self.space()
        shown = "; ".join(f"{key} = {json.dumps(list(values))}" for key, values in self.subsets.items())
        problems = []
        for i, name in enumerate(presets):
            if name not in space.presets():
                continue  # an unknown name, reported with the other names
            try:
                space.validate(space.preset(name))
            except UserError as error:
                problems.append(StudyConfigProblem(
                    f"enqueue[{i}]", f"preset {name!r} lies outside the [space] lists ({shown}): {error}",
                    "remove it from enqueue or widen the [space] lists"))
        return problems
