"""Study files: the TOML schema of one search, validated with one message per problem.

A study file says what to search (``space``), on which data (``[dataset]``),
for what (``[[objectives]]``), under which hard limits (``[constraints]``), how
cheaply each architecture is judged (``[budget]``) and how Optuna proposes the
next one (``[sampler]``)::

    name = "quickstart"          # default: the file's stem
    space = "mobilenetv2-cifar"
    n_trials = 16                # at least one of n_trials, timeout_s
    timeout_s = 540
    seed = 0                     # also the sampler's seed unless [sampler] sets one
    enqueue = ["baseline"]       # space presets evaluated before sampling

    [dataset]                    # or: dataset = "digits"
    name = "digits"

    [[objectives]]
    metric = "accuracy"          # direction defaults to the natural one

    [[objectives]]
    metric = "latency"
    device = "jetson-nano"

    [constraints]
    max_latency_ms = 12.0
    latency_device = "jetson-nano"

    [budget]
    steps = 40

Every problem in a file is reported, each on its own line as
``<file>: <field>: <problem>; <fix>``. Space, dataset, device and preset names
are checked against the registries of ``fusionnas.spaces`` and
``fusionnas.evaluators`` (or against the ``known_*`` lists passed in).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import json
import logging
import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = [
    "METRICS", "ZERO_COST_PROXIES", "SAMPLERS", "StudyConfigProblem", "StudyConfigError",
    "DatasetConfig", "Objective", "Constraints", "Budget", "SamplerConfig", "StudyConfig",
    "load_study_config", "parse_study_config",
]

logger = logging.getLogger(__name__)

METRICS = ("accuracy", "flops", "params", "latency", "memory", "zero_cost")
ZERO_COST_PROXIES = ("synflow", "naswot", "grad_norm")
SAMPLERS = ("tpe", "nsga2", "random")
DIRECTIONS = ("maximize", "minimize")
BUDGET_KINDS = ("proxy", "zero_cost")
_MAXIMIZED = ("accuracy", "zero_cost")
_UNITS = {"latency": "latency_ms", "memory": "memory_mb"}


@dataclass(frozen=True)
class StudyConfigProblem:
    """One problem in a study: the field (dotted path), what is wrong, how to fix it."""

    field: str
    problem: str
    fix: str

    def line(self, path: str | Path | None = None) -> str:
        """The one-line form ``<file>: <field>: <problem>; <fix>``."""
        parts = [str(p) for p in (path, self.field) if p]
        return ": ".join([*parts, f"{self.problem}; {self.fix}"])


class StudyConfigError(ValueError):
    """A study file (or mapping) with problems; ``problems`` lists every one found."""

    def __init__(self, problems: Sequence[StudyConfigProblem], path: str | Path | None = None):
        self.problems = tuple(problems)
        self.path = path
        lines = [p.line(path) for p in self.problems]
        if len(lines) > 1:
            lines.insert(0, f"{path or 'study'}: {len(lines)} problems in the study")
        super().__init__("\n".join(lines))


def _raise_if(problems: list[StudyConfigProblem]) -> None:
    if problems:
        raise StudyConfigError(problems)


def _choice(field_: str, value: str, choices: Collection[str], what: str) -> StudyConfigProblem:
    """An 'unknown name' problem that suggests the closest valid name."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return StudyConfigProblem(
        field_, f"unknown {what} {value!r}", f"{hint}known: {', '.join(sorted(choices))}"
    )


def _positive(problems: list, field_: str, value: float | None, fix: str, low: float = 0) -> None:
    """Record a problem unless ``value`` is None or above ``low``."""
    if value is not None and not value > low:
        problems.append(StudyConfigProblem(field_, f"must be > {low:g}, got {value!r}", fix))


