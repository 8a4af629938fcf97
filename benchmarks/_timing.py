"""Side-by-side timing: candidates run interleaved, round after round, in one process."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def time_side_by_side(
    candidates: dict[str, Callable[[], object]], rounds: int = 15, warmup: int = 3
) -> dict[str, float]:
    """Median wall time (ms) of each candidate; the candidates alternate within every round,
    so drifts in clock speed or load hit all of them alike."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}
