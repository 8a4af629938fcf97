"""Registry of search spaces by name, and the interface a space offers.

Below :mod:`fusionnas.spaces.arch` at run time: an architecture document
names its space, and :meth:`Arch.from_json` looks it up here to check it.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fusionnas.errors import UserError

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from fusionnas.spaces.arch import Arch

__all__ = ["Space", "register_space", "get_space", "list_spaces", "random_archs", "choices_fingerprint",
           "RestrictionError", "restricted_choices", "NoBaselineError", "baseline_or_none", "format_choices"]


def format_choices(choices: Sequence[Any]) -> str:
    """``conv, wht, dct, bft``: allowed values as error messages list them (``null`` for None)."""
    return ", ".join("null" if c is None else str(c) for c in choices)


@runtime_checkable
class Space(Protocol):
    """What the search, the evaluators and the CLI use of a space."""

    name: str
    version: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    num_classes: int
    fusions: tuple[str, ...]  # the 1x1 fusion operators offered
    depthwise: tuple[str, ...]  # the depthwise operators offered

    def sample(self, trial: optuna.trial.BaseTrial) -> Arch:
        """Draw an architecture with ``trial.suggest_*`` calls."""

    def build(self, arch: Arch, num_classes: int | None = None) -> nn.Module:
        """The torch model of ``arch``."""

    def baseline(self) -> Arch:
        """The reference network (all conv); :class:`NoBaselineError` when the space has none."""

    def uniform(self, fusion: str, depthwise: str | None = None, *, kernel: int | None = None,
                size: str = "smallest") -> Arch:
        """The architecture with one fusion and one depthwise operator everywhere, every other choice
        at its ``"smallest"`` or ``"largest"`` offered value (see :meth:`MobileNetV2Space.uniform`)."""

    def presets(self) -> list[str]:
        """Names of the named architectures."""

    def preset(self, name: str) -> Arch:
        """A named architecture."""

    def size(self) -> int:
        """Number of architectures in the space."""

    def validate(self, arch: Arch) -> None:
        """Raise ``ValueError`` naming the first field of ``arch`` the space does not allow."""

    def choices(self) -> dict[str, list[Any]]:
        """Optuna parameter name -> the values offered, for every choice with more than one."""

    def params(self, arch: Arch) -> dict[str, Any]:
        """The Optuna parameters that make :meth:`sample` return ``arch``."""

    def preset_note(self, name: str) -> str:
        """One line on what a preset is."""

    def restrictions(self) -> dict[str, tuple[Any, ...]]:
        """Restrictable choice (``fusions``, ``kernels``, ...) -> the values offered, for :meth:`restrict`."""

    def restrict(self, **subsets: Sequence[Any]) -> Space:
        """This space offering only ``subsets`` of :meth:`restrictions` to :meth:`sample`.

        Same name, version, presets and baseline, and its architectures keep
        their archids, so everything that reads an Arch takes them as the
        unrestricted space's; a bad list raises :class:`RestrictionError`.
        """


class NoBaselineError(UserError):
    """The space has no baseline (a plugin's space may lack one); only what compares against it needs one:
    latency measured here, export's card, ``pareto --measure``, ``profile``."""


def baseline_or_none(space: Space) -> Arch | None:
    """``space``'s baseline, or None where it has none (a plot, a check that can do without it)."""
    try:
        return space.baseline()
    except NoBaselineError:
        return None


_SPACES: dict[str, Space] = {}


def register_space(space: Space) -> Space:
    """Make ``space`` available to :func:`get_space` under ``space.name``; returns it."""
    if space.name in _SPACES:
        raise ValueError(f"search space {space.name!r} is already registered; pick another name")
    _SPACES[space.name] = space
    return space


def list_spaces() -> list[str]:
    """Names of the registered spaces, sorted."""
    return sorted(_SPACES)


def get_space(name: str) -> Space:
    """The registered space ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    try:
        return _SPACES[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown search space {name!r}; known: {', '.join(list_spaces())}") from None


def random_archs(space: Space, count: int, seed: int = 0) -> list[Arch]:
    """``count`` architectures drawn uniformly by ``space.sample`` with a seeded random sampler."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return [space.sample(study.ask()) for _ in range(count)]


def choices_fingerprint(space: Space) -> str:
    """Short hash of what ``space`` offers (its version and every choice's values, in order).

    It changes when an operator is registered or removed, since Optuna cannot
    resume a study whose categorical choices changed.
    """
    canonical = json.dumps({"version": space.version, "choices": space.choices()}, sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class RestrictionError(UserError):
    """A list a space cannot be restricted to: ``field``, ``problem`` and ``fix`` are the message's parts."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{field}: {problem}", fix)
        self.field, self.problem = field, problem


def restricted_choices(space: str, offered: Mapping[str, Sequence[Any]],
                       subsets: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """``subsets`` (choice -> values to keep) checked against ``offered`` (space ``space``'s
    :meth:`~Space.restrictions`), as ``offered``'s own values in its order (``[1]`` -> ``(1.0,)``).

    The first list that is not a non-empty subset without repeats raises
    :class:`RestrictionError`, e.g. ``fusions: 'fft' is not offered by
    mobilenetv2-cifar; offered: conv, wht, dct, bft``.
    """
    kept = {}
    for field, values in subsets.items():
        if field not in offered:
            close = difflib.get_close_matches(field, list(offered), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise RestrictionError(field, f"{space} has no such choice to restrict",
                                   f"{hint}restrictable: {', '.join(offered)}")
        choices = offered[field]
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise RestrictionError(field, f"expected a list, got {type(values).__name__} {values!r}",
                                   f"write a list of some of: {format_choices(choices)}")
        if not values:
            raise RestrictionError(field, "is empty, so nothing could be sampled",
                                   f"list some of: {format_choices(choices)}")
        for i, value in enumerate(values):
            if not any(_same(value, c) for c in choices):
                raise RestrictionError(field, f"{value!r} is not offered by {space}",
                                       f"offered: {format_choices(choices)}")
            if any(_same(value, v) for v in values[:i]):
                raise RestrictionError(field, f"repeats {value!r}", "remove the duplicate")
        kept[field] = tuple(c for c in choices if any(_same(v, c) for v in values))
    return kept


def _same(a: Any, b: Any) -> bool:
    """Equal values of one kind: 1 is 1.0, but True is not 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b
