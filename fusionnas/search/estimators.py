"""How a study judges an architecture's accuracy: one :class:`Estimator` per ``[budget] kind``.

* :class:`ProxyTraining` (``proxy``): train briefly, to the trial's rung's steps;
  a promotion resumes from its parent's weights (:mod:`fusionnas.search.rungs`).
* :class:`ZeroCostScore` (``zero_cost``): a score at initialisation, no training.
* :class:`SupernetInheritance` (``supernet``): rung 0 inherits the study
  supernet's weights (:mod:`fusionnas.search.shared_weights`); promotions
  train on from them as proxy training does.

An estimator owns what its kind means for the study file: which ``[budget]``
options it takes (:meth:`Estimator.problems`), its rungs' steps, its line in
titles, its fingerprint. Adding a fourth way is a subclass and
:func:`register_estimator`.
"""
from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import optuna
import torch

from fusionnas.evaluators.proxy import ProxyBudget, ProxyResult, planned_steps, recalibrate, train_proxy, validate
from fusionnas.interrupts import STOP
from fusionnas.search.problems import StudyConfigProblem
from fusionnas.search.progress import StepTicker
from fusionnas.search.shared_weights import StudySupernet
from fusionnas.trial_record import TrialRecord

if TYPE_CHECKING:
    from fusionnas.search.config import Budget
    from fusionnas.search.context import StudyContext
    from fusionnas.spaces import Arch

__all__ = ["Estimator", "ProxyTraining", "ZeroCostScore", "SupernetInheritance", "ESTIMATORS",
           "register_estimator", "estimator_for", "Trainer"]

logger = logging.getLogger(__name__)

# ``train(model, data, budget, *, on_step)``: how an architecture is trained, the signature of
# :func:`~fusionnas.evaluators.proxy.train_proxy` (the default); ``on_step(step)`` is called
# after every optimiser step and may raise to stop.
Trainer = Callable[..., ProxyResult]


class Estimator(ABC):
    """One way of judging an architecture (see the module docstring).

    Args:
        context: the study run's shared state.
        train: how an architecture is trained (tests pass a fake).
    """

    kind: ClassVar[str]  # the study file's ``[budget] kind``
    trains: ClassVar[bool] = True  # False: no accuracy, no rungs, no whole-network latency

    def __init__(self, context: StudyContext, train: Trainer = train_proxy) -> None:
        self.context = context
        self.train = train

    # -- the kind's options (the study file) ----------------------------------------------

    @classmethod
    def problems(cls, budget: Budget) -> list[StudyConfigProblem]:
        """What is wrong with ``budget``'s options for this kind (the common ones are checked by Budget)."""
        if budget.rungs > 1 and budget.steps is None:
            return [StudyConfigProblem(
                "steps", f"rungs = {budget.rungs} needs training counted in steps (the top rung's)",
                f"{'replace epochs with' if budget.epochs is not None else 'add'} steps = 400, or remove rungs")]
        return []

    @classmethod
    def rung_steps(cls, budget: Budget) -> tuple[int, ...]:
        """Cumulative optimiser steps of each rung, increasing (one rung: the budget's steps, 0 when in epochs)."""
        count, eta, top = budget.rungs, budget.reduction, budget.steps
        if count == 1 or top is None:
            return (top or 0,)
        return tuple(max(1, round(top / eta ** (count - 1 - r))) for r in range(count))

    @classmethod
    def describe(cls, budget: Budget) -> str:
        """One line for titles: ``proxy training, rungs of 12, 48 steps, batch 32, 16 px``."""
        return f"proxy training, {_training_line(cls.rung_steps(budget), budget)}"

    @classmethod
    def fingerprinted(cls, budget: dict[str, Any]) -> dict[str, Any]:
        """``budget`` (as stored) without the options this kind ignores, for the study's fingerprint."""
        return {k: v for k, v in budget.items() if k != "supernet_steps"}

    # -- judging a trial -------------------------------------------------------------------

    @abstractmethod
    def evaluate(self, trial: optuna.Trial, arch: Arch, model: torch.nn.Module, record: TrialRecord,
                 parent: TrialRecord | None) -> torch.nn.Module:
        """Judge ``arch`` (built as ``model``) into ``record.evaluation``; returns the judged network."""


