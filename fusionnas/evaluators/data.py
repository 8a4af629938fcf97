"""Datasets as in-memory uint8 tensors, seeded splits and a fast batched loader.

Every dataset loads into a :class:`DataSplits`: images (N, C, H, W) uint8 and
labels (N,) int64 for a training and a validation split (plus CIFAR's test
set). The validation split is held out of the training files with a seeded,
stratified draw, so it never overlaps training. Batches are cut, augmented
(random crop with 4-pixel padding + horizontal flip, vectorised over the
batch), resized and normalised as whole tensors by :func:`iterate_batches`: on
two CPU cores that is far faster than a ``DataLoader`` decoding one image at a
time.

The datasets themselves (``list_datasets()``: cifar10, cifar100, imagefolder,
digits, synthetic) are registered in :mod:`fusionnas.evaluators.datasets`.

Example:
    >>> data = get_dataset("digits", seed=0)
    >>> data.input_shape, data.num_classes
    ((3, 32, 32), 10)
"""
from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from fusionnas.errors import UserError
from fusionnas.evaluators.datasets import (
    DatasetUnavailableError,
    RawDataset,
    dataset_loader,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DataSplits",
    "DatasetUnavailableError",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "RawDataset",
    "iterate_batches",
    "prepare_batch",
    "random_crop_flip",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True, eq=False)
class DataSplits:
    """A dataset in memory: uint8 images (N, C, H, W) and int64 labels per split.

    ``mean``/``std`` (per channel, on the 0-1 scale) normalise batches;
    ``augment`` says whether crop + flip suits the images (not for digits).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    augment: bool = False
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    def __post_init__(self) -> None:
        splits = [("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)]
        if self.x_test is not None or self.y_test is not None:
            splits.append(("test", self.x_test, self.y_test))
        for split, x, y in splits:
            if x is None or y is None or x.dim() != 4 or y.shape != (x.shape[0],):
                raise UserError(
                    f"{self.name}: {split} images must be (N, C, H, W) with (N,) labels, got "
                    f"{None if x is None else tuple(x.shape)} and {None if y is None else tuple(y.shape)}"
                )
            if x.shape[1:] != self.x_train.shape[1:]:
                raise UserError(
                    f"{self.name}: {split} images are {tuple(x.shape[1:])}, "
                    f"training images {tuple(self.x_train.shape[1:])}"
                )
        channels = self.x_train.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise UserError(
                f"{self.name}: mean and std need one value per channel ({channels}), "
                f"got {len(self.mean)} and {len(self.std)}"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    def describe(self) -> dict[str, Any]:
        """What a deployed model needs to know of its data, JSON-able: ``name``, ``classes`` (output i is
        class i), ``mean`` and ``std`` (per channel, 0-1 scale) and ``image_shape`` (C, H, W)."""
        return {"name": self.name, "classes": list(self.classes), "mean": list(self.mean), "std": list(self.std),
                "image_shape": list(self.input_shape)}

    def __repr__(self) -> str:
        test = "" if self.x_test is None else f", test={len(self.x_test)}"
        return (
            f"DataSplits({self.name!r}, train={len(self.x_train)}, val={len(self.x_val)}{test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )

    def subsample(self, fraction: float, seed: int = 0) -> DataSplits:
        """A copy whose training split keeps a seeded, stratified ``fraction`` (validation unchanged)."""
        _check_fraction("fraction", fraction, allow_one=True)
        if fraction == 1.0:
            return self
        index = _stratified_subset(self.y_train, fraction, _generator(seed))
        return replace(self, x_train=self.x_train[index], y_train=self.y_train[index])


def get_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    val_fraction: float | None = None,
    fraction: float = 1.0,
    download: bool = False,
    **options: Any,
) -> DataSplits:
    """Load dataset ``name`` and split off a seeded, stratified validation set.

    Args:
        name: one of :func:`list_datasets`.
        root: folder holding the files; default ``$FUSIONNAS_DATA`` or
            ``~/.cache/fusionnas/data`` (``imagefolder`` needs it).
        seed: seeds the validation split, the subsample and synthetic data.
        val_fraction: share of the training files held out for validation
            (default per dataset: 0.1; 0.2 for digits).
        fraction: share of the remaining training split to keep (stratified);
            the validation split does not depend on it.
        download: for CIFAR, download the files when they are missing.
        **options: dataset options (``image_size`` for imagefolder;
            ``num_samples``, ``num_classes``, ``image_size`` for synthetic).
    """
    loader = dataset_loader(name)
    _check_fraction("fraction", fraction, allow_one=True)
    if val_fraction is not None:
        _check_fraction("val_fraction", val_fraction, allow_one=False)
    _check_options(name, loader, options)
    path = Path(root).expanduser() if root is not None else None
    raw = loader(path, seed=seed, download=download, **options)
    train, val = _split(raw, name, raw.val_fraction if val_fraction is None else val_fraction, fraction, seed)
    x_train = raw.x[train]
    mean, std = raw.mean, raw.std
    if mean is None or std is None:
        mean, std = _channel_stats(x_train)
    splits = DataSplits(
        name=name, x_train=x_train, y_train=raw.y[train], x_val=raw.x[val], y_val=raw.y[val],
        num_classes=len(raw.classes), mean=tuple(mean), std=tuple(std), classes=raw.classes,
        augment=raw.augment, x_test=raw.x_test, y_test=raw.y_test,
    )
    logger.info("loaded %r", splits)
    return splits


def _check_options(name: str, loader: Callable[..., RawDataset], options: dict[str, Any]) -> None:
    """A UserError naming the options ``loader`` does not take (and those it does)."""
    accepted = [p for p in inspect.signature(loader).parameters if p not in ("root", "seed", "download")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(
            f"dataset {name!r} takes no option {', '.join(unknown)}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )


# -- splits --------------------------------------------------------------------------------


def _split(raw: RawDataset, name: str, val_fraction: float, fraction: float,
           seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices into ``raw``: a seeded, stratified validation split, then ``fraction`` of the rest."""
    generator = _generator(seed)
    train, val = _stratified_split(raw.y, val_fraction, generator)
    if len(val) == 0 or len(train) == 0:
        raise UserError(
            f"val_fraction={val_fraction} of {len(raw.y)} {name} images leaves "
            f"{len(train)} for training and {len(val)} for validation; both need at least one"
        )
    if fraction < 1.0:
        train = train[_stratified_subset(raw.y[train], fraction, generator)]
    return train, val


