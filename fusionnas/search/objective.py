"""The trial function: sample an architecture, cost it, check the limits, then evaluate it.

For every trial :class:`SearchObjective`

1. draws an :class:`~fusionnas.spaces.Arch` with ``space.sample(trial)``;
2. reuses what an earlier trial of the study measured for the same archid
   (the study's fingerprint fixes the budget); a trial of the same archid
   still RUNNING in another worker is waited for (see :meth:`_earlier`);
3. measures the cheap costs: ``params``, ``flops`` (fvcore, at the space's
   input size), ``memory_mb`` (peak activations, batch 1) and
   ``latency_ms@<device>`` for every device an objective or limit names,
   from the study's latency table: the cheap estimate that decides limits;
4. reports each limit with ``trial.set_constraint(name, measured - limit)``
   (<= 0: feasible). An infeasible architecture is never trained: the trial
   completes with its measured costs and the worst value of every objective
   it did not measure (accuracy 0, a zero-cost score -inf), which Optuna's
   constrained TPE and NSGA-II rank behind every feasible trial;
5. evaluates it with the budget's :class:`~fusionnas.search.estimators.Estimator`:
   a zero-cost score (``budget.kind = "zero_cost"``), the accuracy it inherits
   from the study's supernet (``"supernet"``, rung 0), or proxy training to its
   rung's steps (a promotion resumes from the lower rung's weights;
   :mod:`fusionnas.search.rungs`), optionally only for the architectures whose zero-cost score
   reaches the top ``budget.prefilter`` share of the study so far (the rest
   are PRUNED, ``prefiltered`` set); trained weights go to the artifacts
   folder as ``<archid>-<fingerprint>.pt``;
6. measures a trained network whole as deployed, on every latency device this
   machine can run (``cpu``, ``cuda``): ``latency_ms@<device>`` becomes that
   measurement (source ``whole``; the table's figure stays as
   ``latency_estimate_ms@<device>``; see :mod:`fusionnas.search.costs`), and a
   latency limit on that device is reported on it (``feasible`` may turn false).

Everything lands in the trial's :class:`~fusionnas.trial_record.TrialRecord`:
the architecture and its archid, every cost, each latency with its source
and runtime, the limits' verdict, the evaluation, the zero-cost scores, the
weights' file, the trial it reused and, for a failed trial, why. Any error in
a trial fails that trial only.
"""
from __future__ import annotations

import logging
import math
import time

import optuna
import torch

from fusionnas.evaluators import iterate_batches
from fusionnas.evaluators.proxy import train_proxy
from fusionnas.evaluators.training import atomic_save
from fusionnas.evaluators.zero_cost import score as zero_cost_score
from fusionnas.interrupts import STOP
from fusionnas.search.context import StudyContext
from fusionnas.search.coordination import claim_archid, fail_stale_trials, study_lock
from fusionnas.search.costs import CostEvaluator, one_thread
from fusionnas.search.estimators import Estimator, Trainer
from fusionnas.spaces import Arch
from fusionnas.trial_record import INTERRUPTED, TrialRecord

__all__ = ["SearchObjective", "TrialFailed", "Trainer"]

logger = logging.getLogger(__name__)

_SCORING_BATCH = 64  # images a zero-cost proxy sees


class TrialFailed(RuntimeError):
    """A trial gave no result; its record's ``failure_reason`` says why."""