@dataclass(frozen=True)
class DatasetConfig:
    """Where training and validation images come from (``root`` None: the loader's default)."""

    name: str
    root: str | None = None
    val_fraction: float | None = None  # held out to score proxies; None: per-dataset default

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        if not self.name:
            problems.append(StudyConfigProblem("name", "is empty", 'write name = "cifar10"'))
        if self.val_fraction is not None and not 0 < self.val_fraction < 1:
            problems.append(StudyConfigProblem(
                "val_fraction", f"must lie in (0, 1), got {self.val_fraction!r}",
                "write val_fraction = 0.1"))
        _raise_if(problems)


@dataclass(frozen=True)
class Objective:
    """One value a trial reports; ``latency`` needs a ``device``, ``zero_cost`` a ``proxy``."""

    metric: str
    direction: str | None = None  # None: maximize accuracy/zero_cost, minimize costs
    device: str | None = None
    proxy: str | None = None

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        if self.metric not in METRICS:
            problems.append(_choice("metric", self.metric, METRICS, "metric"))
        if self.direction is None:
            natural = "maximize" if self.metric in _MAXIMIZED else "minimize"
            object.__setattr__(self, "direction", natural)
        elif self.direction not in DIRECTIONS:
            problems.append(_choice("direction", self.direction, DIRECTIONS, "direction"))
        if self.metric == "latency" and self.device is None:
            problems.append(StudyConfigProblem(
                "device", "a latency objective needs a device", 'add device = "jetson-nano"'))
        if self.metric != "latency" and self.device is not None:
            problems.append(StudyConfigProblem(
                "device", f"only latency objectives take a device, not {self.metric!r}",
                "remove the device key"))
        if self.metric == "zero_cost" and self.proxy is None:
            problems.append(StudyConfigProblem(
                "proxy", "a zero_cost objective needs a proxy", 'add proxy = "synflow"'))
        elif self.metric == "zero_cost" and self.proxy not in ZERO_COST_PROXIES:
            problems.append(_choice("proxy", self.proxy, ZERO_COST_PROXIES, "zero-cost proxy"))
        if self.metric != "zero_cost" and self.proxy is not None:
            problems.append(StudyConfigProblem(
                "proxy", f"only zero_cost objectives take a proxy, not {self.metric!r}",
                "remove the proxy key"))
        _raise_if(problems)

    @property
    def name(self) -> str:
        """Display name with unit and device, e.g. ``latency_ms@jetson-nano``."""
        if self.metric == "zero_cost":
            return str(self.proxy)
        base = _UNITS.get(self.metric, self.metric)
        return f"{base}@{self.device}" if self.device else base


@dataclass(frozen=True)
class Constraints:
    """Hard limits; an architecture over any of them is recorded but never trained."""

    max_flops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    latency_device: str | None = None  # required with max_latency_ms
    max_memory_mb: float | None = None  # peak activation memory

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        for key in ("max_flops", "max_params", "max_latency_ms", "max_memory_mb"):
            _positive(problems, key, getattr(self, key), "use a positive limit or remove the key")
        if self.max_latency_ms is not None and self.latency_device is None:
            problems.append(StudyConfigProblem(
                "latency_device", "max_latency_ms needs the device it is measured on",
                'add latency_device = "jetson-nano"'))
        if self.latency_device is not None and self.max_latency_ms is None:
            problems.append(StudyConfigProblem(
                "latency_device", "has no effect without max_latency_ms",
                "add max_latency_ms = 12.0 or remove latency_device"))
        _raise_if(problems)

    @property
    def limits(self) -> dict[str, float]:
        """The active limits keyed by measurement: flops, params, latency_ms, memory_mb."""
        pairs = {"flops": self.max_flops, "params": self.max_params,
                 "latency_ms": self.max_latency_ms, "memory_mb": self.max_memory_mb}
        return {k: v for k, v in pairs.items() if v is not None}

    def violations(self, measured: Mapping[str, float]) -> dict[str, float]:
        """``measured - limit`` per active limit (<= 0: feasible), for ``trial.set_constraint``."""
        missing = [k for k in self.limits if k not in measured]
        if missing:
            raise ValueError(f"constraints need measured {', '.join(missing)}; "
                             f"got only {', '.join(sorted(measured)) or 'nothing'}")
        return {k: float(measured[k]) - limit for k, limit in self.limits.items()}


