"""What a study stores, typed: :class:`TrialRecord` per trial, :class:`StudyRecord` per study.

Optuna keeps a trial's results as user attributes, a flat dict of JSON
values. This module is the only place that knows their names: the search
writes a :class:`TrialRecord` with :meth:`TrialRecord.write`, and everything
that reads a study (progress, rungs, the frontier, export) reads one with
:meth:`TrialRecord.read`. The stored names are the ones studies have always
had, so older studies and ``optuna-dashboard`` read the same::

    arch, archid, fingerprint, num_classes     what was evaluated, under which study terms
    preset, rung, promoted_from, reused_from   where it came from
    params, flops, memory_mb                   costs
    latency_ms@<device> (+ latency_source@, latency_runtime@, latency_estimate_ms@,
      latency_ratio@, latency_reference_ms@)   one latency per device (see :class:`Latency`)
    <proxy> (synflow, naswot, grad_norm)       zero-cost scores
    feasible, constraint_violations            the limits' verdict
    evaluated, val_accuracy, val_loss, train_seconds, proxy_steps, supernet_steps,
      weights, resumed_from, val_accuracy@rung<n>   the evaluation
    prefiltered, failure_reason                why it was pruned or failed

Free of heavy imports, below every package (search and results both read it).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from fusionnas.metrics import METRICS, ZERO_COST_PROXIES, metric_of_column

__all__ = ["COSTS", "Latency", "Evaluation", "TrialRecord", "StudyRecord", "INTERRUPTED", "latency_column",
           "attribute_of", "attribute_of_column"]

COSTS = ("params", "flops", "memory_mb")  # the costs measured without training, besides latency
INTERRUPTED = "interrupted"  # the failure reason of a trial stopped by Ctrl-C or SIGTERM


class _HasAttrs(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...


class _Writable(_HasAttrs, Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


class _Queue(Protocol):
    def enqueue_trial(self, params: dict[str, Any], user_attrs: dict[str, Any] | None = None) -> None: ...


@dataclass
class Latency:
    """One device's latency of a trial, in milliseconds, and where the figure came from."""

    ms: float
    source: str | None = None  # "table" (predicted from parts; "measured" in older studies), "estimated", "whole"
    runtime: str | None = None  # what ran it: onnxruntime, openvino, torch, ...
    estimate_ms: float | None = None  # the table's prediction, kept once a whole measurement replaced it
    ratio: float | None = None  # to the space's baseline, measured beside it
    reference_ms: float | None = None  # that baseline's time

    @property
    def measured_whole(self) -> bool:
        """True when the trained network was measured whole as deployed."""
        return self.source == "whole"


_LATENCY_PREFIX = {"ms": "latency_ms@", "source": "latency_source@", "runtime": "latency_runtime@",
                   "estimate_ms": "latency_estimate_ms@", "ratio": "latency_ratio@",
                   "reference_ms": "latency_reference_ms@"}


@dataclass
class Evaluation:
    """The expensive judgement of an architecture: proxy training or a supernet's weights."""

    val_accuracy: float | None = None
    val_loss: float | None = None
    train_seconds: float | None = None
    proxy_steps: int | None = None  # optimiser steps in all, a promotion's parent's included
    supernet_steps: int | None = None  # the supernet's, for an accuracy inherited from it
    weights: str | None = None  # file name in the artifacts folder's weights/
    resumed_from: int | None = None  # the trial whose weights a promotion trained on from


_RUNG_ACCURACY = "val_accuracy@rung"