def _check_fraction(name: str, value: float, *, allow_one: bool) -> None:
    upper_ok = value <= 1 if allow_one else value < 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value and upper_ok):
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise UserError(f"{name} must be in {interval}, got {value!r}")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _stratified_split(
    y: torch.Tensor, val_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (train, val) indices; each class gives ``round(n_c * val_fraction)`` to val."""
    train, val = [], []
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = round(len(members) * val_fraction)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


def _stratified_subset(y: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of a seeded ``fraction`` of ``y``, at least one per class present."""
    keep = []
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()
        n_keep = max(1, round(len(members) * fraction))
        keep.append(members[torch.randperm(len(members), generator=generator)[:n_keep]])
    return torch.sort(torch.cat(keep)).values


def _channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images on the 0-1 scale."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double() / 255
    std = flat.std(dim=1).clamp_min(1e-3)  # a constant channel must not divide by zero
    return flat.mean(dim=1).tolist(), std.tolist()


# -- batches -------------------------------------------------------------------------------


def random_crop_flip(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop after zero ``padding`` and a random horizontal flip, per image, in two gathers.

    Same distribution as torchvision's ``RandomCrop(H, padding)`` followed by
    ``RandomHorizontalFlip()``; any dtype, (N, C, H, W) in and out. The random
    draws come from ``generator`` (on the CPU) whatever device ``x`` is on.
    """
    n, c, h, w = (int(d) for d in x.shape)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    flip = (torch.randint(0, 2, (n,), generator=generator) == 1).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))  # (N, C, H + 2p, W + 2p)
    rows = top[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + left[:, None]  # (N, W): crop, then flip
    x = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def prepare_batch(
    x: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    augment: bool = False,
    generator: torch.Generator | None = None,
    resolution: int | None = None,
) -> torch.Tensor:
    """uint8 (or 0-1 float) images -> normalised float32 (N, C, r, r): augment, scale, resize, normalise."""
    if augment:
        x = random_crop_flip(x, generator=generator)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    if resolution is not None and tuple(x.shape[2:]) != (resolution, resolution):
        smaller = resolution < min(x.shape[2], x.shape[3])
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=smaller)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: bool = False,
    resolution: int | None = None,
    device: torch.device | str | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over (x, y) in batches of prepared images (see :func:`prepare_batch`) and labels.

    The order (``shuffle``) and the augmentation draw from ``generator``, so a
    seeded generator gives the same batches every time. Batches move to
    ``device`` as uint8, before the float conversion.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(x)
    order = torch.randperm(n, generator=generator).to(x.device) if shuffle else None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if drop_last and stop - start < batch_size:
            break
        if order is None:
            xb, yb = x[start:stop], y[start:stop]
        else:
            xb, yb = x[order[start:stop]], y[order[start:stop]]
        if device is not None:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        xb = prepare_batch(xb, mean, std, augment=augment, generator=generator, resolution=resolution)
        yield xb, yb
