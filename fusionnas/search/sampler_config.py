"""The ``[sampler]`` section of a study file: which Optuna sampler proposes architectures.

Each sampler is one small frozen dataclass that owns its options, checks them
and makes the Optuna sampler (:class:`TPEConfig`, :class:`NSGA2Config`,
:class:`EvolutionConfig`, :class:`RandomConfig`); :data:`SAMPLER_CONFIGS`
maps the study file's ``[sampler] name`` to its class. :class:`SamplerConfig`
is the table as the file writes it, a name and the keys of every sampler, each
documented once; it hands the named sampler's class the keys that class takes.

Adding a sampler is a class below and its line in :data:`SAMPLER_CONFIGS`; an
option no sampler took before also needs its documented field on
:class:`SamplerConfig` (the file's schema and docs/study-file.md are read from it).
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fusionnas.search.problems import StudyConfigError, StudyConfigProblem, choice, positive, raise_if, study_key

if TYPE_CHECKING:
    import optuna

__all__ = ["SAMPLERS", "SAMPLER_CONFIGS", "BaseSamplerConfig", "TPEConfig", "NSGA2Config", "EvolutionConfig",
           "RandomConfig", "SamplerConfig"]

ConstraintsFunc = Callable[["optuna.trial.FrozenTrial"], Sequence[float]]


def _seed_problems(seed: int | None) -> list[StudyConfigProblem]:
    if seed is not None and not 0 <= seed < 2**32:
        return [StudyConfigProblem("seed", f"must lie in [0, 2**32), got {seed}", "write seed = 0")]
    return []


def _startup_problems(n_startup_trials: int | None) -> list[StudyConfigProblem]:
    if n_startup_trials is not None and n_startup_trials < 0:
        return [StudyConfigProblem("n_startup_trials", f"must be >= 0, got {n_startup_trials}",
                                   "write n_startup_trials = 10")]
    return []


def _population_problems(population_size: int | None) -> list[StudyConfigProblem]:
    problems: list[StudyConfigProblem] = []
    positive(problems, "population_size", population_size, "write population_size = 20", low=1)
    return problems


def _given(**options: Any) -> dict[str, Any]:
    """The options that are set: None keeps the sampler's own default."""
    return {key: value for key, value in options.items() if value is not None}


@dataclass(frozen=True)
class BaseSamplerConfig(ABC):
    """One sampler's options, checked when made; ``seed`` None lets the sampler draw one."""

    seed: int | None = None

    def __post_init__(self) -> None:
        raise_if(self.problems())

    def problems(self) -> list[StudyConfigProblem]:
        """What is wrong with the options, each problem naming its key; subclasses add theirs."""
        return _seed_problems(self.seed)

    @abstractmethod
    def make_sampler(self, constraints_func: ConstraintsFunc | None = None) -> optuna.samplers.BaseSampler:
        """The Optuna sampler; constraints come from ``trial.set_constraint`` unless given here.

        Optuna 5 deprecates ``constraints_func`` (it still works, with a FutureWarning).
        """


@dataclass(frozen=True)
class TPEConfig(BaseSamplerConfig):
    """Optuna's TPE, reading the study once per proposal (:class:`~fusionnas.search.tpe.SnapshotTPESampler`).

    ``constant_liar`` (on unless set false) makes a worker treat the trials
    other workers are running as if they had failed, so that workers started
    together propose different architectures; it acts only while other trials
    run, so a lone worker samples as without it. ``multivariate`` models the
    parameters jointly; ``group`` (with ``multivariate``) splits them by the
    trials that used them.
    """

    n_startup_trials: int | None = None
    constant_liar: bool | None = None
    multivariate: bool | None = None
    group: bool | None = None

    def problems(self) -> list[StudyConfigProblem]:
        problems = super().problems() + _startup_problems(self.n_startup_trials)
        if self.group and not self.multivariate:
            problems.append(StudyConfigProblem(
                "group", "needs multivariate = true", "add multivariate = true or remove group"))
        return problems

    def make_sampler(self, constraints_func: ConstraintsFunc | None = None) -> optuna.samplers.BaseSampler:
        import warnings

        import optuna

        from fusionnas.search.tpe import SnapshotTPESampler

        options = _given(constraints_func=constraints_func, n_startup_trials=self.n_startup_trials,
                         multivariate=self.multivariate, group=self.group)
        with warnings.catch_warnings():  # constant_liar, multivariate and group are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return SnapshotTPESampler(seed=self.seed, constant_liar=self.constant_liar is not False, **options)


