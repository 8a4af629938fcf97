"""Training an exported architecture from arch.json into a checkpoint."""
from __future__ import annotations

import re

import pytest
import torch

from fusionnas.errors import UserError
from fusionnas.results import read_arch, train_arch
from fusionnas.spaces import Arch, get_space

SPACE = get_space("mobilenetv2-cifar")


def test_train_arch_saves_a_loadable_checkpoint(tmp_path) -> None:
    arch = SPACE.preset("all-bft")
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json(indent=2))
    result = train_arch(path, "digits", epochs=0.1, batch_size=16, resolution=8, data_fraction=0.2, device="cpu")
    assert result.checkpoint == tmp_path / "checkpoint.pt" and 0 <= result.val_accuracy <= 1
    checkpoint = torch.load(result.checkpoint, weights_only=True)
    assert checkpoint["archid"] == arch.archid and checkpoint["dataset"] == "digits"
    model = SPACE.build(Arch.from_json(checkpoint["arch"]), num_classes=checkpoint["num_classes"])
    model.load_state_dict(checkpoint["state_dict"])
    assert checkpoint["val_accuracy"] == result.val_accuracy and checkpoint["budget"]["epochs"] == 0.1


@pytest.mark.parametrize("text, message", [
    ("{not json", "invalid architecture JSON"),
    ('{"space": "mobilenetv2-cifar"}', "missing field"),
    ("", "invalid architecture JSON"),
])
def test_a_corrupt_arch_file_is_one_clear_error(tmp_path, text, message) -> None:
    path = tmp_path / "arch.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"arch.json: .*{message}.*fusionnas export"):
        read_arch(path)
    with pytest.raises(ValueError, match="no such architecture file"):
        read_arch(tmp_path / "missing.json")


def _arch_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(SPACE.preset("all-bft").to_json(indent=2))
    return path


def test_train_reports_every_epoch_and_starts_from_exported_weights(tmp_path) -> None:
    path = _arch_file(tmp_path)
    torch.manual_seed(123)
    exported = SPACE.build(SPACE.preset("all-bft"), num_classes=10).state_dict()
    torch.save(exported, tmp_path / "weights.pt")  # as `fusionnas export` writes it
    lines = []
    result = train_arch(path, "digits", epochs=2, batch_size=16, resolution=8, data_fraction=0.1, lr=1e-9,
                        device="cpu", init=tmp_path / "weights.pt", on_epoch=lines.append)
    assert [(p.epoch, p.epochs) for p in lines] == [(1, 2), (2, 2)]
    assert lines[1].step == lines[1].steps == 2 * lines[0].step and lines[1].eta_s == 0
    assert re.fullmatch(r"epoch 1/2 \(step \d+/\d+\): \d+ s elapsed, ETA \d+ s", str(lines[0])), str(lines[0])
    checkpoint = torch.load(result.checkpoint, weights_only=True)
    key = "classifier.1.weight"  # lr 1e-9: the trained weights are still the exported ones
    torch.testing.assert_close(checkpoint["state_dict"][key], exported[key], atol=1e-6, rtol=0)
    assert checkpoint["init"] == str(tmp_path / "weights.pt") and checkpoint["data"]["name"] == "digits"
    fresh = train_arch(path, "digits", epochs=0.1, batch_size=16, resolution=8, data_fraction=0.1, lr=1e-9,
                       device="cpu", out=tmp_path / "fresh.pt")
    assert not torch.allclose(torch.load(fresh.checkpoint, weights_only=True)["state_dict"][key], exported[key])


def test_train_refuses_to_overwrite_and_weights_that_do_not_fit(tmp_path) -> None:
    path = _arch_file(tmp_path)
    out = tmp_path / "full.pt"
    out.write_bytes(b"an earlier run")
    options = dict(epochs=0.05, batch_size=16, resolution=8, data_fraction=0.1, device="cpu")
    with pytest.raises(UserError, match=r"^`out` .*full.pt exists; choose another file or use `force`"):
        train_arch(path, "digits", out=out, **options)
    assert out.read_bytes() == b"an earlier run"
    with pytest.raises(UserError, match=r"`out` .* is a folder"):
        train_arch(path, "digits", out=tmp_path, **options)
    torch.save(SPACE.build(SPACE.preset("all-bft"), num_classes=5).state_dict(), tmp_path / "five.pt")
    with pytest.raises(UserError, match=r"five.pt does not fit .*classifier.1.weight is \(5, \d+\) there, "
                                        r"\(10, \d+\) here"):
        train_arch(path, "digits", out=tmp_path / "new.pt", init=tmp_path / "five.pt", **options)
    with pytest.raises(UserError, match="`init` .*nothere.pt: no such file"):
        train_arch(path, "digits", out=tmp_path / "new.pt", init=tmp_path / "nothere.pt", **options)
    assert not (tmp_path / "new.pt").exists()
    train_arch(path, "digits", out=out, force=True, **options)
    assert torch.load(out, weights_only=True)["dataset"] == "digits"
