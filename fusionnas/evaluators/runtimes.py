"""Latency in a named runtime: ``torch`` (eager), ``onnxruntime`` or ``openvino`` (the exported graph).

A model is deployed in a runtime, and runtimes rank architectures
differently: onnxruntime fuses a conv with its batch norm and activation,
while an operator made of many small tensor operations pays for each of
them. So every latency says where it was measured. The graph runtimes time
the very bytes that ``fusionnas export`` writes (:func:`~fusionnas.evaluators.onnx_export.to_onnx`):
``onnxruntime`` on the CPU execution provider, or CUDA's on ``device="cuda"``;
``openvino`` (Intel's OpenVINO) compiled for the CPU. Threads are fixed.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.onnx_export import to_onnx
from fusionnas.evaluators.sessions import onnxruntime_session, openvino_model
from fusionnas.evaluators.timing import batch_shape
from fusionnas.evaluators.training import eval_mode
from fusionnas.runtime_names import RUNTIMES, check_runtime_device, default_runtime

__all__ = ["RUNTIMES", "Runner", "Runtime", "default_runtime", "export_quietly", "get_runtime", "measure_in_runtime",
           "measure_side_by_side", "median_ms", "onnxruntime_session", "openvino_model", "prepare", "time_session",
           "torch_threads"]


def _random_batch(input_shape: Sequence[int], batch_size: int) -> np.ndarray:
    """The fixed random batch a graph runtime times (the same in every runtime)."""
    return np.random.default_rng(0).standard_normal(batch_shape(input_shape, batch_size), dtype=np.float32)


def time_session(session, input_shape: Sequence[int], *, batch_size: int = 1, warmup: int = 5,
                 repeats: int = 25) -> float:
    """Median milliseconds of one ``session.run`` on a random batch, after ``warmup`` runs."""
    feed = {session.get_inputs()[0].name: _random_batch(input_shape, batch_size)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


# A runner runs one fixed batch through a model as deployed in a runtime; timing it times the model.
Runner = Callable[[], object]


class Runtime(Protocol):
    """How a model runs in one runtime: ``prepare`` returns a :data:`Runner` over a fixed random batch.

    ``graph``: the model's exported ONNX bytes, when the caller already has them (graph runtimes
    then skip the export). Torch threads are the caller's to fix (see :func:`torch_threads`).
    """

    name: str

    def version(self) -> str:
        """The runtime's version, recorded beside what it measured."""
        ...

    def prepare(self, model: nn.Module, input_shape: Sequence[int], device: str = "cpu", *, threads: int = 1,
                batch_size: int = 1, graph: bytes | None = None) -> Runner: ...


class TorchEager:
    """PyTorch eager mode, ``model`` in eval mode under ``torch.inference_mode`` (the module as built)."""

    name = "torch"

    def version(self) -> str:  # noqa: D102
        return torch.__version__

    def prepare(self, model: nn.Module, input_shape: Sequence[int], device: str = "cpu", *, threads: int = 1,
                batch_size: int = 1, graph: bytes | None = None) -> Runner:
        target = torch.device(device)
        model.eval().to(target)
        x = torch.randn(batch_shape(input_shape, batch_size), device=target)
        sync = torch.cuda.synchronize if target.type == "cuda" else None

        def run() -> object:
            with torch.inference_mode():
                out = model(x)
            if sync is not None:
                sync()
            return out

        return run


class OnnxRuntime:
    """onnxruntime on the graph ``fusionnas export`` writes (:func:`onnxruntime_session`)."""

    name = "onnxruntime"

    def version(self) -> str:  # noqa: D102
        import onnxruntime

        return onnxruntime.__version__

    def prepare(self, model: nn.Module, input_shape: Sequence[int], device: str = "cpu", *, threads: int = 1,
                batch_size: int = 1, graph: bytes | None = None) -> Runner:
        session = onnxruntime_session(graph or export_quietly(model, input_shape, batch_size=batch_size),
                                      device, threads)
        feed = {session.get_inputs()[0].name: _random_batch(input_shape, batch_size)}
        return lambda: session.run(None, feed)


class OpenVINORuntime:
    """OpenVINO on the graph ``fusionnas export`` writes, compiled for the CPU (:func:`openvino_model`)."""

    name = "openvino"

    def version(self) -> str:  # noqa: D102
        import openvino

        return openvino.__version__.split("-")[0]  # 2026.4.1, not its build tag

    def prepare(self, model: nn.Module, input_shape: Sequence[int], device: str = "cpu", *, threads: int = 1,
                batch_size: int = 1, graph: bytes | None = None) -> Runner:
        check_runtime_device(self.name, device)  # before an export
        compiled = openvino_model(graph or export_quietly(model, input_shape, batch_size=batch_size), device,
                                  threads, batch_size=batch_size)
        request = compiled.create_infer_request()
        feed = {0: _random_batch(input_shape, batch_size)}
        return lambda: request.infer(feed, share_inputs=True)


