import math

import pytest
import torch
import torchvision
from torch import nn

from fusionnas.evaluators import ZERO_COST_PROXIES, grad_norm, naswot, score, synflow
from fusionnas.layers import create_fusion, list_fusions

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

W1 = torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 3.0, -0.5, 2.0], [0.25, 0.0, -1.0, 1.0]])  # (3, 4)
W2 = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 1.0, 4.0]])  # (2, 3)


def _linear_net(*middle: nn.Module) -> nn.Sequential:
    first, second = nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        first.weight.copy_(W1)
        second.weight.copy_(W2)
    return nn.Sequential(first, *middle, second)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_synflow_of_a_linear_net_is_layers_times_path_sum():
    # R = 1^T |W2| |W1| 1, degree 1 in each layer, so sum |theta dR/dtheta| = 2 R
    r = float(W2.abs().sum(0) @ W1.abs().sum(1))
    assert r == 2.5 * 3.5 + 2 * 6.5 + 4.5 * 2.25
    assert synflow(_linear_net(), (4,)) == pytest.approx(2 * r)
    # ReLU is the identity on the positive linearised net; batch norm is removed
    assert synflow(_linear_net(nn.ReLU(), nn.BatchNorm1d(3)), (1, 4)) == pytest.approx(2 * r)


def test_synflow_of_one_conv_counts_every_valid_position():
    conv = nn.Conv2d(2, 3, 3, bias=False)
    # one layer: score = R = (H - 2)(W - 2) x sum |W| with an all-ones input
    expected = 4 * 6 * conv.weight.detach().double().abs().sum().item()
    assert synflow(conv, (2, 6, 8)) == pytest.approx(expected, rel=1e-12)


def test_synflow_leaves_the_model_untouched():
    model = _linear_net(nn.BatchNorm1d(3)).train()
    before = _snapshot(model)
    synflow(model, (4,))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and isinstance(model[1], nn.BatchNorm1d)
    assert model[0].weight.dtype == torch.float32 and model[0].weight.grad is None


def test_naswot_on_known_activation_codes():
    codes = torch.tensor([[1.0, 0, 1], [1, 1, 0], [0, 0, 0]])
    x = codes * 2 - 1  # positive exactly where the code is 1
    # K = 3 - Hamming distance: [[3, 1, 1], [1, 3, 1], [1, 1, 3]], det 20
    assert naswot(nn.Sequential(nn.ReLU()), x) == pytest.approx(math.log(20))
    # each hooked module adds its own K (ReLU6 counts too): det(2K) = 8 * 20
    assert naswot(nn.Sequential(nn.ReLU(), nn.ReLU6()), x) == pytest.approx(math.log(160))
    # two inputs with equal codes: singular K
    assert naswot(nn.Sequential(nn.ReLU()), torch.tensor([[1.0, -1], [2, -3]])) == -math.inf


def test_naswot_errors():
    with pytest.raises(ValueError, match="no ReLU, ReLU6 module in Linear"):
        naswot(nn.Linear(3, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="at least 2 inputs"):
        naswot(nn.ReLU(), torch.randn(1, 3))


def test_grad_norm_matches_the_hand_gradient():
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.copy_(W1)
    x = torch.tensor([[1.0, 0.5, -1, 2], [0, 1, 1, -1]])
    y = torch.tensor([2, 0])
    p = torch.softmax(x @ W1.T + linear.bias.detach(), dim=1)
    grad = (p - nn.functional.one_hot(y, 3)).T @ x / 2  # d mean CE / dW; the bias is not scored
    assert grad_norm(linear, x, y) == pytest.approx(float(grad.norm()), rel=1e-6)
    assert linear.weight.grad is None


def test_score_dispatches_and_rejects_unknown_names():
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    model = _linear_net(nn.ReLU())
    assert score("synflow", model, x, y) == synflow(model, (4,))
    assert score("naswot", model, x, y) == naswot(model, x)
    assert score("grad_norm", model, x, y) == grad_norm(model, x, y)
    with pytest.raises(ValueError, match="unknown zero-cost proxy 'snip'; known: grad_norm, naswot, synflow"):
        score("snip", model, x, y)


def test_every_proxy_scores_mobilenet_v2_and_leaves_it_as_it_was():
    """(How long a score takes is the fidelity benchmark's to say: a time limit here fails on a busy machine.)"""
    model = torchvision.models.mobilenet_v2(num_classes=10)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    before = _snapshot(model)
    for name in ZERO_COST_PROXIES:
        value = score(name, model, x, y)
        assert math.isfinite(value) and value > 0, name
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert model.training and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kind", list_fusions())
def test_every_proxy_runs_with_every_fusion(kind):
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
        create_fusion(kind, 16, 24), nn.BatchNorm2d(24), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    )
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    for name in ZERO_COST_PROXIES:
        assert math.isfinite(score(name, model, x, y)), name


@needs_cuda
def test_proxies_on_cuda_agree_with_cpu():
    model = torchvision.models.mobilenet_v2(num_classes=10)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    on_cpu = {name: score(name, model, x, y) for name in ZERO_COST_PROXIES}
    model.cuda()
    for name in ZERO_COST_PROXIES:
        on_gpu = score(name, model, x.cuda(), y.cuda())  # cuDNN may use TF32: a loose tolerance
        assert on_gpu == pytest.approx(on_cpu[name], rel=1e-2), name
    assert next(model.parameters()).is_cuda
