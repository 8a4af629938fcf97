"""Where images come from: the dataset registry and the built-in loaders.

A loader, registered with :func:`register_dataset`, returns a :class:`RawDataset`:
the training pool as (N, C, H, W) uint8 images and (N,) int64 labels, plus a
test set where the dataset has one. :func:`fusionnas.evaluators.data.get_dataset`
splits it. Registered here:

* ``cifar10``, ``cifar100``: the python pickles of Krizhevsky's CIFAR in
  ``root``; ``download=True`` fetches them with torchvision where the network
  allows.
* ``imagefolder``: any folder of class folders (``root/cat/x.png``), decoded
  once at ``image_size`` (default 32) and kept in memory.
* ``digits``: scikit-learn's bundled 8x8 digits (1797 images), upsampled to
  32x32 x 3 channels; needs no files, the offline default.
* ``synthetic``: random class-dependent images, for speed tests.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from fusionnas.errors import UserError

__all__ = ["DATA_ENV", "DatasetUnavailableError", "RawDataset", "register_dataset", "list_datasets",
           "dataset_loader", "digits_arrays"]

logger = logging.getLogger(__name__)

DATA_ENV = "FUSIONNAS_DATA"  # default root when none is given
_DEFAULT_ROOT = Path("~/.cache/fusionnas/data")


class DatasetUnavailableError(UserError):
    """The files of a dataset are missing or unreadable (the message says where to put them)."""


# -- registry ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RawDataset:
    """What a registered loader returns: the training pool (to split) and, maybe, a test set.

    Images are (N, C, H, W) uint8, labels (N,) int64 in ``range(len(classes))``.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    val_fraction: float = 0.1
    mean: tuple[float, ...] | None = None  # None: measured on the training split
    std: tuple[float, ...] | None = None
    augment: bool = False
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None


_Loader = Callable[..., RawDataset]
_DATASETS: dict[str, _Loader] = {}


def register_dataset(name: str) -> Callable[[_Loader], _Loader]:
    """Decorator registering ``loader(root, *, seed, download, **options) -> RawDataset`` as ``name``.

    ``root`` is a ``Path`` or None (the loader picks a default or refuses).
    """

    def decorator(loader: _Loader) -> _Loader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered; pick another name")
        _DATASETS[name] = loader
        return loader

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_DATASETS)


def dataset_loader(name: str) -> _Loader:
    """The loader registered as ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return _DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}") from None


# -- loaders -------------------------------------------------------------------------------


def _root(root: Path | None) -> Path:
    if root is not None:
        return root
    return Path(os.environ.get(DATA_ENV, _DEFAULT_ROOT)).expanduser()


@dataclass(frozen=True)
class _CifarFormat:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    names_key: str
    labels_key: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_CIFAR10 = _CifarFormat(
    "CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
    "batches.meta", "label_names", "labels", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
)
_CIFAR100 = _CifarFormat(
    "CIFAR-100", "cifar-100-python", ("train",), ("test",),
    "meta", "fine_label_names", "fine_labels", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
)


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle (written by Python 2: keys may come back as bytes) with str keys."""
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_cifar(folder: Path, spec: _CifarFormat, files: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels from CIFAR's pickled batches (the official format)."""
    xs, ys = [], []
    for name in files:
        path = folder / name
        try:
            entry = _unpickle(path)
            data = torch.as_tensor(entry["data"], dtype=torch.uint8)
            labels = torch.as_tensor(list(entry[spec.labels_key]), dtype=torch.int64)
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
            raise DatasetUnavailableError(
                f"{spec.title} file {path} is unreadable ({type(error).__name__}: {error}); "
                f"delete {folder} and download it again"
            ) from error
        if data.dim() != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DatasetUnavailableError(
                f"{spec.title} file {path} should hold (N, 3072) pixels and N labels, got "
                f"{tuple(data.shape)} and {len(labels)}; delete {folder} and download it again"
            )
        xs.append(data.view(-1, 3, 32, 32))
        ys.append(labels)
    return torch.cat(xs), torch.cat(ys)


def _cifar_download(root: Path, spec: _CifarFormat) -> None:
    import torchvision  # noqa: PLC0415 (only needed to download)

    dataset = torchvision.datasets.CIFAR10 if spec is _CIFAR10 else torchvision.datasets.CIFAR100
    try:
        dataset(str(root), train=True, download=True)  # downloads, checks md5s, extracts
    except Exception as error:  # network, disk or checksum: all mean "not available"
        raise DatasetUnavailableError(
            f"could not download {spec.title} into {root} ({type(error).__name__}: {error}); "
            f"fetch {dataset.url} elsewhere and extract it into {root}"
        ) from error


def _load_cifar(root: Path | None, spec: _CifarFormat, download: bool) -> RawDataset:
    root = _root(root)
    folder = root if root.name == spec.folder else root / spec.folder
    needed = (*spec.train_files, *spec.test_files, spec.meta_file)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing and download:
        _cifar_download(folder.parent, spec)
        missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise DatasetUnavailableError(
            f"{spec.title} not found in {folder} (missing: {', '.join(missing)}); download the "
            f"python version from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into "
            f"{folder.parent}, or pass `download` where the network allows"
        )
    x, y = _read_cifar(folder, spec, spec.train_files)
    x_test, y_test = _read_cifar(folder, spec, spec.test_files)
    try:
        names = _unpickle(folder / spec.meta_file)[spec.names_key]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError) as error:
        raise DatasetUnavailableError(
            f"{spec.title} metadata {folder / spec.meta_file} is unreadable ({error}); "
            f"delete {folder} and download it again"
        ) from error
    classes = tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)
    return RawDataset(
        x, y, classes, mean=spec.mean, std=spec.std, augment=True, x_test=x_test, y_test=y_test
    )


