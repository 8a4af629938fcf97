"""Latency in a named runtime: ``torch`` (eager) or ``onnxruntime`` (the exported graph).

A model is deployed in a runtime, and runtimes rank architectures
differently: onnxruntime fuses a conv with its batch norm and activation,
while an operator made of many small tensor operations pays for each of
them. So every latency says where it was measured. ``onnxruntime`` times the
very bytes that ``fusionnas export`` writes (:func:`~fusionnas.evaluators.onnx_export.to_onnx`),
on the CPU execution provider, or CUDA's on ``device="cuda"``; threads are fixed.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np
import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.onnx_export import to_onnx
from fusionnas.evaluators.timing import batch_shape, measure_latency
from fusionnas.runtime_names import RUNTIMES, default_runtime

__all__ = ["RUNTIMES", "default_runtime", "measure_in_runtime", "measure_side_by_side", "onnxruntime_session",
           "time_session"]


def onnxruntime_session(graph: bytes, device: str = "cpu", threads: int = 1):
    """An onnxruntime session of ``graph`` with all graph optimisations and ``threads`` intra-op threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads sleep instead of spinning: spinning threads slow whatever runs next in this
    # process or beside it (torch, other workers) on a machine with few cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if device == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise UserError("onnxruntime has no CUDA execution provider here; install onnxruntime-gpu or use "
                            "device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return onnxruntime.InferenceSession(graph, options, providers=providers)


def time_session(session, input_shape: Sequence[int], *, batch_size: int = 1, warmup: int = 5,
                 repeats: int = 25) -> float:
    """Median milliseconds of one ``session.run`` on a random batch, after ``warmup`` runs."""
    x = np.random.default_rng(0).standard_normal(batch_shape(input_shape, batch_size), dtype=np.float32)
    feed = {session.get_inputs()[0].name: x}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure_in_runtime(model: nn.Module, input_shape: Sequence[int], runtime: str = "onnxruntime",
                       device: str = "cpu", *, threads: int = 1, warmup: int = 5, repeats: int = 25,
                       exported: MutableMapping[str, bytes] | None = None, key: str | None = None) -> float:
    """Median latency in milliseconds of ``model`` at batch 1 in ``runtime`` on ``device``.

    In onnxruntime, given ``exported`` and ``key``, the exported graph is kept in
    ``exported[key]`` and taken from there next time: an export costs more than the timing.
    """
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return measure_latency(model, input_shape, device, threads=threads, warmup=warmup, repeats=repeats)
    if exported is None or key is None:
        graph = _export_quietly(model, input_shape)
    elif key in exported:
        graph = exported[key]
    else:
        graph = exported[key] = _export_quietly(model, input_shape)
    session = onnxruntime_session(graph, device, threads)
    return time_session(session, input_shape, warmup=warmup, repeats=repeats)


def _export_quietly(model: nn.Module, input_shape: Sequence[int]) -> bytes:
    old_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the export itself; torch's threads would compete with onnxruntime's
        return to_onnx(model, input_shape)
    finally:
        torch.set_num_threads(old_threads)


def measure_side_by_side(models: Mapping[str, nn.Module], input_shape: Sequence[int], runtime: str = "onnxruntime",
                         device: str = "cpu", *, threads: int = 1, rounds: int = 5,
                         repeats: int = 10) -> dict[str, float]:
    """Milliseconds at batch 1 of each of ``models`` on a quiet machine, timed in interleaved rounds.

    Every round times each model once (the median of ``repeats`` runs), so
    the rounds of one model are spread over the whole measurement; the result
    is each model's fastest round. Background load only ever adds time, and
    on a shared machine it comes in bursts of seconds that a median over
    consecutive runs cannot remove, so the fastest round is the figure that
    repeats; comparisons (a trial against the baseline) are fair this way.
    """
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if runtime == "torch":
        def run(name: str, warmup: int) -> float:
            return measure_latency(models[name], input_shape, device, threads=threads, warmup=warmup,
                                   repeats=repeats)
    else:
        sessions = {name: onnxruntime_session(_export_quietly(m, input_shape), device, threads)
                    for name, m in models.items()}

        def run(name: str, warmup: int) -> float:
            return time_session(sessions[name], input_shape, warmup=warmup, repeats=repeats)
    best = {name: float("inf") for name in models}
    for round_ in range(rounds):
        for name in models:
            best[name] = min(best[name], run(name, 5 if round_ == 0 else 1))
    return best