@dataclass(frozen=True)
class Budget:
    """How cheaply one architecture is judged: short proxy training or a zero-cost score.

    Training options left None keep :class:`fusionnas.evaluators.proxy.ProxyBudget`'s
    defaults; set ``epochs`` or ``steps``, not both (neither: one epoch).
    """

    kind: str = "proxy"  # "proxy": train briefly; "zero_cost": score at init, no training
    epochs: float | None = None
    steps: int | None = None  # optimiser steps per trial
    data_fraction: float = 1.0  # of the training split
    batch_size: int | None = None
    lr: float | None = None  # peak learning rate
    resolution: int | None = None  # input side; None: the dataset's own
    prefilter: float | None = None  # train only this top fraction by zero-cost score; None: all
    zero_cost_proxy: str = "synflow"  # used by kind="zero_cost" and prefilter

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        if self.kind not in BUDGET_KINDS:
            problems.append(_choice("kind", self.kind, BUDGET_KINDS, "budget kind"))
        if self.epochs is not None and self.steps is not None:
            problems.append(StudyConfigProblem(
                "steps", "set together with epochs", "keep epochs or steps, not both"))
        _positive(problems, "epochs", self.epochs, "write epochs = 1 (fractions allowed)")
        _positive(problems, "steps", self.steps, "write steps = 50")
        _positive(problems, "batch_size", self.batch_size, "write batch_size = 64")
        _positive(problems, "lr", self.lr, "write lr = 0.05")
        _positive(problems, "resolution", self.resolution, "write resolution = 32 or remove it")
        if not 0 < self.data_fraction <= 1:
            problems.append(StudyConfigProblem(
                "data_fraction", f"must lie in (0, 1], got {self.data_fraction!r}",
                "write data_fraction = 0.5 (1.0 uses all training data)"))
        if self.prefilter is not None and not 0 < self.prefilter < 1:
            problems.append(StudyConfigProblem(
                "prefilter", f"must lie in (0, 1), got {self.prefilter!r}",
                "write prefilter = 0.5 to train the top half, or remove it to skip"))
        if self.zero_cost_proxy not in ZERO_COST_PROXIES:
            problems.append(_choice(
                "zero_cost_proxy", self.zero_cost_proxy, ZERO_COST_PROXIES, "zero-cost proxy"))
        _raise_if(problems)

    def proxy_options(self) -> dict[str, Any]:
        """The training options that are set, as ``ProxyBudget(**options)`` keywords."""
        keys = ("epochs", "steps", "data_fraction", "batch_size", "lr", "resolution")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass(frozen=True)