@register_dataset("cifar10")
def _cifar10(root: Path | None, *, seed: int, download: bool) -> RawDataset:
    """CIFAR-10 from ``root/cifar-10-batches-py``: 50000 training + 10000 test images."""
    return _load_cifar(root, _CIFAR10, download)


@register_dataset("cifar100")
def _cifar100(root: Path | None, *, seed: int, download: bool) -> RawDataset:
    """CIFAR-100 (fine labels) from ``root/cifar-100-python``."""
    return _load_cifar(root, _CIFAR100, download)


@register_dataset("imagefolder")
def _imagefolder(root: Path | None, *, seed: int, download: bool, image_size: int = 32) -> RawDataset:
    """``root/<class>/<image>``, every image decoded as RGB and resized to ``image_size`` squared."""
    from torchvision import datasets, transforms  # noqa: PLC0415

    if root is None:
        raise UserError("imagefolder needs root=, the folder whose sub-folders are the classes")
    if not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"image_size must be a positive integer, got {image_size!r}")
    transform = transforms.Compose(
        [transforms.Resize((image_size, image_size), antialias=True), transforms.PILToTensor()]
    )
    try:
        folder = datasets.ImageFolder(str(root), transform=transform)
    except (FileNotFoundError, OSError) as error:
        raise DatasetUnavailableError(
            f"no image folder at {root} ({error}); it needs one sub-folder of images per class"
        ) from error
    logger.info("decoding %d images from %s at %dx%d", len(folder), root, image_size, image_size)
    x = torch.empty(len(folder), 3, image_size, image_size, dtype=torch.uint8)
    for i in range(len(folder)):
        x[i] = folder[i][0]
    y = torch.as_tensor(folder.targets, dtype=torch.int64)
    return RawDataset(x, y, tuple(folder.classes), augment=True)


@register_dataset("digits")
def _digits(root: Path | None, *, seed: int, download: bool) -> RawDataset:
    """scikit-learn's 1797 8x8 digits (values 0-16), bilinearly upsampled to 3x32x32 uint8."""
    pixels, labels = digits_arrays()
    images = torch.as_tensor(pixels, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8)
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    x = (images * (255 / 16)).round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.as_tensor(labels, dtype=torch.int64)
    return RawDataset(x, y, tuple(str(d) for d in range(10)), val_fraction=0.2)


def digits_arrays() -> tuple[Any, Any]:
    """(images (1797, 8, 8) float64, labels (1797,) int64): what ``sklearn.datasets.load_digits`` returns.

    Read from the CSV that scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``,
    the file ``load_digits`` reads) without importing sklearn: that import, scipy.stats and
    more, costs ~2 s in every worker process. ``load_digits`` where the file is not found.
    """
    import numpy as np  # noqa: PLC0415

    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # noqa: PLC0415

    bunch = load_digits()
    return bunch.images, bunch.target.astype(np.int64)


@register_dataset("synthetic")
def _synthetic(
    root: Path | None,
    *,
    seed: int,
    download: bool,
    num_samples: int = 1024,
    num_classes: int = 10,
    image_size: int = 32,
) -> RawDataset:
    """Noisy copies of one random smooth pattern per class: learnable, generated in milliseconds."""
    for key, value in (("num_samples", num_samples), ("num_classes", num_classes), ("image_size", image_size)):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"synthetic {key} must be a positive integer, got {value!r}")
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(num_classes, 3, 4, 4, generator=g) * 160 + 48
    patterns = F.interpolate(patterns, size=(image_size, image_size), mode="bilinear", align_corners=False)
    y = torch.randint(0, num_classes, (num_samples,), generator=g)
    noise = torch.randn(num_samples, 3, image_size, image_size, generator=g) * 40
    x = (patterns[y] + noise).round_().clamp_(0, 255).to(torch.uint8)
    return RawDataset(x, y, tuple(f"class_{i}" for i in range(num_classes)))
