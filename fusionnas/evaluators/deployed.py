"""Whole networks timed as deployed, each against a fixed reference network run beside it.

A latency that a search optimises must be the deployed network's, and it
must come out the same whatever else the machine does. The 2-vCPU VMs this
project runs on flip between a fast state and one ~40 % slower every few
seconds, and other workers train on the other core. So a candidate is never
timed alone: its runs alternate with runs of a reference network (the
space's all-conv baseline) in the same process, in the same runtime, and
what counts is the median ratio of adjacent runs, which a state that lasts
seconds or a neighbour's load changes for both alike. Milliseconds are that
ratio times the reference's calibrated time (:func:`calibrate_reference`:
its fastest median over rounds spread across a few seconds, taken once per
machine and runtime and kept with the study).

Example:
    >>> meter = DeployedLatencyMeter(space.build(space.baseline()), space.input_shape)  # doctest: +SKIP
    >>> meter.measure(space.build(arch)).ms                                             # doctest: +SKIP
    2.31
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from fusionnas.evaluators.runtimes import Runner, median_ms, prepare, torch_threads
from fusionnas.evaluators.training import eval_mode

__all__ = ["WholeLatency", "DeployedLatencyMeter", "time_against", "calibrate_reference", "PAIRS"]

# Over 8 repeated measurements of 5 networks on a 2-vCPU EPYC VM (idle), the median ratio of 30
# pairs strayed up to 11 % from the network's median (92 % within 5 %); of 60 pairs, up to 6 %
# (98 % within 5 %).
PAIRS = 60


@dataclass(frozen=True)
class WholeLatency:
    """A whole network's latency: ``ratio`` to the reference, times the reference's calibrated ``reference_ms``."""

    ratio: float
    reference_ms: float

    @property
    def ms(self) -> float:
        """Milliseconds a run of the network takes on this machine in its fast state."""
        return self.ratio * self.reference_ms


def time_against(run: Runner, reference: Runner, *, pairs: int = PAIRS, warmup: int = 3) -> float:
    """Median over ``pairs`` of (one run of ``run``) / (the run of ``reference`` next to it).

    The two alternate, and which one goes first alternates too, so that a
    cache left warm or cold by the other favours neither.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    for _ in range(warmup):
        run()
        reference()
    ratios = []
    for i in range(pairs):
        first, second = (run, reference) if i % 2 == 0 else (reference, run)
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        end = time.perf_counter()
        own, ref = (middle - start, end - middle) if i % 2 == 0 else (end - middle, middle - start)
        ratios.append(own / ref)
    return statistics.median(ratios)


def calibrate_reference(reference: Runner, *, rounds: int = 30, repeats: int = 10, gap_s: float = 0.3) -> float:
    """The reference's milliseconds in the machine's fast state: its fastest median of ``repeats``
    runs over ``rounds`` rounds, ``gap_s`` apart (a slow state lasts seconds; a round is short)."""
    best = float("inf")
    for round_ in range(rounds):
        best = min(best, median_ms(reference, warmup=5 if round_ == 0 else 1, repeats=repeats))
        if round_ < rounds - 1:
            time.sleep(gap_s)
    return best


class DeployedLatencyMeter:
    """Times whole networks as deployed in ``runtime`` on ``device``, each against ``reference``.

    Args:
        reference: the reference network (a study's: its space's baseline, with the study's classes).
        input_shape: (C, H, W) of one image.
        runtime: ``onnxruntime`` (the graph ``fusionnas export`` writes), ``torch``, ...
        device: ``cpu`` or ``cuda``.
        threads: CPU threads of every run, fixed.
        batch_size: images per run.
        pairs: alternating pairs per measurement.
        reference_ms: the reference's calibrated time, if known (else measured on first use).
    """

    def __init__(self, reference: nn.Module, input_shape: Sequence[int], runtime: str = "onnxruntime",
                 device: str = "cpu", *, threads: int = 1, batch_size: int = 1, pairs: int = PAIRS,
                 reference_ms: float | None = None) -> None:
        self.input_shape = tuple(int(d) for d in input_shape)
        self.runtime, self.device = runtime, device
        self.threads, self.batch_size, self.pairs = threads, batch_size, pairs
        self._reference_model = reference
        self._reference: Runner | None = None  # prepared on first use: an export costs seconds
        self._reference_ms = reference_ms

    def _prepare(self, model: nn.Module, input_shape: Sequence[int], graph: bytes | None = None) -> Runner:
        return prepare(model, input_shape, self.runtime, self.device, threads=self.threads,
                       batch_size=self.batch_size, graph=graph)

    def _reference_runner(self) -> Runner:
        if self._reference is None:
            with torch_threads(self.threads):
                self._reference = self._prepare(self._reference_model, self.input_shape)
        return self._reference

    @property
    def reference_ms(self) -> float:
        """The reference's calibrated milliseconds (:func:`calibrate_reference`, measured once)."""
        if self._reference_ms is None:
            reference = self._reference_runner()
            with torch_threads(self.threads):
                self._reference_ms = calibrate_reference(reference)
        return self._reference_ms

    def prepare(self, model: nn.Module, *, input_shape: Sequence[int] | None = None,
                graph: bytes | None = None) -> Runner:
        """``model`` ready to run in the meter's runtime (exported, for a graph runtime): the slow half
        of :meth:`measure`, which a caller may do before it asks the machine to be quiet."""
        with eval_mode(model), torch_threads(self.threads):
            return self._prepare(model, input_shape or self.input_shape, graph)

    def time(self, run: Runner) -> WholeLatency:
        """A prepared network (:meth:`prepare`) timed against the reference."""
        reference = self._reference_runner()
        reference_ms = self.reference_ms
        with torch_threads(self.threads):
            ratio = time_against(run, reference, pairs=self.pairs)
        return WholeLatency(ratio, reference_ms)

    def measure(self, model: nn.Module, *, input_shape: Sequence[int] | None = None,
                graph: bytes | None = None) -> WholeLatency:
        """``model``'s latency as deployed: exported (graph runtimes), then timed against the reference.

        ``model`` may be a part of a network (a latency table's entry) that takes ``input_shape``
        (default: the reference's); ``graph``: its exported ONNX bytes, when the caller has them.
        """
        return self.time(self.prepare(model, input_shape=input_shape, graph=graph))
