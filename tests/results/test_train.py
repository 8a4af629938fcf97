"""Training an exported architecture from arch.json into a checkpoint."""
from __future__ import annotations

import pytest
import torch

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
