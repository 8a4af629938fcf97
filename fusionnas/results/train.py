"""Train an exported architecture (arch.json) fully and save a checkpoint.

The training loop is the proxy trainer's (SGD with Nesterov momentum, warm-up
and cosine decay, label smoothing; mixed precision on CUDA), run for whole
epochs over the full training split. The checkpoint holds the architecture
JSON, the state_dict, the options and the validation (and, where the
dataset has one, test) accuracy::

    ckpt = torch.load("checkpoint.pt", weights_only=True)
    model = get_space(...).build(Arch.from_json(ckpt["arch"]), num_classes=ckpt["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fusionnas.errors import UserError
from fusionnas.evaluators.data import get_dataset
from fusionnas.evaluators.proxy import ProxyBudget, planned_steps, resolve_device, train_proxy
from fusionnas.evaluators.training import atomic_save, evaluate
from fusionnas.spaces import Arch, get_space

__all__ = ["TrainProgress", "TrainResult", "read_arch", "train_arch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoint went and what the trained network scored."""

    checkpoint: Path
    val_accuracy: float
    test_accuracy: float | None
    train_seconds: float
    epochs: float


@dataclass(frozen=True)
class TrainProgress:
    """Where a full training stands after an epoch (or the last step of a fractional one)."""

    epoch: float  # epochs done
    epochs: float
    step: int
    steps: int
    elapsed_s: float
    eta_s: float  # time left at the pace so far

    def __str__(self) -> str:
        return (f"epoch {self.epoch:g}/{self.epochs:g} (step {self.step}/{self.steps}): "
                f"{_duration(self.elapsed_s)} elapsed, ETA {_duration(self.eta_s)}")


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def read_arch(path: str | Path) -> Arch:
    """The architecture in a JSON file; an unreadable or invalid file is a ValueError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such architecture file; `fusionnas export` writes arch.json") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read it ({error})") from None
    try:
        return Arch.from_json(text)
    except ValueError as error:
        raise UserError(f"{path}: {error}; write it again with `fusionnas export` or "
                         f"`fusionnas show SPACE --json`") from None


def train_arch(arch_path: str | Path, dataset: str, epochs: float, out: str | Path | None = None, *,
               root: str | None = None, batch_size: int = 128, lr: float = 0.05, resolution: int | None = None,
               data_fraction: float = 1.0, device: str = "auto", seed: int = 0, progress: bool = False,
               init: str | Path | None = None, force: bool = False, download: bool = False,
               on_epoch: Callable[[TrainProgress], None] | None = None) -> TrainResult:
    """Train the architecture in ``arch_path`` on ``dataset`` for ``epochs``; save a checkpoint.

    ``out`` defaults to ``checkpoint.pt`` beside the architecture file; an
    existing non-empty file is an error unless ``force`` (then it is replaced
    once training has finished). ``init``: start from these weights (the
    ``weights.pt`` of ``fusionnas export``, or a checkpoint of this function)
    instead of a fresh initialisation. ``download``: fetch missing dataset
    files (CIFAR). ``on_epoch`` receives a :class:`TrainProgress` after every epoch.
    """
    arch = read_arch(arch_path)
    out = Path(out) if out is not None else Path(arch_path).with_name("checkpoint.pt")
    if out.is_dir():
        raise UserError(f"`out` {out} is a folder; name the checkpoint file, e.g. {out / 'checkpoint.pt'}")
    if out.is_file() and out.stat().st_size > 0 and not force:
        raise UserError(f"`out` {out} exists; choose another file or use `force` to overwrite it")
    if not out.parent.is_dir():
        raise UserError(f"`out` {out}: folder {out.parent} does not exist; create it first")
    budget = ProxyBudget(epochs=epochs, batch_size=batch_size, lr=lr, resolution=resolution,
                         data_fraction=data_fraction, device=device, seed=seed)
    state = _read_weights(Path(init)) if init is not None else None
    data = get_dataset(dataset, root, seed=seed, download=download)
    model = get_space(arch.space).build(arch, num_classes=data.num_classes)
    if state is not None:
        _load_weights(model, state, Path(init), arch)
    logger.info("training %s (%s) on %s for %g epochs", arch.archid, arch.space, dataset, epochs)
    on_step = _epoch_reporter(planned_steps(data, budget), epochs, on_epoch) if on_epoch is not None else None
    result = train_proxy(model, data, budget, progress=progress, on_step=on_step)
    test = None
    if data.x_test is not None and data.y_test is not None:
        on = resolve_device(device)
        test, _ = evaluate(model, data.x_test.to(on), data.y_test.to(on), 512, mean=data.mean, std=data.std,
                           resolution=resolution)
    checkpoint = {
        "arch": arch.to_json(), "archid": arch.archid, "num_classes": data.num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "dataset": dataset, "budget": budget.to_dict(), "val_accuracy": result.val_accuracy,
        "test_accuracy": test, "epochs": result.epochs, "train_seconds": result.train_seconds,
        "init": str(init) if init is not None else None, "data": data.describe(),
    }
    atomic_save(checkpoint, out)
    return TrainResult(out, result.val_accuracy, test, result.train_seconds, result.epochs)


def _read_weights(path: Path) -> dict:
    """The state_dict in ``path``: an exported weights.pt, or a checkpoint holding one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"`init` {path}: no such file; pass the weights.pt that `fusionnas export` wrote") from None
    except Exception as error:  # noqa: BLE001 (pickle, zip or torch errors: all mean "not a weights file")
        raise UserError(f"`init` {path}: not a torch weights file ({type(error).__name__}); pass the weights.pt "
                        f"that `fusionnas export` wrote") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"`init` {path} holds a {type(state).__name__}, not a state_dict; pass the weights.pt "
                        f"that `fusionnas export` wrote")
    return state


def _load_weights(model: torch.nn.Module, state: dict, path: Path, arch: Arch) -> None:
    """Load ``state`` (read from ``path``) into ``model``; one that does not fit is one UserError
    naming the first tensor that differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    if missing or unexpected or shaped:
        first = (f"{shaped[0]} is {tuple(getattr(state[shaped[0]], 'shape', ()))} there, "
                 f"{tuple(own[shaped[0]].shape)} here"
                 if shaped else f"first {'missing' if missing else 'unexpected'}: {(missing or unexpected)[0]}")
        raise UserError(f"`init` {path} does not fit {arch.archid} with this dataset's classes ({len(missing)} "
                        f"missing, {len(unexpected)} unexpected, {len(shaped)} other shapes; {first}); pass "
                        f"the weights.pt exported beside this arch.json, trained on as many classes")
    model.load_state_dict(state)


def _epoch_reporter(plan: tuple[int, int], epochs: float,
                    on_epoch: Callable[[TrainProgress], None]) -> Callable[[int], None]:
    """An ``on_step`` for :func:`train_proxy` that calls ``on_epoch`` after every epoch and the last step."""
    total, per_epoch = plan
    start = time.perf_counter()

    def on_step(step: int) -> None:
        if step % per_epoch and step != total:
            return
        elapsed = time.perf_counter() - start
        done = min(epochs, step / per_epoch)
        on_epoch(TrainProgress(round(done, 3), epochs, step, total, elapsed, elapsed / step * (total - step)))

    return on_step
