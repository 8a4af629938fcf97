"""Study files: the TOML schema of one search, validated with one message per problem.

A study file says what to search (``space``), on which data (``[dataset]``),
for what (``[[objectives]]``), under which hard limits (``[constraints]``), how
cheaply each architecture is judged (``[budget]``) and how Optuna proposes the
next one (``[sampler]``)::

    name = "quickstart"          # default: the file's stem
    space = "mobilenetv2-cifar"  # or a [space] table, below
    n_trials = 16                # at least one of n_trials, timeout_s
    timeout_s = 540
    seed = 0                     # also the sampler's seed unless [sampler] sets one
    enqueue = ["baseline"]       # space presets evaluated before sampling
    plugins = ["my_ops"]         # optional: modules (beside the file or on sys.path) that register operators

    [dataset]                    # or: dataset = "digits"
    name = "digits"

    [space]                      # instead of space = "...": search a subset of the space
    name = "mobilenetv2-cifar"
    fusions = ["conv", "wht"]    # each list optional (default: all the space offers) and a
    depthwise = ["conv"]         # subset of space.restrictions(); also expand_ratios = [3, 4, 6],
    kernels = [3]                # widths = [0.75, 1.0]

    [[objectives]]
    metric = "accuracy"          # direction defaults to the natural one

    [[objectives]]
    metric = "latency"
    device = "cpu"
    runtime = "onnxruntime"      # the default on cpu; "torch" times eager PyTorch, "openvino" OpenVINO,
                                 # "openvino-native" OpenVINO running each transform as one fusionnas kernel
    batch_size = 8               # optional (cpu, cuda): images per run; default 1

    [constraints]
    max_latency_ms = 12.0
    latency_device = "jetson-nano"
    latency_runtime = "onnxruntime"  # optional, as runtime above

    [budget]
    steps = 400                  # the top rung's
    rungs = 3                    # optional: 25, 100, 400 steps; each rung promotes its best quarter
    reduction = 4

    [latency_tables]             # optional: tables profiled on the device (`fusionnas profile`)
    jetson-nano = "nano.json"    # else Jetson latency is an estimate, cpu/cuda measured here

A ``[space]`` table's architectures are the space's (same name and archids:
``export``, ``train``, ``pareto`` and latency tables use the space itself);
only what the sampler offers shrinks. Its lists count in the fingerprint, and
presets in ``enqueue`` must lie inside them. :meth:`StudyConfig.search_space`
is the space a study samples from.

Every problem in a file is reported, each on its own line as
``<file>: <field>: <problem>; <fix>``. Space, dataset, device and preset names
are checked against the registries of ``fusionnas.spaces`` and
``fusionnas.evaluators`` (or against the ``known_*`` lists passed in).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusionnas.metrics import ZERO_COST_PROXIES
from fusionnas.runtime_names import default_runtime
from fusionnas.evaluators.training_options import training_option_problems
from fusionnas.search.estimators import ESTIMATORS, Estimator, estimator_for
from fusionnas.search.problems import StudyConfigError, StudyConfigProblem, choice, positive, raise_if, study_key
from fusionnas.search.sampler_config import SAMPLERS, SamplerConfig
from fusionnas.search.space_config import SpaceRestriction
from fusionnas.search.study_sections import METRICS, Constraints, DatasetConfig, Objective

if TYPE_CHECKING:
    import optuna

    from fusionnas.spaces import Space

__all__ = [
    "METRICS", "ZERO_COST_PROXIES", "SAMPLERS", "StudyConfigProblem", "StudyConfigError",
    "DatasetConfig", "Objective", "Constraints", "Budget", "SamplerConfig", "SpaceRestriction", "StudyConfig",
]

logger = logging.getLogger(__name__)

BUDGET_KINDS = tuple(ESTIMATORS)  # as registered when the study file is read


@dataclass(frozen=True)
class Budget:
    """How cheaply one architecture is judged: short proxy training or a zero-cost score.

    Training options left None keep :class:`fusionnas.evaluators.proxy.ProxyBudget`'s
    defaults; set ``epochs`` or ``steps``, not both (neither: one epoch).
    """

    kind: str = study_key('"proxy"', "proxy", choices=BUDGET_KINDS, doc="proxy: train briefly; zero_cost: "
                          "score at initialisation, no training; supernet: inherit the weights of the study's "
                          "supernet (rung 0; promotions train on from them)")
    epochs: float | None = study_key('1', None, doc="training epochs per trial (fractions allowed); not with "
                                      "steps; neither: one epoch")
    steps: int | None = study_key('50', None, doc="optimiser steps per trial (with rungs: the top rung's)")
    data_fraction: float = study_key('0.5', 1.0, doc="share of the training split used (stratified, seeded)")
    batch_size: int | None = study_key('64', None, doc="training batch")
    lr: float | None = study_key('0.05', None, doc="peak learning rate (warm-up, then cosine)")
    resolution: int | None = study_key('32', None, doc="input side while training and scoring; default: the "
                                        "dataset's own")
    prefilter: float | None = study_key('0.5', None, doc="train only the architectures whose zero-cost score "
                                        "is in this top share of the study so far (the rest are pruned); "
                                        "default: train all")
    zero_cost_proxy: str = study_key('"synflow"', "synflow", choices=ZERO_COST_PROXIES, doc="the score of "
                                     "kind = \"zero_cost\" and of prefilter")
    bn_recalibration: int = study_key('8', 8, doc="batch-norm statistics recomputed on so many training "
                                      "batches after training (0: off; studies stored before it existed "
                                      "resume with 0)")
    rungs: int = study_key('3', 1, doc="multi-fidelity: rung r trains steps / reduction ** (rungs - 1 - r) "
                           "steps; needs steps")
    reduction: int = study_key('4', 3, doc="each rung promotes its best 1 / reduction to the next")
    supernet_steps: int = study_key('600', 600, doc="kind = \"supernet\": its training steps, once per study")

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        if self.kind not in ESTIMATORS:
            problems.append(choice("kind", self.kind, tuple(ESTIMATORS), "budget kind"))
        problems += [StudyConfigProblem(*problem) for problem in training_option_problems(
            self.proxy_options(), {"bn_recalibration_batches": "bn_recalibration"})]  # their rules, said once
        if self.rungs < 1:
            problems.append(StudyConfigProblem("rungs", f"must be >= 1, got {self.rungs}",
                                               "write rungs = 3, or 1 for no promotions"))
        if self.reduction < 2:
            problems.append(StudyConfigProblem("reduction", f"must be >= 2, got {self.reduction}",
                                               "write reduction = 3 (each rung keeps its best third)"))
        if self.kind in ESTIMATORS:
            problems += self.estimator.problems(self)
        positive(problems, "supernet_steps", self.supernet_steps, "write supernet_steps = 600")
        if self.prefilter is not None and not 0 < self.prefilter < 1:
            problems.append(StudyConfigProblem(
                "prefilter", f"must lie in (0, 1), got {self.prefilter!r}",
                "write prefilter = 0.5 to train the top half, or remove it to skip"))
        if self.zero_cost_proxy not in ZERO_COST_PROXIES:
            problems.append(choice(
                "zero_cost_proxy", self.zero_cost_proxy, ZERO_COST_PROXIES, "zero-cost proxy"))
        raise_if(problems)

    @property
    def estimator(self) -> type[Estimator]:
        """The class that judges architectures under this budget (:mod:`fusionnas.search.estimators`)."""
        return estimator_for(self.kind)

    def describe(self) -> str:
        """One line for titles: ``proxy training, rungs of 12, 48 steps, batch 32, 16 px``."""
        return self.estimator.describe(self)

    def proxy_options(self) -> dict[str, Any]:
        """The training options that are set, as ``ProxyBudget(**options)`` keywords."""
        keys = ("epochs", "steps", "data_fraction", "batch_size", "lr", "resolution")
        options = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        return {**options, "bn_recalibration_batches": self.bn_recalibration}


@dataclass(frozen=True)
class StudyConfig:
    """One search study, as read from a study file (see the module docstring)."""

    name: str = study_key('"my-study"', doc="the study's name in its storage; default: the file's stem")
    # an Optuna storage URL; SQLite paths are absolute once read
    storage: str = study_key('"sqlite:///study.db"', doc="Optuna storage: sqlite:///x.db, journal:///x.log, "
                             "postgresql+psycopg2://user@host/db, or a path (relative to the study file; .log or "
                             ".journal: a journal file); default: `<file stem>.db` beside the file")
    space: str = study_key('"mobilenetv2-cifar"', doc="the search space, or a [space] table that searches part "
                           "of it")
    dataset: DatasetConfig = study_key('"digits"', doc="a dataset name, or the [dataset] table")
    objectives: tuple[Objective, ...] = study_key('[[objectives]] metric = "accuracy"',
                                                  doc="one [[objectives]] table per objective, at least one")
    constraints: Constraints = study_key("", factory=Constraints, doc="the [constraints] table: hard limits")
    budget: Budget = study_key("", factory=Budget, doc="the [budget] table: how each architecture is judged")
    sampler: SamplerConfig = study_key("", factory=SamplerConfig, doc="the [sampler] table: what proposes "
                                       "architectures")
    n_trials: int | None = study_key('20', None, doc="the study's total trials over all workers, promotions "
                                      "included (set n_trials, timeout_s or both)")
    timeout_s: float | None = study_key('3600', None, doc="no new trial after so many seconds of a run")
    seed: int = study_key('0', 0, doc="seeds the data splits, weight initialisation, training and (unless "
                          "[sampler] sets seed) the sampler")
    enqueue: tuple[str, ...] = study_key('["baseline"]', (), doc="presets of the space evaluated before "
                                         "sampling")
    path: Path | None = None  # the study file, if any
    latency_tables: Mapping[str, str] = study_key("", factory=dict, doc="the [latency_tables] table: device = "
                                                  "table file (`fusionnas profile`), relative to the study file")
    plugins: tuple[str, ...] = study_key('["my_ops"]', (), doc="modules (beside the file or on sys.path) "
                                         "imported when the file is read, to register operators")
    # the lists of a [space] table; None: all of the space
    space_restriction: SpaceRestriction | None = None

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        if self.space_restriction is not None:
            if self.space_restriction.name != self.space:
                problems.append(StudyConfigProblem(
                    "space", f"{self.space!r} is not the restricted space {self.space_restriction.name!r}",
                    "restrict the study's own space"))
            else:
                problems += self.space_restriction.enqueue_problems(self.enqueue)
        for key in ("name", "storage", "space"):
            if not getattr(self, key):
                problems.append(StudyConfigProblem(key, "is empty", f"give {key} a value"))
        if not self.objectives:
            problems.append(StudyConfigProblem(
                "objectives", "no objective", 'add [[objectives]] with metric = "accuracy"'))
        names = [o.name for o in self.objectives]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(StudyConfigProblem(
                    f"objectives[{i}]", f"repeats objective {name!r}", "remove the duplicate"))
            if name == "accuracy" and not self.budget.estimator.trains:
                problems.append(StudyConfigProblem(
                    f"objectives[{i}].metric", "accuracy needs training but budget.kind is "
                    "'zero_cost'", 'use metric = "zero_cost" or budget.kind = "proxy"'))
        positive(problems, "n_trials", self.n_trials, "write n_trials = 20")
        positive(problems, "timeout_s", self.timeout_s, "write timeout_s = 3600")
        if self.n_trials is None and self.timeout_s is None:
            problems.append(StudyConfigProblem(
                "n_trials", "neither n_trials nor timeout_s is set, so the search never ends",
                "add n_trials = 20 or timeout_s = 3600"))
        if not 0 <= self.seed < 2**32:
            problems.append(StudyConfigProblem(
                "seed", f"must lie in [0, 2**32), got {self.seed}", "write seed = 0"))
        for i, preset in enumerate(self.enqueue):
            if preset in self.enqueue[:i]:
                problems.append(StudyConfigProblem(
                    f"enqueue[{i}]", f"repeats preset {preset!r}", "remove the duplicate"))
        for device, table in self.latency_tables.items():
            if not isinstance(table, str) or not table:
                problems.append(StudyConfigProblem(
                    f"latency_tables.{device}", f"expected a file name, got {table!r}",
                    f'write {device} = "{device}.json"'))
        runtimes: dict[str, str] = {}
        latency = [(f"objectives[{i}].runtime", o.device, o.runtime) for i, o in enumerate(self.objectives)
                   if o.device is not None]
        latency.append(("constraints.latency_runtime", self.constraints.latency_device,
                        self.constraints.latency_runtime))
        for key, device, runtime in latency:
            if device is None or runtime is None:
                continue
            if runtimes.setdefault(device, runtime) != runtime:
                problems.append(StudyConfigProblem(
                    key, f"{device} latency is measured in {runtimes[device]!r} elsewhere in the study, "
                    f"not {runtime!r}", f'use one runtime per device: runtime = "{runtimes[device]}"'))
        if self.n_trials is not None and 0 < self.n_trials < len(self.enqueue):
            problems.append(StudyConfigProblem(
                "n_trials", f"{self.n_trials} is fewer than the {len(self.enqueue)} enqueued "
                "presets", f"write n_trials = {len(self.enqueue)} or more"))
        raise_if(problems)

    @property
    def directions(self) -> list[str]:
        """Objective directions, for ``optuna.create_study(directions=...)``."""
        return [str(o.direction) for o in self.objectives]

    @property
    def latency_runtimes(self) -> dict[str, str]:
        """Device -> runtime of every latency the study measures (objectives and the limit)."""
        runtimes = {str(o.device): str(o.runtime) for o in self.objectives if o.device is not None}
        device = self.constraints.latency_device
        if device is not None:
            runtimes.setdefault(device, self.constraints.latency_runtime or default_runtime(device))
        return runtimes

    @property
    def latency_batch_sizes(self) -> dict[str, int]:
        """Device -> images per run of its latency (an objective's ``batch_size``, else 1)."""
        return {device: next((int(o.batch_size) for o in self.objectives
                              if o.device == device and o.batch_size), 1)
                for device in self.latency_runtimes}

    @property
    def metric_names(self) -> list[str]:
        """Objective display names, for ``study.set_metric_names``."""
        return [o.name for o in self.objectives]

    def search_space(self) -> Space:
        """The space the study samples from: ``space``, restricted by the ``[space]`` lists if any."""
        from fusionnas.spaces import get_space

        return get_space(self.space) if self.space_restriction is None else self.space_restriction.space()

    def make_sampler(
        self, constraints_func: Callable[[optuna.trial.FrozenTrial], Sequence[float]] | None = None
    ) -> optuna.samplers.BaseSampler:
        """The study's Optuna sampler (see :meth:`SamplerConfig.make_sampler`)."""
        return self.sampler.make_sampler(constraints_func)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the whole config (for the study's user attrs)."""
        data = dataclasses.asdict(self)
        data["path"] = str(self.path) if self.path else None
        data["latency_tables"] = dict(self.latency_tables)
        restriction = self.space_restriction
        data["space_restriction"] = None if restriction is None else {
            **{key: list(values) for key, values in restriction.subsets.items()},
            **({"network_defaults": True} if restriction.network_defaults else {})}
        return data

    @property
    def fingerprint(self) -> str:
        """Short hash of what defines the search (space and its restriction, dataset, objectives, budget).

        Storage, sampler, trial counts and constraints may change when a study resumes;
        latency tables and a ``[space]`` table's lists count only once set, a latency's
        runtime unless it is ``torch``, rungs when there is more than one, supernet
        steps with a supernet, and batch-norm recalibration unless it is 0 (so studies
        stored before any of these existed keep their fingerprint: one whose latency
        meant torch eager resumes only with ``runtime = "torch"``, one trained without
        recalibration with ``bn_recalibration = 0``).
        """
        data = self.to_dict()
        if data["budget"]["bn_recalibration"] == 0:
            del data["budget"]["bn_recalibration"]
        if data["budget"]["rungs"] == 1:
            del data["budget"]["rungs"], data["budget"]["reduction"]
        data["budget"] = self.budget.estimator.fingerprinted(data["budget"])
        for objective in data["objectives"]:
            if objective.get("runtime") in (None, "torch"):
                del objective["runtime"]
            if objective.get("batch_size") is None:
                del objective["batch_size"]
        keys = ("space", "dataset", "objectives", "budget")
        keys += ("latency_tables",) if self.latency_tables else ()
        keys += ("space_restriction",) if self.space_restriction is not None else ()
        canonical = json.dumps({k: data[k] for k in keys}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def check_feasible(
        self, measured: Mapping[str, float], what: str = "the cheapest architecture of the space"
    ) -> None:
        """Raise StudyConfigError naming each constraint that the ``measured`` costs break.

        The runner calls it with the costs of the space's cheapest architecture,
        so an impossible study stops before its first trial.
        """
        excess = self.constraints.violations(measured)
        problems = [
            StudyConfigProblem(
                f"constraints.max_{key}", f"{what} needs {measured[key]:.4g} > limit {limit:.4g}",
                f"raise max_{key} to at least {measured[key]:.4g} or choose a smaller space")
            for key, limit in self.constraints.limits.items() if excess[key] > 0
        ]
        if problems:
            raise StudyConfigError(problems, self.path)