class ProxyTraining(Estimator):
    """``kind = "proxy"``: train to the rung's steps, resuming a promotion from its parent's weights."""

    kind = "proxy"

    def evaluate(self, trial: optuna.Trial, arch: Arch, model: torch.nn.Module, record: TrialRecord,
                 parent: TrialRecord | None) -> torch.nn.Module:
        context = self.context
        steps, resumed, done = context.rungs.steps[record.rung], None, 0
        if parent is not None and self._load_weights(model, parent, record.promoted_from):
            done = int(parent.evaluation.proxy_steps or 0)
            steps, resumed = steps - done, record.promoted_from
        options = {**context.config.budget.proxy_options(), **({"steps": steps} if steps else {})}
        budget = ProxyBudget(**options, seed=context.config.seed, device=context.device)
        ticker = StepTicker(f"trial {trial.number}", planned_steps(context.data, budget)[0])
        trained = self.train(model, context.data, budget,
                             on_step=lambda step: (STOP.check(), context.costs.host.pause_point(), ticker(step)))
        record.evaluation.val_accuracy = trained.val_accuracy
        record.evaluation.val_loss = trained.val_loss
        record.evaluation.train_seconds = trained.train_seconds
        record.evaluation.proxy_steps = trained.steps + done
        record.evaluation.resumed_from = resumed
        record.evaluated = True
        return model

    def _load_weights(self, model: torch.nn.Module, parent: TrialRecord, number: int | None) -> bool:
        """Load the weights ``parent`` (trial ``number``) trained into ``model``; False (train from
        scratch) if they are gone."""
        path = self.context.weights_path(parent.evaluation.weights)
        if path is None or not path.is_file():
            logger.warning("trial %s's weights are missing; its promotion trains from scratch", number)
            return False
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return True


class ZeroCostScore(Estimator):
    """``kind = "zero_cost"``: the score at initialisation (measured with the costs) is the judgement."""

    kind = "zero_cost"
    trains = False

    @classmethod
    def problems(cls, budget: Budget) -> list[StudyConfigProblem]:
        if budget.rungs > 1:
            return [StudyConfigProblem("rungs", "a zero_cost budget trains nothing, so it has no rungs",
                                       "remove rungs")]
        return []

    @classmethod
    def rung_steps(cls, budget: Budget) -> tuple[int, ...]:
        return (0,)

    @classmethod
    def describe(cls, budget: Budget) -> str:
        size = f", {budget.resolution} px" if budget.resolution else ""
        return f"zero-cost {budget.zero_cost_proxy} score at initialisation{size}"

    def evaluate(self, trial: optuna.Trial, arch: Arch, model: torch.nn.Module, record: TrialRecord,
                 parent: TrialRecord | None) -> torch.nn.Module:
        record.evaluated = True
        return model


class SupernetInheritance(ProxyTraining):
    """``kind = "supernet"``: rung 0 inherits the study supernet's weights; promotions train on."""

    kind = "supernet"

    def __init__(self, context: StudyContext, train: Trainer = train_proxy) -> None:
        super().__init__(context, train)
        self.supernet = StudySupernet(context.config, context.space, context.data, context.artifacts,
                                      context.device, host=context.costs.host)

    @classmethod
    def rung_steps(cls, budget: Budget) -> tuple[int, ...]:
        count, eta, top = budget.rungs, budget.reduction, budget.steps
        return (0, *(max(1, round(top / eta ** (count - 1 - r))) for r in range(1, count)))

    @classmethod
    def describe(cls, budget: Budget) -> str:
        return f"supernet ({budget.supernet_steps} steps), then {_training_line(cls.rung_steps(budget), budget)}"

    @classmethod
    def fingerprinted(cls, budget: dict[str, Any]) -> dict[str, Any]:
        return dict(budget)

    def evaluate(self, trial: optuna.Trial, arch: Arch, model: torch.nn.Module, record: TrialRecord,
                 parent: TrialRecord | None) -> torch.nn.Module:
        if record.rung > 0:
            return super().evaluate(trial, arch, model, record, parent)
        supernet = self.supernet.get()
        start = time.perf_counter()
        model = supernet.inherit(arch)
        budget = self.supernet.budget
        device = torch.device(next(model.parameters()).device)
        data, seed = self.context.data, self.context.config.seed
        recalibrate(model, data, budget, device, torch.Generator().manual_seed(seed))
        accuracy, loss = validate(model, data, budget, device)
        evaluation = record.evaluation
        evaluation.val_accuracy, evaluation.val_loss = accuracy, loss
        evaluation.train_seconds, evaluation.proxy_steps = time.perf_counter() - start, 0
        evaluation.supernet_steps = budget.steps
        record.evaluated = True
        return model


def _training_line(steps: tuple[int, ...], budget: Budget) -> str:
    """``rungs of 12, 48 steps, batch 32, 16 px, 50% of the data``: the training part of a title."""
    length = (f"{budget.epochs or 1:g} epochs" if budget.steps is None else
              f"rungs of {', '.join(map(str, steps))} steps" if len(steps) > 1 else f"{budget.steps} steps")
    size = f", {budget.resolution} px" if budget.resolution else ""
    batch = f", batch {budget.batch_size}" if budget.batch_size else ""
    share = f", {budget.data_fraction:.0%} of the data" if budget.data_fraction < 1 else ""
    return f"{length}{batch}{size}{share}"


ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Make ``cls`` the estimator of ``[budget] kind = cls.kind`` (usable as a class decorator)."""
    ESTIMATORS[cls.kind] = cls
    return cls


for _cls in (ProxyTraining, ZeroCostScore, SupernetInheritance):
    register_estimator(_cls)


def estimator_for(kind: str) -> type[Estimator]:
    """The estimator class of ``kind``; KeyError naming the kinds there are otherwise."""
    try:
        return ESTIMATORS[kind]
    except KeyError:
        raise KeyError(f"no estimator of kind {kind!r}; there are: {', '.join(ESTIMATORS)}") from None
