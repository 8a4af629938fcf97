"""Whole networks timed against a reference run beside them: the ratio, its scale, the protocol."""
import pytest
import torch
from torch import nn

import fusionnas.evaluators.deployed as deployed
from _runtimes import runtime_params
from fusionnas.evaluators.deployed import DeployedLatencyMeter, WholeLatency, calibrate_reference, time_against


class FakeClock:
    """``time.perf_counter`` for the module under test: it moves only when a fake runner runs."""

    def __init__(self) -> None:
        self.now = 0.0
        self.order: list[str] = []

    def __call__(self) -> float:
        return self.now

    def runner(self, name: str, seconds):
        def run() -> None:
            self.order.append(name)
            self.now += seconds() if callable(seconds) else seconds

        return run


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(deployed.time, "perf_counter", fake)
    monkeypatch.setattr(deployed.time, "sleep", lambda s: None)
    return fake


def test_the_ratio_is_taken_between_adjacent_runs_so_a_slow_state_cancels(clock):
    # The machine switches to a state 1.6x slower every 3 pairs; within a pair both runs share it.
    speed = iter([1.0] * 6 + [1.6] * 6 + [1.0] * 6 + [1.6] * 6 + [1.0] * 200)
    candidate = clock.runner("candidate", lambda: 3e-3 * next(speed))
    reference = clock.runner("reference", lambda: 2e-3 * next(speed))
    assert time_against(candidate, reference, pairs=10, warmup=1) == pytest.approx(1.5)


def test_the_runs_alternate_and_take_turns_going_first(clock):
    time_against(clock.runner("a", 1.0), clock.runner("r", 1.0), pairs=4, warmup=0)
    assert clock.order == ["a", "r", "r", "a", "a", "r", "r", "a"]


def test_the_reference_is_calibrated_on_its_fastest_round(clock):
    # ms of each run (warm-up runs included): a slow round, a fast one, a middling one
    times = iter([5.0] * (5 + 10) + [2.0] * (1 + 10) + [3.0] * (1 + 10))
    reference = clock.runner("r", lambda: next(times) / 1e3)
    assert calibrate_reference(reference, rounds=3, repeats=10) == pytest.approx(2.0, rel=1e-6)


def test_whole_latency_is_the_ratio_times_the_reference():
    assert WholeLatency(ratio=1.5, reference_ms=2.0).ms == 3.0


def test_bad_pairs_are_refused():
    with pytest.raises(ValueError, match="pairs must be >= 1, got 0"):
        time_against(lambda: None, lambda: None, pairs=0)


def small(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 4))


@pytest.mark.parametrize("runtime", runtime_params())
def test_a_network_is_measured_in_each_runtime_and_keeps_its_mode(runtime):
    meter = DeployedLatencyMeter(small(8), (3, 8, 8), runtime, pairs=3, reference_ms=0.5)
    model = small(16).train()
    threads = torch.get_num_threads()
    whole = meter.measure(model)
    assert whole.reference_ms == 0.5 and whole.ratio > 0 and whole.ms == pytest.approx(whole.ratio * 0.5)
    assert model.training and torch.get_num_threads() == threads


def test_the_reference_is_calibrated_once_when_not_given(monkeypatch):
    calls = []
    monkeypatch.setattr(deployed, "calibrate_reference", lambda run: calls.append(run) or 0.25)
    meter = DeployedLatencyMeter(small(8), (3, 8, 8), "torch", pairs=2)
    assert meter.measure(small(8)).reference_ms == 0.25 and meter.measure(small(4)).reference_ms == 0.25
    assert len(calls) == 1
