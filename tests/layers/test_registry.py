"""The operator registry: one registration tells every part of the system what it needs."""
import pytest
import torch
from torch import nn

from fusionnas.evaluators import count_flops
from fusionnas.layers import create_fusion, list_fusions, operator_letters, operator_loss, registry
from fusionnas.results.pareto import compact_ops, ops_legend
from fusionnas.spaces import get_space


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_OPERATORS", dict(registry._OPERATORS))


class Grouped(nn.Conv2d):
    """A grouped 1x1 conv: built from a module fvcore counts, so it needs no FLOP handle."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1, groups=4 if in_channels % 4 == out_channels % 4 == 0 else 1,
                         bias=False)


def test_a_registered_fusion_is_built_counted_lettered_and_penalised(scratch_registry):
    registry.register_fusion("gconv", letter="g", loss=lambda layer: layer.weight.abs().sum())(Grouped)
    assert "gconv" in list_fusions() and operator_letters()["gconv"] == "g"
    layer = create_fusion("gconv", 16, 32)
    assert isinstance(layer, Grouped)
    assert count_flops(layer, (1, 16, 8, 8)) == 16 // 4 * 32 * 64  # fvcore's own count of the grouped conv
    model = nn.Sequential(layer, nn.ReLU(), create_fusion("gconv", 32, 8))
    expected = sum(float(m.weight.detach().abs().sum()) for m in model if isinstance(m, Grouped))
    assert float(operator_loss(model).detach()) == pytest.approx(expected, rel=1e-6)
    assert "g gconv" in ops_legend()
    arch = get_space("mobilenetv2-cifar").baseline().to_json().replace('"project":"conv"', '"project":"gconv"')
    assert compact_ops(arch).startswith("-cg ccg")


def test_operators_without_a_loss_add_nothing(scratch_registry):
    model = nn.Sequential(create_fusion("wht", 8, 8), create_fusion("bft", 8, 8))
    assert float(operator_loss(model)) == 0.0
    dct = create_fusion("dct", 8, 8)
    dct(torch.zeros(1, 8, 4, 4))  # the regulariser needs the map size
    assert float(operator_loss(dct).detach()) > 0  # the DCT's frequency regulariser


def test_names_and_letters_are_unique(scratch_registry):
    with pytest.raises(ValueError, match="'wht' is already registered"):
        registry.register_fusion("wht", letter="z")(Grouped)
    with pytest.raises(ValueError, match="letter 'w' of operator 'gconv' is taken by 'wht'"):
        registry.register_fusion("gconv", letter="w")(Grouped)
    with pytest.raises(ValueError, match="one-letter code"):
        registry.register_fusion("gconv", letter="gc")
    registry.register_depthwise("conv", letter="c")  # a depthwise and a fusion of one name may share a letter


def test_the_fwht_is_counted_by_the_handle_its_operators_registered():
    wht = create_fusion("wht", 64, 64)
    counted = count_flops(wht, (1, 64, 4, 4))
    assert counted >= 2 * 16 * 64 * 6  # two 64-point transforms per pixel: 64 log2 64 add/subs each
    assert torch.isfinite(torch.tensor(float(counted)))
