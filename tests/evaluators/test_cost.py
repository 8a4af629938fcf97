import warnings

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn

from fusionnas.evaluators import count_flops, count_params, flop_breakdown
from fusionnas.evaluators import cost
from fusionnas.layers import fwht


def _fvcore_stock(model, shape):
    analysis = FlopCountAnalysis(model.eval(), torch.zeros(shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis


def test_conv_and_linear_equal_fvcore_stock_counts():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 1), nn.Flatten(), nn.Linear(16 * 64, 10))
    assert count_flops(model, (2, 3, 8, 8)) == _fvcore_stock(model, (2, 3, 8, 8)).total()
    # and the hand count: 3x3 conv, 1x1 conv, linear (multiply-adds)
    assert count_flops(model, (2, 3, 8, 8)) == 2 * (64 * 8 * 27 + 64 * 16 * 8 + 16 * 64 * 10)


def test_mobilenet_v2_agrees_with_fvcore_plus_elementwise_ops():
    model = torchvision.models.mobilenet_v2()
    shape = (1, 3, 224, 224)
    stock = _fvcore_stock(model, shape).by_operator()
    ours = flop_breakdown(model, shape)
    for op in ("conv", "batch_norm", "linear", "adaptive_avg_pool2d"):
        assert ours[op] == stock[op]
    # what fvcore leaves out: ReLU6 on every activation, the residual adds
    assert ours["hardtanh_"] > 0 and ours["add"] > 0
    assert sum(ours.values()) == count_flops(model, shape)
    assert 300e6 < count_flops(model, shape) < 330e6


def test_fwht_counts_n_log2_n_per_vector():
    class Transform(nn.Module):
        def forward(self, x):
            return fwht(x, dim=1)

    assert count_flops(Transform(), (3, 256, 5)) == 3 * 5 * 256 * 8


def test_elementwise_ops_count_one_per_output_element():
    class Elementwise(nn.Module):
        def forward(self, x):
            return torch.tanh(x) * x + 1

    assert flop_breakdown(Elementwise(), (2, 4, 3, 3)) == {"tanh": 72, "mul": 72, "add": 72}


def test_broadcast_matmul_counts_every_batch():
    weight = torch.randn(8, 8)

    class Batched(nn.Module):
        def forward(self, x):
            return torch.matmul(weight, x)  # (8, 8) @ (B, 8, R)

    assert count_flops(Batched(), (5, 8, 7)) == 5 * 8 * 8 * 7


def test_unsupported_op_warns_once_naming_it(monkeypatch):
    monkeypatch.setattr(cost, "_warned", set())

    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    with pytest.warns(RuntimeWarning, match="aten::cumsum"):
        count_flops(Cumulative(), (1, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        count_flops(Cumulative(), (1, 4))  # second time: silent


def test_count_flops_restores_training_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    count_flops(model, (1, 3, 4, 4))
    assert model.training


def test_count_params_matches_torchvision():
    model = torchvision.models.mobilenet_v2()
    assert count_params(model) == 3_504_872
    model.features[0].requires_grad_(False)
    assert count_params(model, trainable_only=True) == 3_504_872 - 864 - 64