@dataclass
class TrialRecord:
    """Everything a trial stores (see the module docstring); defaults mean "not recorded"."""

    archid: str | None = None
    arch: str | None = None  # the architecture's canonical JSON
    fingerprint: str | None = None  # the study terms it was evaluated under
    num_classes: int | None = None
    preset: str | None = None  # the space preset it was queued as
    rung: int = 0
    promoted_from: int | None = None
    reused_from: int | None = None  # the trial whose results it reuses (same archid and terms)
    costs: dict[str, float] = field(default_factory=dict)  # params, flops, memory_mb
    latencies: dict[str, Latency] = field(default_factory=dict)  # by device
    scores: dict[str, float] = field(default_factory=dict)  # zero-cost scores by proxy name
    feasible: bool | None = None  # None: the limits were not judged yet
    constraint_violations: dict[str, float] = field(default_factory=dict)  # limit -> excess, only those over
    evaluated: bool = False
    evaluation: Evaluation = field(default_factory=Evaluation)
    rung_accuracies: dict[int, float] = field(default_factory=dict)  # with rungs: accuracy per rung reached
    prefiltered: bool = False  # pruned for a low zero-cost score
    failure_reason: str | None = None

    # -- reading and writing -------------------------------------------------------------

    @classmethod
    def read(cls, trial: _HasAttrs) -> TrialRecord:
        """The record of ``trial`` (an Optuna ``Trial`` or ``FrozenTrial``)."""
        return cls.from_attributes(trial.user_attrs)

    @classmethod
    def from_attributes(cls, attrs: Mapping[str, Any]) -> TrialRecord:
        """The record stored as ``attrs`` (user attributes); unknown keys are ignored."""
        latencies: dict[str, Latency] = {}
        for key, value in attrs.items():
            if key.startswith(_LATENCY_PREFIX["ms"]):
                device = key.split("@", 1)[1]
                latencies[device] = Latency(value, **{
                    name: attrs.get(prefix + device) for name, prefix in _LATENCY_PREFIX.items() if name != "ms"})
        evaluation = Evaluation(**{f.name: attrs.get(f.name) for f in fields(Evaluation)})
        simple = {name: attrs[name] for name in ("archid", "arch", "fingerprint", "num_classes", "preset",
                                                 "promoted_from", "reused_from", "feasible", "failure_reason")
                  if name in attrs}
        return cls(
            **simple, rung=int(attrs.get("rung", 0)), costs={k: attrs[k] for k in COSTS if k in attrs},
            latencies=latencies, scores={k: attrs[k] for k in ZERO_COST_PROXIES if k in attrs},
            constraint_violations=dict(attrs.get("constraint_violations") or {}),
            evaluated=bool(attrs.get("evaluated", False)), evaluation=evaluation,
            rung_accuracies={int(k[len(_RUNG_ACCURACY):]): v for k, v in attrs.items()
                             if k.startswith(_RUNG_ACCURACY)},
            prefiltered=bool(attrs.get("prefiltered", False)))

    def attributes(self) -> dict[str, Any]:
        """The stored form: only what is recorded (see the module docstring)."""
        attrs: dict[str, Any] = {}
        for name in ("arch", "archid", "fingerprint", "num_classes", "preset", "promoted_from", "reused_from"):
            if getattr(self, name) is not None:
                attrs[name] = getattr(self, name)
        if self.rung:
            attrs["rung"] = self.rung
        attrs.update(self.costs)
        for device, latency in self.latencies.items():
            for name, prefix in _LATENCY_PREFIX.items():
                if getattr(latency, name) is not None:
                    attrs[prefix + device] = getattr(latency, name)
        attrs.update(self.scores)
        if self.feasible is not None:
            attrs["feasible"] = self.feasible
            attrs["constraint_violations"] = dict(self.constraint_violations)
        attrs.update({k: v for k, v in vars(self.evaluation).items() if v is not None})
        if self.evaluated:
            attrs["evaluated"] = True
        attrs.update({f"{_RUNG_ACCURACY}{rung}": value for rung, value in self.rung_accuracies.items()})
        if self.prefiltered:
            attrs["prefiltered"] = True
        if self.failure_reason is not None:
            attrs["failure_reason"] = self.failure_reason
        return attrs

    def write(self, trial: _Writable) -> None:
        """Store the record on a running ``trial``: each attribute it does not hold yet, or holds otherwise."""
        held = trial.user_attrs
        for key, value in self.attributes().items():
            if key not in held or held[key] != value:
                trial.set_user_attr(key, value)

    def enqueue(self, study: _Queue, params: Mapping[str, Any]) -> None:
        """Queue a trial of ``params`` on ``study`` (an ``optuna.Study``) that starts with this record."""
        study.enqueue_trial(dict(params), user_attrs=self.attributes())

    def columns(self) -> dict[str, Any]:
        """The record as one flat row whose columns are named as stored (``fusionnas pareto``'s frame);
        a cost or latency figure that is not a number reads NaN."""
        row: dict[str, Any] = {"archid": self.archid, "arch": self.arch}
        row.update({k: _number(v) for k, v in self.costs.items()})
        for device, latency in self.latencies.items():
            for name, prefix in _LATENCY_PREFIX.items():
                value = getattr(latency, name)
                if value is not None:
                    row[prefix + device] = value if name in ("source", "runtime") else _number(value)
        evaluation = self.evaluation
        row.update(failure_reason=self.failure_reason, reused_from=self.reused_from,
                   val_accuracy=evaluation.val_accuracy, train_seconds=evaluation.train_seconds,
                   preset=self.preset, weights=evaluation.weights, num_classes=self.num_classes,
                   promoted_from=self.promoted_from, proxy_steps=evaluation.proxy_steps,
                   supernet_steps=evaluation.supernet_steps, rung=self.rung)
        return row

    # -- questions -------------------------------------------------------------------------

    def value(self, column: str) -> Any:
        """The value of an objective or frame column (``accuracy``, ``latency_ms@cpu``, ``synflow``,
        ``flops``, ...), or None when the trial did not measure it."""
        metric = metric_of_column(column)
        if metric is None:
            return None
        if metric.needs_proxy:
            return self.scores.get(column)
        if metric.needs_device:
            latency = self.latencies.get(column.split("@", 1)[1]) if "@" in column else None
            return None if latency is None else latency.ms
        if metric.name == "accuracy":
            return self.evaluation.val_accuracy
        return self.costs.get(metric.column)

    @property
    def interrupted(self) -> bool:
        """Whether the trial failed because the search was stopped (Ctrl-C, SIGTERM)."""
        return self.failure_reason == INTERRUPTED

    def reuse(self, earlier: TrialRecord, *, evaluation: bool) -> None:
        """Take what ``earlier`` measured of the same architecture: costs, latencies, scores, lower
        rungs' accuracies and (``evaluation``) its evaluation, which stays that trial's own run."""
        self.costs.update(earlier.costs)
        self.latencies.update(earlier.latencies)
        self.scores.update(earlier.scores)
        self.rung_accuracies.update(earlier.rung_accuracies)
        if evaluation:
            self.evaluation = replace(earlier.evaluation, supernet_steps=None, resumed_from=None)
            self.evaluated = earlier.evaluated


