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
5. evaluates it: a zero-cost score (``budget.kind = "zero_cost"``), the
   accuracy it inherits from the study's supernet (``"supernet"``, rung 0;
   :mod:`fusionnas.search.shared_weights`), or proxy training to its rung's
   steps (a promotion resumes from the lower rung's weights;
   :mod:`fusionnas.search.rungs`), optionally only for the architectures whose zero-cost score
   reaches the top ``budget.prefilter`` share of the study so far (the rest
   are PRUNED, ``prefiltered`` set); trained weights go to the artifacts
   folder as ``<archid>-<fingerprint>.pt``;
6. measures a trained network whole as deployed, on every latency device this
   machine can run (``cpu``, ``cuda``): ``latency_ms@<device>`` becomes that
   measurement (source ``whole``; the table's figure stays as
   ``latency_estimate_ms@<device>``; see :mod:`fusionnas.search.costs`), and a
   latency limit on that device is reported on it (``feasible`` may turn false).

Everything lands in the trial's user attributes: ``arch`` (JSON), ``archid``,
``fingerprint``, every cost, ``latency_source@<device>`` (measured or estimated),
``latency_runtime@<device>``, ``feasible``,
``constraint_violations``, ``val_accuracy``, ``val_loss``, ``train_seconds``,
the zero-cost scores by proxy name, ``weights``, ``reused_from`` and, for a
failed trial, ``failure_reason``. Any error in a trial fails that trial only.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import optuna
import torch

from fusionnas.evaluators import iterate_batches
from fusionnas.evaluators.proxy import ProxyBudget, ProxyResult, planned_steps, recalibrate, train_proxy, validate
from fusionnas.evaluators.zero_cost import score as zero_cost_score
from fusionnas.interrupts import STOP
from fusionnas.metrics import attribute_of
from fusionnas.search.coordination import claim_archid, fail_stale_trials, study_lock
from fusionnas.search.costs import COST_KEYS, LATENCY_PREFIXES, CostEvaluator, one_thread
from fusionnas.search.progress import StepTicker
from fusionnas.search.rungs import Rungs, rung_of
from fusionnas.search.shared_weights import StudySupernet
from fusionnas.spaces import Arch

if TYPE_CHECKING:
    from fusionnas.evaluators.data import DataSplits
    from fusionnas.search.config import StudyConfig

__all__ = ["SearchObjective", "TrialFailed", "Trainer", "COST_KEYS", "EVALUATION_KEYS"]

logger = logging.getLogger(__name__)

# Results of the expensive evaluation, copied when an archid is reused.
EVALUATION_KEYS = ("val_accuracy", "val_loss", "train_seconds", "proxy_steps", "weights", "evaluated")
_SCORING_BATCH = 64  # images a zero-cost proxy sees


# ``train(model, data, budget, *, on_step)``: how an architecture is trained, the signature of
# :func:`~fusionnas.evaluators.proxy.train_proxy` (the default); ``on_step(step)`` is called
# after every optimiser step and may raise to stop.
Trainer = Callable[..., ProxyResult]


class TrialFailed(RuntimeError):
    """A trial gave no result; its ``failure_reason`` user attribute says why."""