class SamplerConfig:
    """Which Optuna sampler proposes architectures; unset options keep Optuna's defaults."""

    name: str = "tpe"
    seed: int | None = None
    n_startup_trials: int | None = None  # tpe only: random trials before TPE
    population_size: int | None = None  # nsga2 only

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
        if self.name not in SAMPLERS:
            problems.append(_choice("name", self.name, SAMPLERS, "sampler"))
        if self.seed is not None and not 0 <= self.seed < 2**32:
            problems.append(StudyConfigProblem(
                "seed", f"must lie in [0, 2**32), got {self.seed}", "write seed = 0"))
        for key, owner in (("n_startup_trials", "tpe"), ("population_size", "nsga2")):
            if getattr(self, key) is not None and self.name != owner:
                problems.append(StudyConfigProblem(
                    key, f"only the {owner} sampler uses it, not {self.name!r}", "remove the key"))
        if self.n_startup_trials is not None and self.n_startup_trials < 0:
            problems.append(StudyConfigProblem(
                "n_startup_trials", f"must be >= 0, got {self.n_startup_trials}",
                "write n_startup_trials = 10"))
        _positive(problems, "population_size", self.population_size,
                  "write population_size = 20", low=1)
        _raise_if(problems)

    def make_sampler(
        self, constraints_func: Callable[[optuna.trial.FrozenTrial], Sequence[float]] | None = None
    ) -> optuna.samplers.BaseSampler:
        """The Optuna sampler; constraints come from ``trial.set_constraint`` unless given here.

        Optuna 5 deprecates ``constraints_func`` (it still works, with a FutureWarning);
        the random sampler ignores constraints either way.
        """
        import optuna

        extra: dict[str, Any] = {}
        if constraints_func is not None and self.name != "random":
            extra["constraints_func"] = constraints_func
        if self.name == "tpe":
            if self.n_startup_trials is not None:
                extra["n_startup_trials"] = self.n_startup_trials
            return optuna.samplers.TPESampler(seed=self.seed, **extra)
        if self.name == "nsga2":
            if self.population_size is not None:
                extra["population_size"] = self.population_size
            return optuna.samplers.NSGAIISampler(seed=self.seed, **extra)
        return optuna.samplers.RandomSampler(seed=self.seed)


