"""The weight-sharing supernet: shared slices, fair paths, resumable training, scoring by inheritance."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.func import functional_call

from fusionnas.evaluators import get_dataset
from fusionnas.evaluators.proxy import ProxyBudget
from fusionnas.evaluators.supernet import FairPaths, SuperNet, score, train_supernet
from fusionnas.spaces import BlockChoice, get_space

SPACE = get_space("mobilenetv2-cifar")
BUDGET = ProxyBudget(steps=6, batch_size=8, resolution=8, data_fraction=0.1)


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", seed=0).subsample(0.2, seed=0)


@pytest.fixture(scope="module")
def supernet():
    return SuperNet(SPACE, num_classes=10)


def narrower(arch, block: int):
    """``arch`` with block ``block`` at width 0.75 (its output channels sliced)."""
    blocks = list(arch.blocks)
    blocks[block] = BlockChoice(**{**blocks[block].to_dict(), "width": 0.75})
    return type(arch)(**{**{k: getattr(arch, k) for k in ("space", "version", "stem_channels", "head_channels",
                                                         "head_fusion")}, "blocks": tuple(blocks)})


def test_architectures_share_the_leading_slice_of_one_weight(supernet) -> None:
    wide = SPACE.baseline()
    narrow = narrower(wide, 6)
    name = "blocks.6.project.0.weight"
    a = supernet.weights(wide, supernet.path(wide))[name]
    b = supernet.weights(narrow, supernet.path(narrow))[name]
    assert b.shape[0] < a.shape[0] and torch.equal(a[:b.shape[0]], b)
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()  # views, not copies


def test_an_inherited_network_computes_what_the_shared_path_does(supernet) -> None:
    arch = SPACE.preset("all-bft")
    x = torch.randn(2, 3, 8, 8)
    model = supernet.inherit(arch).eval()
    path = supernet.path(arch).eval()
    with torch.no_grad():
        assert torch.allclose(model(x), functional_call(path, supernet.weights(arch, path), (x,)), atol=1e-5)


def test_a_space_offering_one_operator_has_a_supernet_too() -> None:
    space = SPACE.restrict(fusions=["wht"], depthwise=["conv"], kernels=[3])
    supernet = SuperNet(space, num_classes=10)
    assert {key.split(":")[1] for key in supernet.shared if key.startswith("b3:")} == {
        "expand=wht", "depthwise=conv/k3", "project=wht"}
    assert supernet.inherit(space.uniform("wht"))(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_paths_cycle_through_every_choice_evenly() -> None:
    draws = [arch.blocks[3].project for arch, _ in zip(FairPaths(SPACE, seed=0), range(12))]
    assert Counter(draws) == {op: 3 for op in ("conv", "wht", "dct", "bft")}


def test_training_moves_the_shared_weights_and_resumes_from_its_checkpoint(tmp_path, digits) -> None:
    supernet = SuperNet(SPACE, num_classes=10)
    before = {k: v.detach().clone() for k, v in supernet.shared.items()}
    checkpoint = tmp_path / "supernet.pt"

    def stop_at_4(step: int) -> None:
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_supernet(supernet, digits, BUDGET, checkpoint=checkpoint, checkpoint_every=2, on_step=stop_at_4)
    assert torch.load(checkpoint, weights_only=False)["step"] == 4
    resumed = SuperNet(SPACE, num_classes=10)
    assert train_supernet(resumed, digits, BUDGET, checkpoint=checkpoint)["steps"] == BUDGET.steps
    assert torch.load(checkpoint, weights_only=False)["step"] == BUDGET.steps
    assert any(not torch.equal(before[k], resumed.shared[k].detach()) for k in before)
    again = SuperNet(SPACE, num_classes=10)
    assert train_supernet(again, digits, BUDGET, checkpoint=checkpoint)["seconds"] < 1.0  # done: returns at once
    assert all(torch.equal(resumed.shared[k], again.shared[k]) for k in resumed.shared)


def test_scoring_is_an_accuracy_and_repeatable(supernet, digits) -> None:
    arch = SPACE.preset("wht-last-third")
    first = score(supernet, arch, digits, BUDGET)
    assert 0.0 <= first <= 1.0 and score(supernet, arch, digits, BUDGET) == first


def test_paths_resume_from_their_state_dict() -> None:
    paths = FairPaths(SPACE, seed=3)
    for _ in range(5):
        next(paths)
    state = paths.state_dict()
    expected = [next(paths) for _ in range(7)]
    resumed = FairPaths(SPACE, seed=0)
    resumed.load_state_dict(state)
    assert [next(resumed) for _ in range(7)] == expected