@dataclass(frozen=True)
class NSGA2Config(BaseSamplerConfig):
    """Optuna's NSGA-II genetic algorithm over a population of ``population_size``."""

    population_size: int | None = None

    def problems(self) -> list[StudyConfigProblem]:
        return super().problems() + _population_problems(self.population_size)

    def make_sampler(self, constraints_func: ConstraintsFunc | None = None) -> optuna.samplers.BaseSampler:
        import optuna

        options = _given(constraints_func=constraints_func, population_size=self.population_size)
        return optuna.samplers.NSGAIISampler(seed=self.seed, **options)


@dataclass(frozen=True)
class EvolutionConfig(BaseSamplerConfig):
    """Mutations of frontier architectures (:mod:`fusionnas.search.evolution`); parents are drawn
    from the ``population_size`` most recent trials."""

    n_startup_trials: int | None = None
    population_size: int | None = None

    def problems(self) -> list[StudyConfigProblem]:
        return (super().problems() + _startup_problems(self.n_startup_trials)
                + _population_problems(self.population_size))

    def make_sampler(self, constraints_func: ConstraintsFunc | None = None) -> optuna.samplers.BaseSampler:
        from fusionnas.search.evolution import EvolutionSampler

        # constraints_func goes unused: the sampler reads the trials' set_constraint values itself
        options = _given(n_startup_trials=self.n_startup_trials, population_size=self.population_size)
        return EvolutionSampler(seed=self.seed, **options)


@dataclass(frozen=True)
class RandomConfig(BaseSamplerConfig):
    """Optuna's random sampler, the baseline the others are measured against; it ignores constraints."""

    def make_sampler(self, constraints_func: ConstraintsFunc | None = None) -> optuna.samplers.BaseSampler:
        import optuna

        return optuna.samplers.RandomSampler(seed=self.seed)


# The study file's [sampler] name -> the class that owns that sampler's options; the first is the default.
SAMPLER_CONFIGS: Mapping[str, type[BaseSamplerConfig]] = {
    "tpe": TPEConfig,
    "nsga2": NSGA2Config,
    "evolution": EvolutionConfig,
    "random": RandomConfig,
}
SAMPLERS = tuple(SAMPLER_CONFIGS)


def _keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class SamplerConfig:
    """The ``[sampler]`` table: which sampler proposes architectures and the options set for it.

    It checks that the named sampler takes every key set; that sampler's class
    (:meth:`chosen`) checks their values and makes the Optuna sampler. Unset
    options keep Optuna's defaults.
    """

    name: str = study_key('"tpe"', "tpe", choices=SAMPLERS, doc="the sampler")
    seed: int | None = study_key('0', None, doc="the sampler's seed; default: the study's seed (a worker that "
                                 "joins or resumes a study mixes in its host and process id)")
    n_startup_trials: int | None = study_key('10', None, doc="tpe, evolution: random trials first; default: "
                                             "the sampler's")
    constant_liar: bool | None = study_key('true', None, doc="tpe only: count other workers' running trials "
                                           "as failed, so workers propose different architectures; default: on")
    multivariate: bool | None = study_key('true', None, doc="tpe only: model the parameters jointly")
    group: bool | None = study_key('true', None, doc="tpe only, needs multivariate: split the parameters by "
                                   "the trials that used them")
    population_size: int | None = study_key('50', None, doc="nsga2: its population; evolution: the window of "
                                            "recent trials parents are drawn from")

    def __post_init__(self) -> None:
        cls = SAMPLER_CONFIGS.get(self.name)
        problems = [] if cls is not None else [choice("name", self.name, SAMPLERS, "sampler")]
        taken = _keys(cls) if cls is not None else ["seed"]
        for key in _keys(SamplerConfig)[2:]:  # the options after name and seed
            if getattr(self, key) is not None and key not in taken:
                users = [name for name, other in SAMPLER_CONFIGS.items() if key in _keys(other)]
                problems.append(StudyConfigProblem(
                    key, f"only the {' and '.join(users)} sampler{'s' if len(users) > 1 else ''} use"
                    f"{'' if len(users) > 1 else 's'} it, not {self.name!r}", "remove the key"))
        if cls is None:
            problems += _seed_problems(self.seed)
        else:
            try:
                self.chosen()
            except StudyConfigError as error:
                problems += error.problems
        raise_if(problems)

    def chosen(self) -> BaseSamplerConfig:
        """The named sampler's own config, given the keys it takes."""
        cls = SAMPLER_CONFIGS[self.name]
        return cls(**{key: getattr(self, key) for key in _keys(cls)})

    def make_sampler(self, constraints_func: ConstraintsFunc | None = None) -> optuna.samplers.BaseSampler:
        """The Optuna sampler (see :meth:`BaseSamplerConfig.make_sampler`)."""
        return self.chosen().make_sampler(constraints_func)