class SearchObjective:
    """Callable ``trial -> objective values`` for ``study.optimize`` (see the module docstring).

    Args:
        context: the study run (:meth:`StudyContext.build`).
        duplicate_wait_s: how long to wait for another worker's RUNNING trial of
            the same archid before evaluating it here as well.
        poll_s: how often to look at that trial meanwhile.
        train: how an architecture is trained (see :data:`Trainer`; tests pass a fake).
    """

    def __init__(self, context: StudyContext, *, duplicate_wait_s: float = 900.0, poll_s: float = 2.0,
                 train: Trainer = train_proxy) -> None:
        self.context = context
        self.duplicate_wait_s = duplicate_wait_s
        self.poll_s = poll_s
        self.estimator: Estimator = context.config.budget.estimator(context, train)
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def costs(self) -> CostEvaluator:
        """The cost evaluator of the study run."""
        return self.context.costs

    # -- the trial ---------------------------------------------------------------------

    def __call__(self, trial: optuna.Trial) -> list[float]:
        try:
            with self.costs.host.working():  # a measurement by another worker waits for a pause point
                return self._run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            _record_failure(trial, INTERRUPTED)
            raise
        except Exception as error:  # noqa: BLE001 (one trial's failure must not stop the study)
            reason = getattr(error, "reason", None) or type(error).__name__
            first = (str(error).strip().splitlines() or [""])[0]
            _record_failure(trial, f"{reason}: {first}" if first else reason)
            logger.info("trial %d failed: %s: %s", trial.number, reason, first)
            logger.debug("trial %d failed", trial.number, exc_info=True)
            raise TrialFailed(f"{reason}: {first}") from error
        finally:
            self.costs.save_tables()

    def _run(self, trial: optuna.Trial) -> list[float]:
        STOP.check()
        context = self.context
        arch = context.space.sample(trial)
        record = TrialRecord.read(trial)  # a queued trial holds its rung, parent or preset
        earlier = self._earlier(trial, arch.archid, context.config.fingerprint, record.rung)
        record.arch, record.archid = arch.to_json(), arch.archid
        record.fingerprint, record.num_classes = context.config.fingerprint, context.data.num_classes
        record.write(trial)
        parent = self._parent(trial, record)
        if earlier is not None:
            first = TrialRecord.read(earlier)
            record.reuse(first, evaluation=True)
            record.reused_from = first.reused_from if first.reused_from is not None else earlier.number
            logger.info("trial %d: archid %s reuses trial %d", trial.number, arch.archid, record.reused_from)
        elif parent is not None:  # the same architecture: its costs and lower rungs' results stand
            record.reuse(parent, evaluation=False)
        model = None
        if not self.costs.complete(record):
            STOP.check()
            model = self._build(arch)
            self.costs.measure(arch, model, record)
        violations = self._limits(record)
        evaluate = record.feasible and not record.evaluated
        measure_whole = evaluate and self.estimator.trains and bool(self.costs.measured_devices)
        # A latency limit on a device measured whole waits for that measurement (Optuna keeps the
        # first value of a constraint); the table's estimate only decides whether to train.
        later = {"latency_ms"} & set(violations) if (
            measure_whole and context.config.constraints.latency_device in self.costs.measured_devices) else set()
        _report(trial, violations, set(violations) - later)
        record.write(trial)
        if evaluate:
            STOP.check()
            model = model or self._build(arch)
            try:
                model = self._evaluate(trial, arch, model, record, parent)
                if measure_whole:
                    STOP.check()
                    self.costs.measure_whole(model, context.data.num_classes, record)
            except BaseException:
                _report(trial, violations, later)  # a pruned trial is ranked on the estimate
                raise
            if later:
                violations = self._limits(record)
            record.write(trial)
            _report(trial, violations, later)
        return self._values(record)

    def _build(self, arch: Arch) -> torch.nn.Module:
        """``arch``'s network with initial weights drawn from the study's seed, whatever ran before in this
        process (other trials, other studies), so that a seeded study repeats its accuracies."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.config.seed)
            return self.context.space.build(arch, num_classes=self.context.data.num_classes)

    def _limits(self, record: TrialRecord) -> dict[str, float]:
        """Every limit's excess (<= 0: within it); sets the record's verdict."""
        violations = self.context.config.constraints.violations(self.costs.constraint_measures(record))
        record.feasible = all(v <= 0 for v in violations.values())
        record.constraint_violations = {k: v for k, v in violations.items() if v > 0}
        return violations

    # -- reuse -------------------------------------------------------------------------

    @staticmethod
    def _parent(trial: optuna.Trial, record: TrialRecord) -> TrialRecord | None:
        """The record of the trial a promotion continues (:mod:`fusionnas.search.rungs`), or None."""
        if record.promoted_from is None:
            return None
        parent = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == record.promoted_from), None)
        return TrialRecord.read(parent) if parent is not None else None

    def _earlier(self, trial: optuna.Trial, archid: str, fingerprint: str,
                 rung: int = 0) -> optuna.trial.FrozenTrial | None:
        """The earlier trial of ``archid`` whose results ``trial`` reuses, or None to evaluate it here.

        :func:`~fusionnas.search.coordination.claim_archid` decides atomically:
        an evaluated trial is reused; a trial of another worker that is
        evaluating it is waited for, polling every ``poll_s`` seconds (and
        failing stale trials, so that a dead worker's claim ends) for at most
        ``duplicate_wait_s``, after which it is evaluated here too. A trial
        that only measured the costs (infeasible then: limits may have changed
        since) or was prefiltered lends those and ``trial`` evaluates.
        """
        deadline = time.monotonic() + self.duplicate_wait_s
        while True:
            late = time.monotonic() > deadline
            claim = claim_archid(trial, archid, fingerprint, rung=rung, force=late)
            if claim.wait_for is None:
                return claim.reuse or claim.costed
            logger.info("trial %d: archid %s is being evaluated by trial %d; waiting", trial.number, archid,
                        claim.wait_for.number)
            with self.costs.host.paused():
                _sleep(self.poll_s)
            with study_lock(trial.study):
                fail_stale_trials(trial.study)
            if time.monotonic() > deadline:
                logger.warning("trial %d: trial %d of archid %s still runs after %.0f s; evaluating here too",
                               trial.number, claim.wait_for.number, archid, self.duplicate_wait_s)

    # -- evaluation --------------------------------------------------------------------

    def _zero_cost_names(self) -> list[str]:
        """The zero-cost scores the study records: its objectives' and its budget's."""
        config = self.context.config
        names = [o.proxy for o in config.objectives if o.proxy is not None]
        if not self.estimator.trains or config.budget.prefilter is not None:
            names.append(config.budget.zero_cost_proxy)
        return list(dict.fromkeys(str(n) for n in names))

    def _evaluate(self, trial: optuna.Trial, arch: Arch, model: torch.nn.Module, record: TrialRecord,
                  parent: TrialRecord | None) -> torch.nn.Module:
        """Score, prefilter and judge ``arch`` into ``record``; keep its weights; returns the judged network."""
        for proxy in self._zero_cost_names():
            if proxy in record.scores:  # a promotion: scored in rung 0
                continue
            x, y = self._scoring_batch()
            with one_thread():
                record.scores[proxy] = float(zero_cost_score(proxy, model, x, y))
            STOP.check()
        if not self.estimator.trains:
            return self.estimator.evaluate(trial, arch, model, record, parent)
        if self.context.config.budget.prefilter is not None and record.rung == 0:
            self._prefilter(trial, record)
        model = self.estimator.evaluate(trial, arch, model, record, parent)
        if self.context.rungs.count > 1:
            record.rung_accuracies[record.rung] = record.evaluation.val_accuracy
        if self.context.artifacts is not None:
            name = self.context.weights_name(record)
            path = self.context.weights_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
            record.evaluation.weights = name
        return model

    def _prefilter(self, trial: optuna.Trial, record: TrialRecord) -> None:
        """Prune unless the record's score is in the top ``budget.prefilter`` share of earlier scores.

        Until four earlier trials have a score, every architecture is trained.
        """
        budget = self.context.config.budget
        key = budget.zero_cost_proxy
        value = record.scores[key]
        earlier = (TrialRecord.read(t).scores.get(key, math.nan) for t in trial.study.get_trials(deepcopy=False)
                   if t.number != trial.number)
        scores = sorted(v for v in earlier if math.isfinite(v))
        record.write(trial)
        if len(scores) < 4:
            return
        threshold = scores[min(len(scores) - 1, int((1 - budget.prefilter) * len(scores)))]
        if value < threshold:
            record.prefiltered = True
            record.write(trial)
            raise optuna.TrialPruned(f"{key} {value:.4g} below the top-{budget.prefilter:g} threshold "
                                     f"{threshold:.4g}")

    def _scoring_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One seeded, normalised training batch at the budget's resolution."""
        if self._batch is None:
            data, config = self.context.data, self.context.config
            generator = torch.Generator().manual_seed(config.seed)
            size = min(_SCORING_BATCH, len(data.x_train))
            self._batch = next(iterate_batches(
                data.x_train, data.y_train, size, mean=data.mean, std=data.std,
                shuffle=True, generator=generator, resolution=config.budget.resolution))
        return self._batch

    def _values(self, record: TrialRecord) -> list[float]:
        """Objective values in study order; what was not measured gets its direction's worst."""
        values = []
        for objective in self.context.config.objectives:
            value = record.value(objective.name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                if objective.metric == "accuracy" and objective.direction == "maximize":
                    value = 0.0
                else:
                    value = -math.inf if objective.direction == "maximize" else math.inf
            values.append(float(value))
        return values


def _sleep(seconds: float) -> None:
    """Sleep, in slices short enough that a requested stop is honoured within 0.1 s."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.1, left))
        STOP.check()


def _report(trial: optuna.Trial, violations: dict[str, float], keys: set[str]) -> None:
    """``trial.set_constraint`` for the limits ``keys`` of ``violations``."""
    for key in sorted(keys):
        trial.set_constraint(key, violations[key])


def _record_failure(trial: optuna.Trial, reason: str) -> None:
    """Record why a trial fails; a storage error here is only logged."""
    try:
        TrialRecord(failure_reason=reason).write(trial)
    except Exception as error:  # noqa: BLE001
        logger.warning("could not record the failure of trial %d: %s", trial.number, error)
