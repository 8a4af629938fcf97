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
from dataclasses import dataclass
from pathlib import Path

import torch

from fusionnas.errors import UserError
from fusionnas.evaluators.data import get_dataset, iterate_batches
from fusionnas.evaluators.proxy import ProxyBudget, resolve_device, train_proxy
from fusionnas.spaces import Arch, get_space

__all__ = ["TrainResult", "read_arch", "train_arch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoint went and what the trained network scored."""

    checkpoint: Path
    val_accuracy: float
    test_accuracy: float | None
    train_seconds: float
    epochs: float


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


@torch.no_grad()
def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std, resolution: int | None,
              device: torch.device) -> float:
    model.eval()
    correct = 0
    for xb, yb in iterate_batches(x.to(device), y.to(device), 512, mean=mean, std=std, resolution=resolution):
        correct += int((model(xb).argmax(dim=1) == yb).sum())
    return correct / max(1, len(y))


def train_arch(arch_path: str | Path, dataset: str, epochs: float, out: str | Path | None = None, *,
               root: str | None = None, batch_size: int = 128, lr: float = 0.05, resolution: int | None = None,
               data_fraction: float = 1.0, device: str = "auto", seed: int = 0,
               progress: bool = False) -> TrainResult:
    """Train the architecture in ``arch_path`` on ``dataset`` for ``epochs``; save a checkpoint.

    ``out`` defaults to ``checkpoint.pt`` beside the architecture file; an
    existing file is replaced only once training has finished.
    """
    arch = read_arch(arch_path)
    out = Path(out) if out is not None else Path(arch_path).with_name("checkpoint.pt")
    if not out.parent.is_dir():
        raise UserError(f"`out` {out}: folder {out.parent} does not exist; create it first")
    budget = ProxyBudget(epochs=epochs, batch_size=batch_size, lr=lr, resolution=resolution,
                         data_fraction=data_fraction, device=device, seed=seed)
    data = get_dataset(dataset, root, seed=seed)
    model = get_space(arch.space).build(arch, num_classes=data.num_classes)
    logger.info("training %s (%s) on %s for %g epochs", arch.archid, arch.space, dataset, epochs)
    result = train_proxy(model, data, budget, progress=progress)
    test = None
    if data.x_test is not None and data.y_test is not None:
        test = _accuracy(model, data.x_test, data.y_test, data.mean, data.std, resolution,
                         resolve_device(device))
    checkpoint = {
        "arch": arch.to_json(), "archid": arch.archid, "num_classes": data.num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "dataset": dataset, "budget": budget.to_dict(), "val_accuracy": result.val_accuracy,
        "test_accuracy": test, "epochs": result.epochs, "train_seconds": result.train_seconds,
    }
    tmp = out.with_name(out.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out)
    return TrainResult(out, result.val_accuracy, test, result.train_seconds, result.epochs)
