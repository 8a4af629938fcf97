import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fusionnas.evaluators import (
    DatasetUnavailableError,
    DataSplits,
    get_dataset,
    iterate_batches,
    list_datasets,
    prepare_batch,
    random_crop_flip,
)
from fusionnas.evaluators import data as data_module
from fusionnas.evaluators.datasets import digits_arrays


def _image_ids(x: torch.Tensor) -> set[int]:
    """The tiny CIFAR writes image i with i in its first two red pixels."""
    return {int(a) * 256 + int(b) for a, b in zip(x[:, 0, 0, 0], x[:, 0, 0, 1])}


def _write_cifar(root, per_batch=20, test=10, *, cifar100=False):
    """A tiny CIFAR in the real on-disk format: pickled dicts of (N, 3072) uint8 rows."""
    folder = root / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    label_key = b"fine_labels" if cifar100 else b"labels"
    num_classes = 100 if cifar100 else 10
    files = ["train"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)]
    next_id = 0

    def batch(n):
        nonlocal next_id
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        ids = np.arange(next_id, next_id + n)
        next_id += n
        data[:, 0], data[:, 1] = ids // 256, ids % 256  # red channel, row 0, pixels 0 and 1
        labels = [int(i) % num_classes for i in ids]
        return {b"data": data, label_key: labels, b"batch_label": b"tiny"}

    for name in files:
        with open(folder / name, "wb") as f:
            pickle.dump(batch(per_batch * (5 if cifar100 else 1)), f)
    with open(folder / ("test" if cifar100 else "test_batch"), "wb") as f:
        pickle.dump(batch(test), f)
    meta_name, names_key = ("meta", b"fine_label_names") if cifar100 else ("batches.meta", b"label_names")
    with open(folder / meta_name, "wb") as f:
        pickle.dump({names_key: [f"class{i}".encode() for i in range(num_classes)]}, f)
    return folder


def test_registry_lists_the_datasets_and_rejects_unknown_names():
    assert list_datasets() == ["cifar10", "cifar100", "digits", "imagefolder", "synthetic"]
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; known: cifar10, cifar100, digits"):
        get_dataset("mnist")


def test_digits_are_what_sklearn_load_digits_returns():
    from sklearn.datasets import load_digits

    images, labels = digits_arrays()
    reference = load_digits()
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(labels, reference.target)


def test_digits_sizes_shapes_and_stats():
    data = get_dataset("digits")
    assert isinstance(data, DataSplits)
    assert len(data.x_train) + len(data.x_val) == 1797
    assert len(data.x_val) == pytest.approx(0.2 * 1797, abs=10)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    assert data.x_test is None and not data.augment
    assert torch.equal(data.x_train[:, 0], data.x_train[:, 2])  # grey: three equal channels
    # stratified: every class is in the validation split in its share
    counts = torch.bincount(data.y_val, minlength=10)
    assert counts.min() >= 30
    batch = prepare_batch(data.x_train, data.mean, data.std)
    assert batch.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (batch.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_split_is_disjoint_covering_and_seeded():
    y = torch.arange(103) % 7
    train, val = data_module._stratified_split(y, 0.25, torch.Generator().manual_seed(3))
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(103))
    again, _ = data_module._stratified_split(y, 0.25, torch.Generator().manual_seed(3))
    other, _ = data_module._stratified_split(y, 0.25, torch.Generator().manual_seed(4))
    assert torch.equal(train, again) and not torch.equal(train, other)


def test_digits_is_deterministic_under_seed_and_fraction_keeps_validation():
    a, b, c = get_dataset("digits", seed=1), get_dataset("digits", seed=1), get_dataset("digits", seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.y_val, c.y_val)
    small = get_dataset("digits", seed=1, fraction=0.25)
    assert torch.equal(small.x_val, a.x_val)
    assert len(small.x_train) == pytest.approx(0.25 * len(a.x_train), abs=10)
    sub = a.subsample(0.5, seed=0)
    assert torch.equal(sub.x_val, a.x_val) and len(sub.x_train) == pytest.approx(len(a.x_train) / 2, abs=10)
    assert torch.bincount(sub.y_train, minlength=10).min() > 0


@pytest.mark.parametrize("kwargs", [{"val_fraction": 0.0}, {"val_fraction": 1.0}, {"fraction": 0}, {"fraction": 1.5}])
def test_bad_fractions_are_value_errors(kwargs):
    with pytest.raises(ValueError, match="fraction must be in"):
        get_dataset("digits", **kwargs)