@dataclass(frozen=True)
class StudyConfig:
    """One search study, as read from a study file (see the module docstring)."""

    name: str
    storage: str  # an Optuna storage URL; SQLite paths are absolute
    space: str
    dataset: DatasetConfig
    objectives: tuple[Objective, ...]
    constraints: Constraints = field(default_factory=Constraints)
    budget: Budget = field(default_factory=Budget)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    n_trials: int | None = None
    timeout_s: float | None = None
    seed: int = 0
    enqueue: tuple[str, ...] = ()  # preset names of the space, evaluated first
    path: Path | None = None  # the study file, if any

    def __post_init__(self) -> None:
        problems: list[StudyConfigProblem] = []
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
            if name == "accuracy" and self.budget.kind == "zero_cost":
                problems.append(StudyConfigProblem(
                    f"objectives[{i}].metric", "accuracy needs training but budget.kind is "
                    "'zero_cost'", 'use metric = "zero_cost" or budget.kind = "proxy"'))
        _positive(problems, "n_trials", self.n_trials, "write n_trials = 20")
        _positive(problems, "timeout_s", self.timeout_s, "write timeout_s = 3600")
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
        if self.n_trials is not None and 0 < self.n_trials < len(self.enqueue):
            problems.append(StudyConfigProblem(
                "n_trials", f"{self.n_trials} is fewer than the {len(self.enqueue)} enqueued "
                "presets", f"write n_trials = {len(self.enqueue)} or more"))
        _raise_if(problems)

    @property
    def directions(self) -> list[str]:
        """Objective directions, for ``optuna.create_study(directions=...)``."""
        return [str(o.direction) for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        """Objective display names, for ``study.set_metric_names``."""
        return [o.name for o in self.objectives]

    def make_sampler(
        self, constraints_func: Callable[[optuna.trial.FrozenTrial], Sequence[float]] | None = None
    ) -> optuna.samplers.BaseSampler:
        """The study's Optuna sampler (see :meth:`SamplerConfig.make_sampler`)."""
        return self.sampler.make_sampler(constraints_func)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the whole config (for the study's user attrs)."""
        data = dataclasses.asdict(self)
        data["path"] = str(self.path) if self.path else None
        return data

    @property
    def fingerprint(self) -> str:
        """Short hash of what defines the search (space, dataset, objectives, budget).

        Storage, sampler, trial counts and constraints may change when a study resumes.
        """
        data = self.to_dict()
        keys = ("space", "dataset", "objectives", "budget")
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


# --- reading TOML -------------------------------------------------------------------------

# key -> (kind, example value for the fix)
_SCHEMA: dict[str, dict[str, tuple[str, str]]] = {
    "": {"name": ("str", '"my-study"'), "storage": ("str", '"sqlite:///study.db"'),
         "space": ("str", '"mobilenetv2-cifar"'), "seed": ("int", "0"),
         "n_trials": ("int", "20"), "timeout_s": ("number", "3600"),
         "enqueue": ("str_list", '["baseline"]'), "dataset": ("table", '"digits"'),
         "objectives": ("table_list", '[[objectives]] metric = "accuracy"'),
         "constraints": ("table", ""), "budget": ("table", ""), "sampler": ("table", "")},
    "dataset": {"name": ("str", '"cifar10"'), "root": ("str", '"data"'),
                "val_fraction": ("number", "0.1")},
    "objectives": {"metric": ("str", '"accuracy"'), "direction": ("str", '"maximize"'),
                   "device": ("str", '"jetson-nano"'), "proxy": ("str", '"synflow"')},
    "constraints": {"max_flops": ("number", "3e8"), "max_params": ("number", "2e6"),
                    "max_latency_ms": ("number", "12.0"),
                    "latency_device": ("str", '"jetson-nano"'),
                    "max_memory_mb": ("number", "64.0")},
    "budget": {"kind": ("str", '"proxy"'), "epochs": ("number", "1"), "steps": ("int", "50"),
               "data_fraction": ("number", "0.5"), "batch_size": ("int", "64"),
               "lr": ("number", "0.05"), "resolution": ("int", "32"),
               "prefilter": ("number", "0.5"),
               "zero_cost_proxy": ("str", '"synflow"')},
    "sampler": {"name": ("str", '"tpe"'), "seed": ("int", "0"),
                "n_startup_trials": ("int", "10"), "population_size": ("int", "50")},
}
_KIND_TEXT = {"str": "a string", "int": "an integer", "number": "a number",
              "str_list": "a list of strings", "table": "a table", "table_list": "tables"}


def _kind_ok(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    checks = {"str": lambda v: isinstance(v, str), "int": lambda v: isinstance(v, int),
              "number": lambda v: isinstance(v, (int, float)),
              "str_list": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
              "table": lambda v: isinstance(v, Mapping),
              "table_list": lambda v: isinstance(v, list)
              and all(isinstance(t, Mapping) for t in v)}
    return checks[kind](value)


def _unknown_key(section: str, field_: str, key: str) -> StudyConfigProblem:
    close = difflib.get_close_matches(key, list(_SCHEMA[section]), n=1, cutoff=0.6)
    if close:
        return StudyConfigProblem(field_, "unknown key", f"did you mean {close[0]!r}?")
    for other, keys in _SCHEMA.items():
        if other and other != section and key in keys:
            where = "[[objectives]]" if other == "objectives" else f"[{other}]"
            return StudyConfigProblem(field_, "unknown key here", f"move it under {where}")
    return StudyConfigProblem(field_, "unknown key", f"valid keys: {', '.join(_SCHEMA[section])}")


def _read(table: Mapping[str, Any], section: str, prefix: str, problems: list,
          required: Sequence[str] = ()) -> dict[str, Any]:
    """The well-typed keys of ``table``; unknown, mistyped and missing keys become problems."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        field_ = f"{prefix}{key}"
        if key not in _SCHEMA[section]:
            problems.append(_unknown_key(section, field_, key))
            continue
        kind, example = _SCHEMA[section][key]
        if section == "" and key == "dataset" and isinstance(value, str):
            value = {"name": value}
        if not _kind_ok(value, kind):
            fix = (f"write {example} tables" if kind == "table_list" else
                   f"write {key} = {example}" if example else f"write [{key}] as a table")
            problems.append(StudyConfigProblem(
                field_, f"expected {_KIND_TEXT[kind]}, got {type(value).__name__} {value!r}", fix))
            continue
        values[key] = float(value) if kind == "number" else value
    for key in required:
        if key not in table:
            kind, example = _SCHEMA[section][key]
            fix = f"add {key} = {example}" if kind != "table_list" else f"add {example} tables"
            problems.append(StudyConfigProblem(f"{prefix}{key}", "missing", fix))
    return values


def _build(cls: type, values: dict[str, Any], prefix: str, problems: list,
           required: Sequence[str] = ()) -> Any:
    """``cls(**values)``, or None with its problems (prefixed) recorded."""
    if any(key not in values for key in required):
        return None  # _read has recorded why
    try:
        return cls(**values)
    except StudyConfigError as error:
        problems.extend(dataclasses.replace(p, field=prefix + p.field) for p in error.problems)
    return None


def _resolve_storage(storage: str | None, base: Path, stem: str) -> str:
    """SQLite URLs and bare paths become absolute, relative to the study file's folder."""
    if storage is None:
        return f"sqlite:///{(base / f'{stem}.db').resolve()}"
    if "://" not in storage:
        return f"sqlite:///{(base / Path(storage).expanduser()).resolve()}"
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        relative = storage[len("sqlite:///"):]
        if relative and relative != ":memory:":
            return f"sqlite:///{(base / relative).resolve()}"
    return storage


def _registry(kind: str, space: str | None = None) -> Collection[str] | None:
    """Names registered by the other packages, or None while that registry does not exist."""
    module_name, function = {
        "space": ("fusionnas.spaces", "list_spaces"),
        "preset": ("fusionnas.spaces", "get_space"),
        "dataset": ("fusionnas.evaluators.data", "list_datasets"),
        "device": ("fusionnas.evaluators.latency", "list_devices"),
    }[kind]
    if importlib.util.find_spec(module_name) is None:
        logger.info("%s names left unchecked: %s is not available", kind, module_name)
        return None
    lookup = getattr(importlib.import_module(module_name), function, None)
    if lookup is None:
        logger.info("%s names left unchecked: %s.%s is missing", kind, module_name, function)
        return None
    if kind != "preset":
        return list(lookup())
    try:
        return list(lookup(space).presets())
    except ValueError:  # a space known to the caller but not registered
        return None


def _name_problems(names: list[tuple[str, str, str]], known: dict[str, Any],
                   space: str | None) -> list[StudyConfigProblem]:
    """Problems for each (field, kind, name) not among the known names of its kind.

    ``names`` lists the space first; presets are checked only against a valid space.
    """
    problems = []
    for field_, kind, name in names:
        choices = known[kind]
        if kind == "preset":
            if space is None:
                continue
            if isinstance(choices, Mapping):
                choices = choices.get(space, ())
        if choices is None:
            choices = _registry(kind, space)
        if choices is not None and name not in choices:
            problems.append(_choice(field_, name, choices, kind))
            if kind == "space":
                space = None
    return problems


def parse_study_config(
    data: Mapping[str, Any], path: str | Path | None = None, *,
    known_spaces: Collection[str] | None = None,
    known_datasets: Collection[str] | None = None,
    known_devices: Collection[str] | None = None,
    known_presets: Collection[str] | Mapping[str, Collection[str]] | None = None,
) -> StudyConfig:
    """Validate a study mapping (parsed TOML) into a StudyConfig; raise StudyConfigError.

    ``known_*`` None looks the names up in the registries (``list_spaces``,
    ``get_space(space).presets()``, ``list_datasets``, ``list_devices``); a
    registry not yet present leaves its names unchecked. ``known_presets`` may
    map space names to their presets.
    """
    path = Path(path) if path is not None else None
    problems: list[StudyConfigProblem] = []
    top = _read(data, "", "", problems, required=("space", "dataset", "objectives"))
    base = path.resolve().parent if path else Path.cwd()
    stem = path.stem if path else str(top.get("name") or "study")
    names = [("space", "space", top["space"])] if "space" in top else []  # (field, kind, name)

    values = _read(top.get("dataset", {}), "dataset", "dataset.", problems)
    if "root" in values:
        values["root"] = str((base / Path(values["root"]).expanduser()).resolve())
    names += [("dataset.name", "dataset", values["name"])] if "name" in values else []
    dataset = _build(DatasetConfig, values, "dataset.", problems, ("name",))
    if "dataset" in top and "name" not in top["dataset"]:
        problems.append(StudyConfigProblem("dataset.name", "missing", 'add name = "cifar10"'))
    sections = {}
    for key, cls in (("constraints", Constraints), ("budget", Budget), ("sampler", SamplerConfig)):
        values = _read(top.get(key, {}), key, f"{key}.", problems)
        if cls is SamplerConfig and 0 <= top.get("seed", 0) < 2**32:
            values.setdefault("seed", top.get("seed", 0))  # else the study reports the seed
        if "latency_device" in values:
            names.append(("constraints.latency_device", "device", values["latency_device"]))
        sections[key] = _build(cls, values, f"{key}.", problems)
    zero_cost_proxy = sections["budget"].zero_cost_proxy if sections["budget"] else "synflow"
    objectives = []
    for i, table in enumerate(top.get("objectives", [])):
        values = _read(table, "objectives", f"objectives[{i}].", problems, required=("metric",))
        if values.get("metric") == "zero_cost":
            values.setdefault("proxy", zero_cost_proxy)
        if "device" in values:
            names.append((f"objectives[{i}].device", "device", values["device"]))
        objectives.append(_build(Objective, values, f"objectives[{i}].", problems, ("metric",)))
    names += [(f"enqueue[{i}]", "preset", p) for i, p in enumerate(top.get("enqueue", []))]
    known = {"space": known_spaces, "dataset": known_datasets, "device": known_devices,
             "preset": known_presets}
    problems += _name_problems(names, known, top.get("space"))

    # Whole-study checks run even when a part failed (with a stand-in for it); only
    # their problems about fields not already reported are kept.
    late: list[StudyConfigProblem] = []
    config = _build(StudyConfig, dict(
        name=top.get("name", stem), storage=_resolve_storage(top.get("storage"), base, stem),
        space=top.get("space", "?"), dataset=dataset or DatasetConfig("?"),
        objectives=tuple(o for o in objectives if o is not None),
        constraints=sections["constraints"] or Constraints(), budget=sections["budget"] or Budget(),
        sampler=sections["sampler"] or SamplerConfig(), n_trials=top.get("n_trials"),
        timeout_s=top.get("timeout_s"), seed=top.get("seed", 0),
        enqueue=tuple(top.get("enqueue", ())), path=path.resolve() if path else None,
    ), "", late)
    reported = {_root(p.field) for p in problems}
    problems += [p for p in late if _root(p.field) not in reported]
    if config is not None and not problems:
        return config
    raise StudyConfigError(problems, path)


def _root(field_: str) -> str:
    """The top-level key of a field path: ``objectives[1].device`` -> ``objectives``."""
    return re.split(r"[.\[]", field_, maxsplit=1)[0]


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)$")


def load_study_config(path: str | Path, **known: Any) -> StudyConfig:
    """Read and validate a study file; ``known`` as in :func:`parse_study_config`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyConfigError([StudyConfigProblem(
            "", "no such study file", "check the path (studies/quickstart.toml is one)")], path
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise StudyConfigError([StudyConfigProblem(
            "", f"cannot read the study file ({error})", "pass a readable UTF-8 TOML file")], path
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = _TOML_POSITION.search(message)
        line = match.group(1) if match else str(text.count("\n") + 1)
        column = f", column {match.group(2)}" if match else ""
        reason = _TOML_POSITION.sub("", message).replace("(at end of document)", "").strip()
        raise StudyConfigError([StudyConfigProblem(
            f"line {line}{column}", f"TOML syntax error: {reason}",
            f"fix line {line} (strings need quotes, tables [brackets])")], path) from None
    return parse_study_config(data, path, **known)