def latency_column(figure: str, device: str) -> str:
    """The stored name (and frame column) of one :class:`Latency` field on ``device``:
    ``latency_column("ratio", "cpu") == "latency_ratio@cpu"``."""
    return _LATENCY_PREFIX[figure] + device


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def attribute_of(metric: str, device: str | None = None, proxy: str | None = None) -> str:
    """The stored attribute of ``metric``: ``val_accuracy``, ``latency_ms@cpu``, ``synflow``, ..."""
    if METRICS[metric].needs_proxy:
        return str(proxy)
    base = "val_accuracy" if metric == "accuracy" else METRICS[metric].column
    return f"{base}@{device}" if device else base


def attribute_of_column(column: str) -> str:
    """The stored attribute behind a frame column: ``accuracy`` -> ``val_accuracy``; most are their column."""
    return "val_accuracy" if column == "accuracy" else column


@dataclass
class StudyRecord:
    """What a study stores about itself (study user attributes)."""

    fingerprint: str | None = None  # the terms its trials were run under (StudyConfig.fingerprint)
    config: dict[str, Any] | None = None  # the study file, as StudyConfig.to_dict
    space_choices: str | None = None  # the choices the space offered (operators, plugins)
    data: dict[str, Any] | None = None  # the dataset's name, classes, normalisation and image shape

    @classmethod
    def read(cls, study: _HasAttrs) -> StudyRecord:
        """The record of ``study`` (an ``optuna.Study``); what it lacks is None."""
        attrs = study.user_attrs
        return cls(**{f.name: attrs.get(f.name) for f in fields(cls)})

    def write(self, study: _Writable) -> None:
        """Store every field that is set and differs from what ``study`` holds."""
        held = study.user_attrs
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and held.get(f.name) != value:
                study.set_user_attr(f.name, value)
