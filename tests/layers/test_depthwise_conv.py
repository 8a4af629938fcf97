"""The depthwise conv unit trains on channels-last input on a CPU: the same function, faster."""
from __future__ import annotations

import pytest
import torch

import fusionnas.layers.depthwise_conv as depthwise_conv
from fusionnas.layers import create_depthwise
from fusionnas.spaces import get_space


def _step(model: torch.nn.Module, x: torch.Tensor, channels_last: bool, monkeypatch) -> tuple[torch.Tensor, dict]:
    monkeypatch.setattr(depthwise_conv, "CHANNELS_LAST_DEPTHWISE_TRAINING", channels_last)
    model.zero_grad()
    torch.manual_seed(0)  # the classifier's dropout
    y = model(x)
    (y.square().mean()).backward()
    return y.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("preset", ["baseline", "wht-last-third", "all-bft"])
def test_a_training_step_is_the_same_in_either_layout(preset, monkeypatch) -> None:
    torch.set_num_threads(1)
    space = get_space("mobilenetv2-cifar")
    model = space.build(space.preset(preset)).double().train()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y_last, grads_last = _step(model, x, True, monkeypatch)
    y_first, grads_first = _step(model, x, False, monkeypatch)
    torch.testing.assert_close(y_last, y_first, rtol=1e-10, atol=1e-12)
    scale = max(float(grad.abs().max()) for grad in grads_first.values())  # some are 0 up to rounding
    for name, grad in grads_first.items():
        assert float((grads_last[name] - grad).abs().max()) <= 1e-9 * scale, name


def test_only_training_on_a_cpu_changes_the_layout() -> None:
    unit = create_depthwise("conv", 16, 3, 1)
    x = torch.randn(2, 16, 8, 8)
    assert unit.train()(x).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert unit.eval()(x).is_contiguous()  # inference (latency tables, export) keeps NCHW
    stem = depthwise_conv.ConvBNReLU6(16, 16, 3)  # not depthwise
    assert stem.train()(x).is_contiguous()


def test_a_block_keeps_nchw_before_a_transform_projection() -> None:
    """The transform layers would copy a channels-last input back; a 1x1 conv takes it as it is."""
    from fusionnas.spaces import InvertedResidual

    x = torch.randn(2, 16, 8, 8)
    for project, channels_last in (("conv", True), ("wht", False), ("dct", False), ("bft", False)):
        block = InvertedResidual(16, 16, 1, 6, expand="conv", depthwise="conv", project=project).train()
        assert block.depthwise.train_channels_last is channels_last
        assert block.depthwise(block.expand(x)).is_contiguous(memory_format=torch.channels_last) is channels_last


@pytest.mark.parametrize("size, kernel_size, stride", [
    (1, 3, 1), (2, 3, 1), (2, 5, 2), (3, 3, 2), (3, 5, 1), (4, 5, 1), (4, 3, 2), (7, 5, 2), (8, 5, 1), (5, 3, 1),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_weight_gradient_method_equals_autograd_of_conv2d(size, kernel_size, stride, channels_last,
                                                                monkeypatch) -> None:
    x = torch.randn(3, 8, size, size + 1, dtype=torch.float64)  # not square: rows and columns differ
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 1, kernel_size, kernel_size, dtype=torch.float64)
    padding = (kernel_size - 1) // 2
    x.requires_grad_(True)
    weight.requires_grad_(True)
    reference = torch.nn.functional.conv2d(x, weight, None, stride, padding, groups=8)
    grad = torch.randn_like(reference)
    expected = torch.autograd.grad(reference, (x, weight), grad)
    for method in ("native", "grouped", "channels_last"):
        monkeypatch.setattr(depthwise_conv, "weight_gradient_method", lambda *args, chosen=method: chosen)
        y = depthwise_conv.depthwise_conv2d(x, weight, stride, padding)
        torch.testing.assert_close(y, reference, rtol=0, atol=0)
        for got, want in zip(torch.autograd.grad(y, (x, weight), grad), expected):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_weight_gradient_method_follows_onednns_kernel() -> None:
    method = depthwise_conv.weight_gradient_method
    assert method(16, 16, 3, 1) == method(4, 4, 3, 2) == method(3, 3, 3, 1) == "native"
    assert method(2, 2, 3, 1) == method(3, 3, 3, 2) == method(4, 4, 5, 1) == "grouped"
    assert method(8, 8, 5, 1) == method(16, 16, 5, 2) == "channels_last"


@pytest.mark.parametrize("preset", ["baseline", "all-bft"])
def test_a_training_step_is_the_same_with_either_weight_gradient(preset, monkeypatch) -> None:
    torch.set_num_threads(1)
    space = get_space("mobilenetv2-cifar")
    arch = space.preset(preset)
    arch = type(arch).from_json(arch.to_json().replace('"kernel":3', '"kernel":5'))  # 5x5 kernels: no native kernel
    model = space.build(arch).double().train()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    results = []
    for fast in (True, False):
        monkeypatch.setattr(depthwise_conv, "FAST_DEPTHWISE_WEIGHT_GRADIENT", fast)
        results.append(_step(model, x, True, monkeypatch))
    (y_fast, grads_fast), (y_slow, grads_slow) = results
    torch.testing.assert_close(y_fast, y_slow, rtol=0, atol=0)
    for name, grad in grads_slow.items():
        torch.testing.assert_close(grads_fast[name], grad, rtol=1e-9, atol=1e-12, msg=name)
