"""The ``[sampler]`` section of a study file: which Optuna sampler proposes architectures."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fusionnas.search.problems import StudyConfigProblem, choice, positive, raise_if, study_key

if TYPE_CHECKING:
    import optuna

__all__ = ["SAMPLERS", "SamplerConfig"]

SAMPLERS = ("tpe", "nsga2", "evolution", "random")


@dataclass(frozen=True)
class SamplerConfig:
    """Which Optuna sampler proposes architectures; unset options keep Optuna's defaults.

    TPE's ``constant_liar`` (on unless set false) makes a worker treat the
    trials other workers are running as if they had failed, so that workers
    started together propose different architectures; it acts only while
    other trials run, so a lone worker samples as without it.
    ``multivariate`` models the parameters jointly; ``group`` (with
    ``multivariate``) splits them by the trials that used them. ``evolution``
    mutates frontier architectures (:mod:`fusionnas.search.evolution`).
    TPE is Optuna's, reading the study once per proposal
    (:class:`~fusionnas.search.tpe.SnapshotTPESampler`).
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
        problems: list[StudyConfigProblem] = []
        if self.name not in SAMPLERS:
            problems.append(choice("name", self.name, SAMPLERS, "sampler"))
        if self.seed is not None and not 0 <= self.seed < 2**32:
            problems.append(StudyConfigProblem(
                "seed", f"must lie in [0, 2**32), got {self.seed}", "write seed = 0"))
        owners = {"n_startup_trials": ("tpe", "evolution"), "constant_liar": ("tpe",), "multivariate": ("tpe",),
                  "group": ("tpe",), "population_size": ("nsga2", "evolution")}
        for key, users in owners.items():
            if getattr(self, key) is not None and self.name not in users:
                problems.append(StudyConfigProblem(
                    key, f"only the {' and '.join(users)} sampler{'s' if len(users) > 1 else ''} use"
                    f"{'' if len(users) > 1 else 's'} it, not {self.name!r}", "remove the key"))
        if self.n_startup_trials is not None and self.n_startup_trials < 0:
            problems.append(StudyConfigProblem(
                "n_startup_trials", f"must be >= 0, got {self.n_startup_trials}",
                "write n_startup_trials = 10"))
        if self.group and not self.multivariate:
            problems.append(StudyConfigProblem(
                "group", "needs multivariate = true", "add multivariate = true or remove group"))
        positive(problems, "population_size", self.population_size,
                  "write population_size = 20", low=1)
        raise_if(problems)

    def make_sampler(
        self, constraints_func: Callable[[optuna.trial.FrozenTrial], Sequence[float]] | None = None
    ) -> optuna.samplers.BaseSampler:
        """The Optuna sampler; constraints come from ``trial.set_constraint`` unless given here.

        Optuna 5 deprecates ``constraints_func`` (it still works, with a FutureWarning);
        the random sampler ignores constraints either way.
        """
        import warnings

        import optuna

        extra: dict[str, Any] = {}
        if constraints_func is not None and self.name != "random":
            extra["constraints_func"] = constraints_func
        if self.name == "tpe":
            if self.n_startup_trials is not None:
                extra["n_startup_trials"] = self.n_startup_trials
            for key in ("multivariate", "group"):
                if getattr(self, key) is not None:
                    extra[key] = getattr(self, key)
            extra["constant_liar"] = self.constant_liar is not False
            from fusionnas.search.tpe import SnapshotTPESampler

            with warnings.catch_warnings():  # constant_liar, multivariate and group are "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return SnapshotTPESampler(seed=self.seed, **extra)
        if self.name == "nsga2":
            if self.population_size is not None:
                extra["population_size"] = self.population_size
            return optuna.samplers.NSGAIISampler(seed=self.seed, **extra)
        if self.name == "evolution":
            from fusionnas.search.evolution import EvolutionSampler

            for key in ("n_startup_trials", "population_size"):
                if getattr(self, key) is not None:
                    extra[key] = getattr(self, key)
            extra.pop("constraints_func", None)  # it reads trial.set_constraint values itself
            return EvolutionSampler(seed=self.seed, **extra)
        return optuna.samplers.RandomSampler(seed=self.seed)