class OpenVINONativeRuntime(OpenVINORuntime):
    """OpenVINO on the native export form (``fusionnas export --onnx-form native``): each WHT, butterfly
    and Hadamard transform one node, run by the fusionnas extension's kernel on one thread."""

    name = "openvino-native"

    def prepare(self, model: nn.Module, input_shape: Sequence[int], device: str = "cpu", *, threads: int = 1,
                batch_size: int = 1, graph: bytes | None = None) -> Runner:
        from fusionnas.kernels.onnx_nodes import has_native_nodes

        check_runtime_device(self.name, device)
        if graph is None or not has_native_nodes(graph):  # a standard-form graph is not what this runtime runs
            graph = export_quietly(model, input_shape, batch_size=batch_size, form="native")
        return super().prepare(model, input_shape, device, threads=threads, batch_size=batch_size, graph=graph)


_RUNTIME_IMPLEMENTATIONS: dict[str, Runtime] = {
    r.name: r for r in (TorchEager(), OnnxRuntime(), OpenVINORuntime(), OpenVINONativeRuntime())}


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; an unknown name is a user error listing the known ones."""
    try:
        return _RUNTIME_IMPLEMENTATIONS[name]
    except KeyError:
        raise UserError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}") from None


def prepare(model: nn.Module, input_shape: Sequence[int], runtime: str = "onnxruntime", device: str = "cpu", *,
            threads: int = 1, batch_size: int = 1, graph: bytes | None = None) -> Runner:
    """A :data:`Runner` of ``model`` in ``runtime`` on ``device`` (see :class:`Runtime`)."""
    return get_runtime(runtime).prepare(model, input_shape, device, threads=threads, batch_size=batch_size,
                                        graph=graph)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Torch's intra-op threads fixed to ``threads`` inside the block (graph runtimes fix their own)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def measure_in_runtime(model: nn.Module, input_shape: Sequence[int], runtime: str = "onnxruntime",
                       device: str = "cpu", *, threads: int = 1, warmup: int = 5, repeats: int = 25,
                       batch_size: int = 1) -> float:
    """Median latency in milliseconds of ``model`` at ``batch_size`` in ``runtime`` on ``device``
    (timed alone: :mod:`fusionnas.evaluators.deployed` times a network against a reference)."""
    with eval_mode(model), torch_threads(threads):
        run = prepare(model, input_shape, runtime, device, threads=threads, batch_size=batch_size)
        return median_ms(run, warmup=warmup, repeats=repeats)


def median_ms(run: Runner, *, warmup: int = 5, repeats: int = 25) -> float:
    """Median milliseconds of one call of ``run`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def export_quietly(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1,
                   form: str = "standard") -> bytes:
    """``to_onnx`` on one torch thread (torch's threads would compete with the runtime's)."""
    with torch_threads(1):
        return to_onnx(model, input_shape, batch_size=batch_size, form=form)


def measure_side_by_side(models: Mapping[str, nn.Module], input_shape: Sequence[int], runtime: str = "onnxruntime",
                         device: str = "cpu", *, threads: int = 1, rounds: int = 5, repeats: int = 10,
                         batch_size: int = 1, graphs: Mapping[str, bytes] | None = None) -> dict[str, float]:
    """Milliseconds at ``batch_size`` of each of ``models`` on a quiet machine, timed in interleaved rounds.

    Every round times each model once (the median of ``repeats`` runs), so
    the rounds of one model are spread over the whole measurement; the result
    is each model's fastest round. Background load only ever adds time, and
    on a shared machine it comes in bursts of seconds that a median over
    consecutive runs cannot remove, so the fastest round is the figure that
    repeats; comparisons (a trial against the baseline) are fair this way.
    ``graphs``: exported graphs by model name, for a graph runtime to time instead of exporting.
    """
    implementation = get_runtime(runtime)
    graphs = graphs or {}
    with eval_mode(*models.values()), torch_threads(threads):
        runners = {name: implementation.prepare(m, input_shape, device, threads=threads, batch_size=batch_size,
                                                graph=graphs.get(name))
                   for name, m in models.items()}
        best = {name: float("inf") for name in models}
        for round_ in range(rounds):
            for name, run in runners.items():
                best[name] = min(best[name], median_ms(run, warmup=5 if round_ == 0 else 1, repeats=repeats))
    return best
