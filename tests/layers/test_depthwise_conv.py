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
