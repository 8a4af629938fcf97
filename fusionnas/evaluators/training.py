"""The training engine: the one step loop every network here trains with, and what goes with it.

Proxy training (:func:`~fusionnas.evaluators.proxy.train_proxy`), the
weight-sharing supernet (:func:`~fusionnas.evaluators.supernet.train_supernet`)
and full training (:func:`fusionnas.results.train.train_arch`, through the
proxy) differ only in how one step's loss is computed, so that is the one
thing they pass to :func:`run_steps`; the loop does the rest. Batches come
from :func:`endless_batches`, accuracy from :func:`evaluate`; :func:`eval_mode`
and :func:`train_mode` switch a model's mode for a block and restore it, and
:func:`atomic_save` writes a checkpoint that a crash cannot leave half-written.

Example:
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # doctest: +SKIP
    >>> batches = endless_batches(x, y, 32, mean=(0.5,), std=(0.25,), generator=generator)  # doctest: +SKIP
    >>> def loss_at(step):  # doctest: +SKIP
    ...     xb, yb = next(batches)
    ...     return nn.functional.cross_entropy(model(xb), yb)
    >>> factor = cosine_with_warmup(100, warmup_fraction=0.05)  # doctest: +SKIP
    >>> run_steps(loss_at, optimizer, 100, lr=lambda step: 0.1 * factor(step))  # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

from fusionnas.atomic import atomic_path
from fusionnas.evaluators.data import iterate_batches

__all__ = [
    "run_steps",
    "endless_batches",
    "evaluate",
    "eval_mode",
    "train_mode",
    "atomic_save",
    "cosine_with_warmup",
    "param_groups",
]


def run_steps(
    loss_at: Callable[[int], torch.Tensor], optimizer: torch.optim.Optimizer, total: int, *, done: int = 0,
    lr: Callable[[int], float] | None = None, scaler: torch.amp.GradScaler | None = None,
    on_step: Callable[[int], None] | None = None,
) -> int:
    """Take optimiser steps ``done + 1`` to ``total`` (counted from 1); the steps done at the end.

    A step: ``loss_at(step)`` runs the forward pass (drawing its own batch, so
    no batch is drawn beyond the last step), the gradients are zeroed, every
    parameter group gets the learning rate ``lr(step - 1)`` (groups that
    ``loss_at`` added included; ``None``: left as they are), the loss goes
    backward (through ``scaler`` when given, for fp16), the optimiser steps,
    and ``on_step(step)`` runs; an exception it raises ends the training.
    """
    for step in range(done + 1, total + 1):
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        if lr is not None:
            rate = lr(step - 1)
            for group in optimizer.param_groups:
                group["lr"] = rate
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if on_step is not None:
            on_step(step)
    return max(done, total)


def endless_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, *, mean: Sequence[float], std: Sequence[float],
    generator: torch.Generator | None = None, augment: bool = False, resolution: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled whole batches of (x, y), epoch after epoch (see :func:`~fusionnas.evaluators.data.iterate_batches`).

    Each epoch draws its order from ``generator`` only once the one before is
    used up, so the batches depend on the seed and not on how many are taken.
    """
    if len(x) < batch_size:  # not one whole batch: the loop below would never yield
        raise ValueError(f"batch_size={batch_size} is larger than the {len(x)} samples; lower it")
    while True:
        yield from iterate_batches(x, y, batch_size, mean=mean, std=std, shuffle=True, generator=generator,
                                   augment=augment, resolution=resolution, drop_last=True)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, mean: Sequence[float],
    std: Sequence[float], resolution: int | None = None,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on (x, y), in float32; the model is left in eval mode.

    (x, y) should be on the model's device already; batches are taken in order.
    """
    model.eval()
    correct, loss_sum = 0, 0.0
    for xb, yb in iterate_batches(x, y, batch_size, mean=mean, std=std, resolution=resolution):
        logits = model(xb).float()
        loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == yb).sum())
    n = max(1, len(y))
    return correct / n, loss_sum / n


@contextmanager
def _mode(models: tuple[nn.Module, ...], training: bool) -> Iterator[None]:
    flags = [model.training for model in models]
    try:
        for model in models:
            model.train(training)
        yield
    finally:
        for model, flag in zip(models, flags):
            model.train(flag)


def eval_mode(*models: nn.Module) -> AbstractContextManager[None]:
    """``models`` in eval mode inside the block; each one's training flag restored after it, even on an error."""
    return _mode(models, False)


def train_mode(*models: nn.Module) -> AbstractContextManager[None]:
    """``models`` in training mode inside the block; each one's training flag restored after it."""
    return _mode(models, True)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` in one step: a failed or killed save leaves ``path`` as it was."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def cosine_with_warmup(total: int, warmup_fraction: float) -> Callable[[int], float]:
    """The lr multiplier per step: a linear warm-up over ``warmup_fraction`` of ``total``, then a cosine."""
    warmup = min(total - 1, math.ceil(total * warmup_fraction)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:  # lr multiplier before optimizer step `step` (0-based)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def param_groups(params: Iterable[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights with >= 2 dims only (not BN, biases, thresholds, scales)."""
    decay, no_decay = [], []
    for param in params:
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
