"""``fusionnas search STUDY --workers N``: N worker processes of one study on this machine.

Each worker is an ordinary ``fusionnas search`` process on the study's
storage, so the guarantees are those of separate workers (exactly
``n_trials`` trials, each architecture trained once, a killed worker's trial
failed and retried; :mod:`fusionnas.search.coordination`). With GPUs each
worker sees one, by ``CUDA_VISIBLE_DEVICES`` (round robin when there are more
workers than GPUs); on CPUs the cores are split between the workers
(``OMP_NUM_THREADS``, unless already set).

Workers run in sessions of their own, so a signal reaches them once, from
here: the first SIGINT or SIGTERM is passed on to every worker, which stops
at its next safe point; the exit code is 130 then, else the first failing
worker's, else 0. Every worker's lines are printed with its ``[wI]`` prefix.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from fusionnas.errors import UserError
from fusionnas.interrupts import STOP

__all__ = ["visible_gpus", "worker_environments", "run_workers"]


def visible_gpus() -> list[str]:
    """The GPUs a worker may be pinned to: ``CUDA_VISIBLE_DEVICES`` if set, else every CUDA device."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_environments(count: int, gpus: Sequence[str], cpus: int | None = None) -> list[dict[str, str]]:
    """The environment changes of each of ``count`` workers: its GPU, or its share of the CPU cores."""
    if count < 1:
        raise UserError(f"`workers` must be >= 1, got {count}")
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} for i in range(count)]
    threads = max(1, (cpus or os.cpu_count() or 1) // count)
    own = {} if "OMP_NUM_THREADS" in os.environ else {"OMP_NUM_THREADS": str(threads)}
    return [dict(own) for _ in range(count)]


def run_workers(search_args: Sequence[str], count: int, *, poll_s: float = 0.1) -> int:
    """Run ``fusionnas search <search_args>`` in ``count`` processes until all exit; the exit code."""
    environments = worker_environments(count, visible_gpus())
    gpus = [e["CUDA_VISIBLE_DEVICES"] for e in environments if "CUDA_VISIBLE_DEVICES" in e]
    threads = environments[0].get("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS"))
    where = f"one GPU each: {', '.join(gpus)}" if gpus else f"CPU, {threads} threads each"
    print(f"starting {count} workers ({where})", flush=True)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "fusionnas.cli", "search", *search_args],
        env={**os.environ, **extra}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        start_new_session=True) for extra in environments]
    pumps = [threading.Thread(target=_pump, args=(w, f"[w{i}] "), daemon=True) for i, w in enumerate(workers)]
    for pump in pumps:
        pump.start()
    passed_on = False
    while any(w.poll() is None for w in workers):
        if STOP.requested is not None and not passed_on:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(STOP.requested)
            passed_on = True
        time.sleep(poll_s)
    for pump in pumps:
        pump.join()
    codes = [w.returncode for w in workers]
    if passed_on or 130 in codes or -signal.SIGINT in codes or -signal.SIGTERM in codes:
        return 130
    return next((code for code in codes if code != 0), 0)


def _pump(worker: subprocess.Popen, prefix: str) -> None:
    assert worker.stdout is not None
    for line in worker.stdout:
        print(prefix + line, end="", flush=True)
