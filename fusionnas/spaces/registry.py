"""Registry of search spaces by name, and the interface a space offers."""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fusionnas.errors import UserError

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from fusionnas.spaces.arch import Arch

__all__ = ["Space", "register_space", "get_space", "list_spaces", "random_archs", "choices_fingerprint"]


@runtime_checkable
class Space(Protocol):
    """What the search, the evaluators and the CLI use of a space."""

    name: str
    version: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    num_classes: int

    def sample(self, trial: optuna.trial.BaseTrial) -> Arch:
        """Draw an architecture with ``trial.suggest_*`` calls."""

    def build(self, arch: Arch, num_classes: int | None = None) -> nn.Module:
        """The torch model of ``arch``."""

    def baseline(self) -> Arch:
        """The reference network (all conv)."""

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