class SearchObjective:
    """Callable ``trial -> objective values`` for ``study.optimize`` (see the module docstring).

    Args:
        config: the study.
        data: the dataset, loaded once per worker.
        artifacts: folder for weights and measured latency tables (None: keep nothing).
        device: where proxies train (``auto``: CUDA when available).
        duplicate_wait_s: how long to wait for another worker's RUNNING trial of
            the same archid before evaluating it here as well.
        train: how an architecture is trained (see :data:`Trainer`; tests pass a fake).
    """

    def __init__(self, config: StudyConfig, data: DataSplits, artifacts: Path | None = None, *,
                 device: str = "auto", duplicate_wait_s: float = 900.0, poll_s: float = 2.0,
                 train: Trainer = train_proxy) -> None:
        self.config = config
        self.space = config.search_space()
        self.data = data
        self.artifacts = Path(artifacts) if artifacts is not None else None
        self.device = device
        self.duplicate_wait_s = duplicate_wait_s
        self.poll_s = poll_s
        self.train = train
        self.current_trial: optuna.Trial | None = None
        self.costs = CostEvaluator(config, self.artifacts)
        self.rungs = Rungs.of(config.budget)
        self.supernet = StudySupernet(config, self.space, data, self.artifacts, device, host=self.costs.host)
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- the trial ---------------------------------------------------------------------

    def __call__(self, trial: optuna.Trial) -> list[float]:
        self.current_trial = trial
        try:
            with self.costs.host.working():  # a measurement by another worker waits for a pause point
                return self._run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            _try_set(trial, "failure_reason", "interrupted")
            raise
        except Exception as error:  # noqa: BLE001 (one trial's failure must not stop the study)
            reason = getattr(error, "reason", None) or type(error).__name__
            first = (str(error).strip().splitlines() or [""])[0]
            _try_set(trial, "failure_reason", f"{reason}: {first}" if first else reason)
            logger.info("trial %d failed: %s: %s", trial.number, reason, first)
            logger.debug("trial %d failed", trial.number, exc_info=True)
            raise TrialFailed(f"{reason}: {first}") from error
        finally:
            self.costs.save_tables()

    def _run(self, trial: optuna.Trial) -> list[float]:
        STOP.check()
        arch = self.space.sample(trial)
        fingerprint = self.config.fingerprint
        rung = rung_of(trial)
        earlier = self._earlier(trial, arch.archid, fingerprint, rung)
        trial.set_user_attr("arch", arch.to_json())
        trial.set_user_attr("archid", arch.archid)
        trial.set_user_attr("fingerprint", fingerprint)
        trial.set_user_attr("num_classes", self.data.num_classes)
        parent = self._parent(trial)
        attrs: dict[str, Any] = {}
        if earlier is not None:
            attrs = self._reusable(earlier, evaluation=True)
            attrs["reused_from"] = earlier.user_attrs.get("reused_from", earlier.number)
            logger.info("trial %d: archid %s reuses trial %d", trial.number, arch.archid, attrs["reused_from"])
        elif parent is not None:  # the same architecture: its costs and lower rungs' results stand
            attrs = self._reusable(parent, evaluation=False)
        model = None
        if not all(k in attrs for k in self.costs.names):
            STOP.check()
            model = self._build(arch)
            attrs.update(self.costs.costs(arch, model, attrs))
        violations = self._limits(attrs)
        evaluate = attrs["feasible"] and not attrs.get("evaluated")
        measure_whole = evaluate and self.config.budget.kind != "zero_cost" and bool(self.costs.measured_devices)
        # A latency limit on a device measured whole waits for that measurement (Optuna keeps the
        # first value of a constraint); the table's estimate only decides whether to train.
        later = {"latency_ms"} & set(violations) if (
            measure_whole and self.config.constraints.latency_device in self.costs.measured_devices) else set()
        _report(trial, violations, set(violations) - later)
        _set_all(trial, attrs)
        if evaluate:
            STOP.check()
            model = model or self._build(arch)
            try:
                evaluation = self._evaluate(trial, arch, model, parent)
                if measure_whole:
                    STOP.check()
                    evaluation.update(self.costs.whole_latencies(model, self.data.num_classes, attrs))
            except BaseException:
                _report(trial, violations, later)  # a pruned trial is ranked on the estimate
                raise
            _set_all(trial, evaluation)
            attrs.update(evaluation)
            if later:
                violations = self._limits(attrs)
                _set_all(trial, {k: attrs[k] for k in ("feasible", "constraint_violations")})
            _report(trial, violations, later)
        return self._values(attrs)

    def _build(self, arch: Arch) -> torch.nn.Module:
        """``arch``'s network with initial weights drawn from the study's seed, whatever ran before in this
        process (other trials, other studies), so that a seeded study repeats its accuracies."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return self.space.build(arch, num_classes=self.data.num_classes)

    def _limits(self, attrs: dict[str, Any]) -> dict[str, float]:
        """Every limit's excess (<= 0: within it); sets ``feasible`` and ``constraint_violations`` in ``attrs``."""
        violations = self.config.constraints.violations(self.costs.constraint_measures(attrs))
        attrs["feasible"] = all(v <= 0 for v in violations.values())
        attrs["constraint_violations"] = {k: v for k, v in violations.items() if v > 0}
        return violations

    # -- reuse -------------------------------------------------------------------------

    def _reusable(self, earlier: optuna.trial.FrozenTrial, *, evaluation: bool) -> dict[str, Any]:
        """What ``earlier`` measured of the same architecture: costs, lower rungs' results, and
        (``evaluation``) its own evaluation."""
        keys = (*COST_KEYS, *self._zero_cost_names(), *(EVALUATION_KEYS if evaluation else ()))
        prefixes = (*LATENCY_PREFIXES, "val_accuracy@rung")
        return {k: v for k, v in earlier.user_attrs.items() if k in keys or k.startswith(prefixes)}

    @staticmethod
    def _parent(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """The trial a promotion continues (:mod:`fusionnas.search.rungs`), or None."""
        number = trial.user_attrs.get("promoted_from")
        if number is None:
            return None
        return next((t for t in trial.study.get_trials(deepcopy=False) if t.number == number), None)

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

    # -- costs -------------------------------------------------------------------------

    def _zero_cost_names(self) -> list[str]:
        names = [o.proxy for o in self.config.objectives if o.metric == "zero_cost"]
        if self.config.budget.kind == "zero_cost" or self.config.budget.prefilter is not None:
            names.append(self.config.budget.zero_cost_proxy)
        return list(dict.fromkeys(str(n) for n in names))

    # -- evaluation --------------------------------------------------------------------

    def _evaluate(self, trial: optuna.Trial, arch: Arch, model: torch.nn.Module,
                  parent: optuna.trial.FrozenTrial | None) -> dict[str, Any]:
        budget = self.config.budget
        rung = rung_of(trial)
        result: dict[str, Any] = {}
        for proxy in self._zero_cost_names():
            if proxy in trial.user_attrs:  # a promotion: scored in rung 0
                continue
            x, y = self._scoring_batch()
            with one_thread():
                result[proxy] = float(zero_cost_score(proxy, model, x, y))
            STOP.check()
        if budget.kind == "zero_cost":
            result["evaluated"] = True
            return result
        if budget.prefilter is not None and rung == 0:
            self._prefilter(trial, result[budget.zero_cost_proxy])
        if budget.kind == "supernet" and rung == 0:
            model, inherited = self._inherit(arch)
            result.update(inherited)
        else:
            result.update(self._train(model, rung, parent))
        if self.rungs.count > 1:
            result[f"val_accuracy@rung{rung}"] = result["val_accuracy"]
        if self.artifacts is not None:
            folder = self.artifacts / "weights"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{arch.archid}-{self.config.fingerprint}{f'-rung{rung}' if rung else ''}.pt"
            tmp = folder / f".{name}.{trial.number}.tmp"
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
            tmp.replace(folder / name)
            result["weights"] = name
        return result

    def _train(self, model: torch.nn.Module, rung: int, parent: optuna.trial.FrozenTrial | None) -> dict[str, Any]:
        """Proxy-train ``model`` to its rung's steps, resuming from ``parent``'s weights when it has them."""
        steps, resumed = self.rungs.steps[rung], None
        if parent is not None and self._load_weights(model, parent):
            steps, resumed = steps - int(parent.user_attrs.get("proxy_steps", 0)), parent.number
        options = {**self.config.budget.proxy_options(), **({"steps": steps} if steps else {})}
        proxy_budget = ProxyBudget(**options, seed=self.config.seed, device=self.device)
        ticker = StepTicker(f"trial {self.current_trial.number}" if self.current_trial else "trial",
                            planned_steps(self.data, proxy_budget)[0])
        trained = self.train(model, self.data, proxy_budget,
                             on_step=lambda step: (STOP.check(), self.costs.host.pause_point(), ticker(step)))
        total = trained.steps + (int(parent.user_attrs.get("proxy_steps", 0)) if resumed is not None else 0)
        result = dict(val_accuracy=trained.val_accuracy, val_loss=trained.val_loss,
                      train_seconds=trained.train_seconds, proxy_steps=total, evaluated=True)
        return {**result, "resumed_from": resumed} if self.rungs.count > 1 else result

    def _inherit(self, arch: Arch) -> tuple[torch.nn.Module, dict[str, Any]]:
        """``arch`` with the study supernet's weights and recalibrated batch norm, and its accuracy."""
        supernet = self.supernet.get()
        start = time.perf_counter()
        model = supernet.inherit(arch)
        budget = self.supernet.budget
        device = torch.device(next(model.parameters()).device)
        recalibrate(model, self.data, budget, device, torch.Generator().manual_seed(self.config.seed))
        accuracy, loss = validate(model, self.data, budget, device)
        return model, dict(val_accuracy=accuracy, val_loss=loss, train_seconds=time.perf_counter() - start,
                           proxy_steps=0, evaluated=True, supernet_steps=budget.steps)

    def _load_weights(self, model: torch.nn.Module, parent: optuna.trial.FrozenTrial) -> bool:
        """Load the weights ``parent`` trained into ``model``; False (train from scratch) if they are gone."""
        name = parent.user_attrs.get("weights")
        path = self.artifacts / "weights" / name if self.artifacts is not None and name else None
        if path is None or not path.is_file():
            logger.warning("trial %d's weights are missing; its promotion trains from scratch", parent.number)
            return False
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return True

    def _prefilter(self, trial: optuna.Trial, value: float) -> None:
        """Prune unless ``value`` is in the top ``budget.prefilter`` share of earlier scores.

        Until four earlier trials have a score, every architecture is trained.
        """
        budget = self.config.budget
        key = budget.zero_cost_proxy
        scores = sorted(t.user_attrs[key] for t in trial.study.get_trials(deepcopy=False)
                        if t.number != trial.number and math.isfinite(t.user_attrs.get(key, math.nan)))
        trial.set_user_attr(key, value)
        if len(scores) < 4:
            return
        threshold = scores[min(len(scores) - 1, int((1 - budget.prefilter) * len(scores)))]
        if value < threshold:
            trial.set_user_attr("prefiltered", True)
            raise optuna.TrialPruned(f"{key} {value:.4g} below the top-{budget.prefilter:g} threshold "
                                     f"{threshold:.4g}")

    def _scoring_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One seeded, normalised training batch at the budget's resolution."""
        if self._batch is None:
            generator = torch.Generator().manual_seed(self.config.seed)
            size = min(_SCORING_BATCH, len(self.data.x_train))
            self._batch = next(iterate_batches(
                self.data.x_train, self.data.y_train, size, mean=self.data.mean, std=self.data.std,
                shuffle=True, generator=generator, resolution=self.config.budget.resolution))
        return self._batch

    def _values(self, attrs: dict[str, Any]) -> list[float]:
        """Objective values in study order; what was not measured gets its direction's worst."""
        values = []
        for objective in self.config.objectives:
            value = attrs.get(attribute_of(objective.metric, objective.device, objective.proxy))
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


def _set_all(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def _try_set(trial: optuna.Trial, key: str, value: Any) -> None:
    """Set a user attribute while a trial is failing; a storage error is only logged."""
    try:
        trial.set_user_attr(key, value)
    except Exception as error:  # noqa: BLE001
        logger.warning("could not record %s on trial %d: %s", key, trial.number, error)