def test_cifar10_reads_the_real_format_and_holds_out_validation(tmp_path):
    folder = _write_cifar(tmp_path)
    data = get_dataset("cifar10", tmp_path, seed=0)
    assert data.num_classes == 10 and data.classes[3] == "class3"
    assert data.input_shape == (3, 32, 32) and data.augment
    assert len(data.x_train) == 90 and len(data.x_val) == 10 and len(data.x_test) == 10
    train_ids, val_ids = _image_ids(data.x_train), _image_ids(data.x_val)
    assert train_ids.isdisjoint(val_ids) and train_ids | val_ids == set(range(100))
    assert _image_ids(data.x_test) == set(range(100, 110))
    # labels travel with their images; channel-major rows as torchvision reads them
    ids = torch.tensor(sorted(_image_ids(data.x_val)))
    assert sorted(data.y_val.tolist()) == sorted((ids % 10).tolist())
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f)[b"data"][0]
    x = torch.cat([data.x_train, data.x_val])
    image0 = x[(x[:, 0, 0, 0] == 0) & (x[:, 0, 0, 1] == 0)]
    assert np.array_equal(image0[0].numpy().reshape(-1), first)
    assert data.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    # the root may also name the batches folder itself
    assert len(get_dataset("cifar10", folder).x_train) == 90


def test_cifar100_fine_labels(tmp_path):
    _write_cifar(tmp_path, per_batch=40, cifar100=True)
    data = get_dataset("cifar100", tmp_path, val_fraction=0.5)
    assert data.num_classes == 100 and len(data.x_train) + len(data.x_val) == 200
    assert data.classes[99] == "class99"


def test_missing_cifar_names_root_and_files(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        get_dataset("cifar10", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "data_batch_5" in message and "test_batch" in message
    assert "pass `download` where the network allows" in message
    assert isinstance(info.value, ValueError)  # the CLI reports it as a user error


def test_corrupt_cifar_file_is_reported(tmp_path):
    folder = _write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetUnavailableError, match="data_batch_3 is unreadable"):
        get_dataset("cifar10", tmp_path)


def test_imagefolder_decodes_every_image_at_image_size(tmp_path):
    colours = {"blue": (0, 0, 255), "red": (255, 0, 0)}
    for name, colour in colours.items():
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("RGB", (40 + i, 30), colour).save(tmp_path / name / f"{i}.png")
    Image.new("L", (20, 20), 128).save(tmp_path / "red" / "grey.png")  # grey decodes to RGB
    data = get_dataset("imagefolder", tmp_path, image_size=16, val_fraction=0.2)
    assert data.classes == ("blue", "red") and data.num_classes == 2
    assert data.input_shape == (3, 16, 16)
    assert len(data.x_train) + len(data.x_val) == 11
    x = torch.cat([data.x_train, data.x_val])
    y = torch.cat([data.y_train, data.y_val])
    blue = x[y == 0]
    assert (blue[:, 2] == 255).all() and (blue[:, 0] == 0).all()


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ValueError, match="imagefolder needs root"):
        get_dataset("imagefolder")
    with pytest.raises(DatasetUnavailableError, match="no image folder"):
        get_dataset("imagefolder", tmp_path / "missing")


def test_synthetic_options():
    data = get_dataset("synthetic", num_samples=200, num_classes=4, image_size=8)
    assert data.input_shape == (3, 8, 8) and data.num_classes == 4
    assert len(data.x_train) + len(data.x_val) == 200
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        get_dataset("synthetic", num_samples=0)
    with pytest.raises(ValueError, match="takes no option image_size; its options: none"):
        get_dataset("digits", image_size=16)


def test_random_crop_flip_matches_per_image_reference():
    x = torch.randint(0, 256, (32, 3, 10, 12), dtype=torch.uint8)
    out = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same draws, in the same order
    top = torch.randint(0, 9, (32,), generator=g)
    left = torch.randint(0, 9, (32,), generator=g)
    flip = torch.randint(0, 2, (32,), generator=g) == 1
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(32):
        crop = padded[i, :, top[i] : top[i] + 10, left[i] : left[i] + 12]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)
    assert out.dtype == torch.uint8 and 0 < int(flip.sum()) < 32
    again = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, again)


def test_iterate_batches_covers_each_sample_once_and_resizes():
    x = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 1, 4, 4).contiguous()
    y = torch.arange(50)
    seen = []
    for xb, yb in iterate_batches(
        x, y, 16, mean=(0.0,), std=(1 / 255,), shuffle=True, generator=torch.Generator().manual_seed(0)
    ):
        assert xb.dtype == torch.float32
        assert torch.equal(xb[:, 0, 0, 0].round().long(), yb)  # images stay with their labels
        seen += yb.tolist()
    assert sorted(seen) == list(range(50)) and seen != list(range(50))
    sizes = [len(yb) for _, yb in iterate_batches(x, y, 16, mean=(0.0,), std=(1.0,), drop_last=True)]
    assert sizes == [16, 16, 16]
    xb, _ = next(iterate_batches(x, y, 8, mean=(0.0,), std=(1.0,), resolution=2))
    assert xb.shape == (8, 1, 2, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        next(iterate_batches(x, y, 0, mean=(0.0,), std=(1.0,)))
