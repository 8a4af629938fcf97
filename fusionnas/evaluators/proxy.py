"""Proxy training: train a built architecture for a small budget and report its validation accuracy.

SGD with Nesterov momentum, a short linear warm-up into a cosine decay,
label smoothing, the operators' registered loss terms (the DCT layers'
frequency regulariser; :func:`fusionnas.layers.operator_loss`, weighted by
``operator_loss_weight``) added to the loss, and at the end the batch-norm statistics
recomputed for the final weights (:mod:`fusionnas.evaluators.batch_norm`; without it a
50-step run is judged by statistics of weights it no longer has). Mixed precision runs on CUDA only. On the
CPU a seed fixes everything (weights aside: the caller builds the model),
so two runs give the same loss curve.

A run that cannot give an accuracy raises a :class:`ProxyTrainingError`:
:class:`TrainingDiverged` for a NaN/inf loss, :class:`OutOfMemory` when the
device runs out of memory. The search records these as failed trials.

Example:
    >>> data = get_dataset("digits")
    >>> result = train_proxy(model, data, ProxyBudget(epochs=2))  # doctest: +SKIP
    >>> result.val_accuracy  # doctest: +SKIP
    0.93
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.evaluators.batch_norm import recalibrate_batch_norm
from fusionnas.evaluators.data import DataSplits, iterate_batches
from fusionnas.evaluators.training_options import TRAINING_OPTIONS, is_int, is_number, training_option_problems
from fusionnas.evaluators.training import cosine_with_warmup, endless_batches, evaluate, param_groups, run_steps
from fusionnas.layers import operator_loss

__all__ = [
    "ProxyBudget",
    "ProxyResult",
    "ProxyTrainingError",
    "TrainingDiverged",
    "OutOfMemory",
    "train_proxy",
    "planned_steps",
    "resolve_device",
    "validate",
    "eval_batch_size",
    "recalibrate",
    "sgd",
]

logger = logging.getLogger(__name__)


class ProxyTrainingError(RuntimeError):
    """Proxy training gave no result; ``reason`` is a short tag for the trial record."""

    reason = "failed"


class TrainingDiverged(ProxyTrainingError):
    """The loss became NaN or infinite (``step`` counts from 1; 0 means validation)."""

    reason = "diverged"

    def __init__(self, message: str, step: int, loss: float) -> None:
        super().__init__(message)
        self.step = step
        self.loss = loss


class OutOfMemory(ProxyTrainingError):
    """The device ran out of memory; a smaller batch or resolution may fit."""

    reason = "out_of_memory"


@dataclass(frozen=True)
class ProxyBudget:
    """How much (and how) to train one architecture.

    Set ``epochs`` or ``steps`` (neither: one epoch). One epoch is one pass
    over the training split after ``data_fraction`` is applied.
    """

    epochs: float | None = None
    steps: int | None = None
    data_fraction: float = 1.0  # stratified, seeded share of the training split
    batch_size: int = 128
    lr: float = 0.05  # peak learning rate, reached after the warm-up
    momentum: float = 0.9  # Nesterov
    weight_decay: float = 4e-5  # on weights with >= 2 dims only (not BN, biases, thresholds, scales)
    warmup_fraction: float = 0.05  # share of the steps spent ramping the lr up linearly
    label_smoothing: float = 0.1
    resolution: int | None = None  # train and validate at r x r (None: the data's size)
    augment: bool | None = None  # crop + flip; None: the dataset's default
    operator_loss_weight: float = 1e-3  # weight of the operators' loss terms (the DCT frequency regulariser)
    bn_recalibration_batches: int = 8  # BN statistics recomputed on so many training batches at the end (0: off)
    eval_batch_size: int = 512  # on a CPU at most as many images as keep activations in cache (see validate)
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + GradScaler)

    def __post_init__(self) -> None:
        if self.epochs is not None and self.steps is not None:
            raise UserError(
                f"set epochs or steps, not both (got epochs={self.epochs!r}, steps={self.steps!r})"
            )
        for name, problem, _ in training_option_problems({f: getattr(self, f) for f in TRAINING_OPTIONS}):
            raise UserError(f"{name} {problem}")
        if not (is_int(self.eval_batch_size) and self.eval_batch_size >= 1):
            raise UserError(f"eval_batch_size must be a positive integer, got {self.eval_batch_size!r}")
        for name in ("momentum", "warmup_fraction", "label_smoothing"):
            value = getattr(self, name)
            if not (is_number(value) and 0 <= value < 1):
                raise UserError(f"{name} must be in [0, 1), got {value!r}")
        for name in ("weight_decay", "operator_loss_weight"):
            value = getattr(self, name)
            if not (is_number(value) and value >= 0):
                raise UserError(f"{name} must be >= 0, got {value!r}")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise UserError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for study records)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ProxyResult:
    """What a proxy run measured; ``loss_curve`` is the training loss (with regulariser) per step."""

    val_accuracy: float
    val_loss: float  # cross-entropy without label smoothing
    loss_curve: list[float]
    train_seconds: float
    eval_seconds: float
    steps: int
    epochs: float
    train_samples: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for study records)."""
        return dataclasses.asdict(self)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is a ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={device!r} but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    return resolved


