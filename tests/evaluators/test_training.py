"""The training engine: the step loop, endless batches, evaluation, mode switching, atomic saves."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fusionnas.evaluators.data import iterate_batches
from fusionnas.evaluators.training import (
    atomic_save,
    cosine_with_warmup,
    endless_batches,
    eval_mode,
    evaluate,
    run_steps,
    train_mode,
)

NORM = dict(mean=(0.0,), std=(1.0,))


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 1x2x2 uint8 images whose every pixel is the sample's index, labelled with it."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return x, torch.arange(n)


# -- eval_mode / train_mode ------------------------------------------------------------------


@pytest.mark.parametrize("was_training", [True, False])
def test_eval_mode_switches_and_restores_the_flag(was_training: bool) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train(was_training)
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert all(m.training == was_training for m in model.modules())


def test_eval_mode_restores_the_flag_when_the_block_raises() -> None:
    model = nn.Linear(2, 2).train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training


def test_train_mode_and_several_models_restore_each_their_own_flag() -> None:
    a, b = nn.Linear(1, 1).eval(), nn.Linear(1, 1).train()
    with pytest.raises(KeyboardInterrupt), train_mode(a, b):
        assert a.training and b.training
        raise KeyboardInterrupt
    assert not a.training and b.training
    with eval_mode(a, b):
        assert not a.training and not b.training
    assert not a.training and b.training


# -- atomic_save -----------------------------------------------------------------------------


def test_atomic_save_writes_a_loadable_file(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 3, "w": torch.ones(2)}, path)
    atomic_save({"step": 4, "w": torch.zeros(2)}, path)  # replaces
    state = torch.load(path, weights_only=True)
    assert state["step"] == 4 and torch.equal(state["w"], torch.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_atomic_save_that_fails_leaves_the_old_file_and_no_partial_one(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 1}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 (pickle's error type differs between versions)
        atomic_save({"step": 2, "unpicklable": lambda: None}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_atomic_save_that_fails_before_any_file_existed_leaves_nothing(tmp_path) -> None:
    with pytest.raises(Exception):  # noqa: B017
        atomic_save(lambda: None, tmp_path / "new.pt")
    assert list(tmp_path.iterdir()) == []


# -- endless_batches -------------------------------------------------------------------------


def test_endless_batches_wrap_into_a_new_shuffled_epoch() -> None:
    x, y = _images(10)
    stream = endless_batches(x, y, 4, generator=torch.Generator().manual_seed(0), **NORM)
    batches = [next(stream) for _ in range(6)]  # 2 whole batches an epoch: 3 epochs
    assert all(len(yb) == 4 for _, yb in batches)
    epochs = [torch.cat([yb for _, yb in batches[i:i + 2]]) for i in (0, 2, 4)]
    assert all(len(set(epoch.tolist())) == 8 for epoch in epochs)  # no sample twice within an epoch
    assert not all(torch.equal(epochs[0], other) for other in epochs[1:])  # each epoch draws its own order
    for xb, yb in batches:  # images still travel with their labels (pixels scaled to 0-1)
        assert torch.equal((xb[:, 0, 0, 0] * 255).round().long(), yb)


def test_endless_batches_are_consecutive_epochs_of_iterate_batches() -> None:
    x, y = _images(10)
    stream = endless_batches(x, y, 3, generator=torch.Generator().manual_seed(5), **NORM)
    generator = torch.Generator().manual_seed(5)
    expected = [yb for _ in range(3) for _, yb in iterate_batches(x, y, 3, shuffle=True, generator=generator,
                                                                drop_last=True, **NORM)]
    assert all(torch.equal(next(stream)[1], yb) for yb in expected)


def test_endless_batches_need_one_whole_batch() -> None:
    x, y = _images(3)
    with pytest.raises(ValueError, match="batch_size=4"):
        next(endless_batches(x, y, 4, **NORM))


# -- run_steps -------------------------------------------------------------------------------


def test_run_steps_takes_the_steps_left_and_sets_the_lr_before_each() -> None:
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    calls, rates = [], []

    def loss_at(step: int) -> torch.Tensor:
        calls.append(step)
        return model(torch.ones(1, 1)).sum()

    def on_step(step: int) -> None:
        rates.append((step, optimizer.param_groups[0]["lr"]))

    assert run_steps(loss_at, optimizer, 5, done=2, lr=lambda i: 0.1 * i, on_step=on_step) == 5
    assert calls == [3, 4, 5]
    assert rates == [(3, pytest.approx(0.2)), (4, pytest.approx(0.3)), (5, pytest.approx(0.4))]
    assert run_steps(loss_at, optimizer, 5, done=7) == 7 and calls == [3, 4, 5]  # nothing left to do


def test_run_steps_matches_a_lambda_lr_schedule_bit_for_bit() -> None:
    """The loop's per-step lr gives exactly the weights a LambdaLR scheduler stepped after each step does."""
    factor = cosine_with_warmup(12, 0.25)
    x, y = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)), torch.arange(12) % 3

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        return model, torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, nesterov=True)

    model, optimizer = fresh()
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    for step in range(12):
        loss = nn.functional.cross_entropy(model(x[step:step + 1]), y[step:step + 1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    engine, engine_optimizer = fresh()
    run_steps(lambda s: nn.functional.cross_entropy(engine(x[s - 1:s]), y[s - 1:s]), engine_optimizer, 12,
              lr=lambda i: 0.3 * factor(i))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), engine.parameters()))


def test_run_steps_stops_when_on_step_raises() -> None:
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def stop_at_2(step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_steps(lambda s: calls.append(s) or model(torch.ones(1, 1)).sum(), optimizer, 10, on_step=stop_at_2)
    assert calls == [1, 2]


# -- evaluate --------------------------------------------------------------------------------


class _Oracle(nn.Module):
    """Predicts the sample's own index (the pixel value) except for sample 0, and counts its calls."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        index = (x[:, 0, 0, 0] * 255).round().long()  # batches come scaled to 0-1
        guess = torch.where(index == 0, torch.ones_like(index), index)
        return nn.functional.one_hot(guess, self.classes).float() * 10


def test_evaluate_reports_accuracy_and_loss_in_eval_mode() -> None:
    x, y = _images(10)
    model = _Oracle(10).train()
    accuracy, loss = evaluate(model, x, y, 4, **NORM)
    assert accuracy == 0.9 and model.batches == [4, 4, 2] and not model.training
    per_sample = nn.functional.cross_entropy(model(torch.arange(10.0).view(10, 1, 1, 1) / 255), y, reduction="sum")
    assert loss == pytest.approx(float(per_sample) / 10)