def _is_oom(error: BaseException) -> bool:
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def train_proxy(
    model: nn.Module, data: DataSplits, budget: ProxyBudget | None = None, *, progress: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> ProxyResult:
    """Train ``model`` in place on ``data`` within ``budget``; return its validation accuracy.

    The model moves to the budget's device and is left there in eval mode.
    ``on_step(step)`` runs after every optimiser step; an exception it raises
    (e.g. ``KeyboardInterrupt`` for a requested stop) ends the training.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        OutOfMemory: the device ran out of memory.
        ValueError: the model's outputs do not match the data's classes.
    """
    budget = budget or ProxyBudget()
    device = resolve_device(budget.device)
    failure = None
    try:
        return _train(model, data, budget, device, progress, on_step)
    except Exception as error:  # noqa: BLE001 (only OOM is translated; the rest re-raised)
        if not _is_oom(error):
            raise
        failure = f"{device} ran out of memory ({type(error).__name__}: {str(error).splitlines()[0]})"
    # Outside the except block, so the failed step's tensors (held by the traceback) are freed.
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    raise OutOfMemory(
        f"{failure}, training at batch_size={budget.batch_size}; lower batch_size or resolution"
    )


def planned_steps(data: DataSplits, budget: ProxyBudget) -> tuple[int, int]:
    """(optimiser steps in all, steps per epoch) that :func:`train_proxy` takes on ``data`` within ``budget``."""
    return _schedule(len(data.subsample(budget.data_fraction, seed=budget.seed).y_train), budget)


def _schedule(n_train: int, budget: ProxyBudget) -> tuple[int, int]:
    per_epoch = n_train // min(budget.batch_size, n_train)
    if budget.steps is not None:
        return budget.steps, per_epoch
    return max(1, round((budget.epochs or 1.0) * per_epoch)), per_epoch


def sgd(params: Iterable[nn.Parameter], budget: ProxyBudget, total: int) -> tuple[
        torch.optim.Optimizer, Callable[[int], float]]:
    """The proxy's optimiser (SGD, Nesterov) and its learning rate per step (0-based) for
    :func:`~fusionnas.evaluators.training.run_steps`: a warm-up into a cosine over ``total`` steps."""
    optimizer = torch.optim.SGD(param_groups(params, budget.weight_decay), lr=budget.lr, momentum=budget.momentum,
                                nesterov=budget.momentum > 0)
    factor = cosine_with_warmup(total, budget.warmup_fraction)
    return optimizer, lambda step: budget.lr * factor(step)


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _train(
    model: nn.Module, data: DataSplits, budget: ProxyBudget, device: torch.device, progress: bool,
    on_step: Callable[[int], None] | None = None,
) -> ProxyResult:
    train = data.subsample(budget.data_fraction, seed=budget.seed)
    total, per_epoch = _schedule(len(train.x_train), budget)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):  # seed dropout etc., restore after
        torch.manual_seed(budget.seed)
        generator = torch.Generator().manual_seed(budget.seed)
        start = time.perf_counter()
        curve = _fit(model, train, budget, device, generator, total, progress, on_step)
        recalibrate(model, train, budget, device, generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - start

        start = time.perf_counter()
        accuracy, val_loss = validate(model, data, budget, device)
        eval_seconds = time.perf_counter() - start
    if not math.isfinite(val_loss):
        raise TrainingDiverged(
            f"validation loss is {val_loss} after {total} steps; lower lr or check the architecture",
            step=0, loss=val_loss,
        )
    result = ProxyResult(
        val_accuracy=accuracy, val_loss=val_loss, loss_curve=curve, train_seconds=train_seconds,
        eval_seconds=eval_seconds, steps=total, epochs=total / per_epoch, train_samples=len(train.x_train),
        device=str(device),
    )
    logger.info(
        "proxy: %d steps (%.2f epochs) in %.1fs on %s, val accuracy %.4f, val loss %.4f",
        total, result.epochs, train_seconds, device, accuracy, val_loss,
    )
    return result


def _fit(model: nn.Module, train: DataSplits, budget: ProxyBudget, device: torch.device, generator: torch.Generator,
         total: int, progress: bool, on_step: Callable[[int], None] | None) -> list[float]:
    """Take the ``total`` optimiser steps on ``train`` (batches drawn from ``generator``); the loss curve."""
    amp_dtype = _amp_dtype(device, budget.amp)
    batches = endless_batches(  # whole batches only: BN needs > 1 sample
        train.x_train.to(device), train.y_train.to(device), min(budget.batch_size, len(train.x_train)),
        mean=train.mean, std=train.std, generator=generator, resolution=budget.resolution,
        augment=train.augment if budget.augment is None else budget.augment)
    model.to(device).train()
    optimizer, lr = sgd(model.parameters(), budget, total)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=budget.label_smoothing)
    curve: list[float] = []

    def loss_at(step: int) -> torch.Tensor:
        xb, yb = next(batches)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(xb)
            if step == 1:
                _check_logits(logits, train.num_classes)
            loss = criterion(logits.float(), yb)
            if budget.operator_loss_weight > 0:
                loss = loss + budget.operator_loss_weight * operator_loss(model).float()
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"training loss is {value} at step {step} of {total} (lr={budget.lr}); "
                                   f"lower lr or check the architecture", step=step, loss=value)
        curve.append(value)
        return loss

    bar = _progress_bar(total, progress)

    def after(step: int) -> None:
        bar.update(1)
        if step % 10 == 0 or step == total:
            bar.set_postfix(loss=f"{curve[-1]:.3f}")
        if on_step is not None:
            on_step(step)

    try:
        run_steps(loss_at, optimizer, total, lr=lr, scaler=scaler, on_step=after)
    finally:
        bar.close()
    return curve


def recalibrate(model: nn.Module, data: DataSplits, budget: ProxyBudget, device: torch.device,
                generator: torch.Generator | None = None) -> None:
    """Recompute the batch-norm statistics of ``model`` on ``budget.bn_recalibration_batches``
    unaugmented training batches (as the validation split is seen); nothing when that is 0."""
    if not budget.bn_recalibration_batches:
        return
    batch_size = min(budget.batch_size, len(data.x_train))
    plain = iterate_batches(data.x_train.to(device), data.y_train.to(device), batch_size, mean=data.mean,
                            std=data.std, shuffle=True, generator=generator, resolution=budget.resolution,
                            drop_last=True)
    recalibrate_batch_norm(model, (xb for xb, _ in islice(plain, budget.bn_recalibration_batches)))


# A CPU evaluates fastest in batches whose activations stay in its caches: over digits' 360
# validation images on one thread, 128 images a batch at 16x16 took 1.5 s against 2.1 s for
# 512, and 32 at 32x32 4.2 s against 8.2 s. So a CPU batch holds at most this many pixels.
_CPU_EVAL_PIXELS = 128 * 16 * 16


def eval_batch_size(budget: ProxyBudget, device: torch.device, image_size: tuple[int, int]) -> int:
    """Images per validation batch: ``budget.eval_batch_size``, on a CPU at most ``_CPU_EVAL_PIXELS``
    pixels' worth at the budget's resolution (else ``image_size``)."""
    if device.type != "cpu":
        return budget.eval_batch_size
    pixels = budget.resolution**2 if budget.resolution else image_size[0] * image_size[1]
    return max(1, min(budget.eval_batch_size, _CPU_EVAL_PIXELS // pixels))


def validate(model: nn.Module, data: DataSplits, budget: ProxyBudget, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode on the validation split.

    In float32 even where training used mixed precision: evaluation is a small
    share of the time, and the transform layers' inference paths (matmuls
    into preallocated outputs) do not run under autocast.
    """
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    return evaluate(model, x_val, y_val, eval_batch_size(budget, device, tuple(x_val.shape[-2:])),
                    mean=data.mean, std=data.std, resolution=budget.resolution)


def _check_logits(logits: torch.Tensor, num_classes: int) -> None:
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise UserError(
            f"the model outputs shape {tuple(logits.shape)} but the data has {num_classes} classes; "
            f"build the model with num_classes={num_classes}"
        )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc="proxy training", unit="step", leave=False, dynamic_ncols=True)
