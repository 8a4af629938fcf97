"""Zero-cost proxies: score an untrained network from one batch, in seconds.

* :func:`synflow` (Tanaka et al. 2020, as a proxy: Abdelfattah et al. 2021):
  with every parameter replaced by its absolute value, batch norm removed
  and an all-ones input in float64, ``R = sum(f(1))``; the score is
  ``sum |theta * dR/dtheta|`` over the scored parameters.
* :func:`naswot` (Mellor et al. 2021): the binary activation codes ``c`` of
  one batch at the ReLU-family modules give ``K = c c^T + (1 - c)(1 - c)^T``
  (how many units two inputs share a linear region on); the score is
  ``log |det K|``.
* :func:`grad_norm` (Abdelfattah et al. 2021): the sum over scored
  parameters of the L2 norm of the cross-entropy gradient on the batch.

Scored parameters are every parameter except biases and normalisation
layers' (the reference code scores the weights of Conv2d and Linear only; the
transform layers' scales, thresholds and butterfly weights count here too,
so that they are not free). Every proxy works on a deep copy: the caller's
model, its gradients, its batch-norm statistics and its mode are untouched.

Example:
    >>> model = torchvision.models.mobilenet_v2(num_classes=10)  # doctest: +SKIP
    >>> score("naswot", model, x, y)  # doctest: +SKIP
    1234.5
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fusionnas.errors import UserError
from fusionnas.metrics import ZERO_COST_PROXIES

__all__ = ["synflow", "naswot", "grad_norm", "score", "SCORES", "ZERO_COST_PROXIES", "NASWOT_ACTIVATIONS"]

# NASWOT reads a unit's linear region at these modules: input > 0 (ReLU6's
# saturated units count as active, as for the input of a ReLU). Activations
# called as functions (F.relu) and smooth thresholds are not seen.
NASWOT_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _scored_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) of every parameter but biases and normalisation layers'."""
    for module_name, module in model.named_modules():
        if isinstance(module, _NORM_LAYERS):
            continue
        for name, param in module.named_parameters(recurse=False):
            if name != "bias":
                yield f"{module_name}.{name}" if module_name else name, param


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _strip_norm(model: nn.Module) -> nn.Module:
    """Replace every batch-norm layer by an identity (in place), as synflow prescribes."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _strip_norm(child)
    return model


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Synaptic-flow score of ``model`` for one input of shape (C, H, W) (or (1, C, H, W)).

    A copy of the model runs in eval mode in float64, with batch norm removed
    and every parameter (not buffers) replaced by its absolute value. For a
    network of L linear layers without biases the score is ``L * R``.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    net = _strip_norm(copy.deepcopy(model)).double().eval()
    for param in net.parameters():
        with torch.no_grad():
            param.abs_()  # buffers (fixed transforms) keep their signs
        param.requires_grad_(True)
        param.grad = None
    ones = torch.ones((1, *shape), dtype=torch.float64, device=_device(net))
    with torch.enable_grad():
        net(ones).sum().backward()
    total = torch.zeros((), dtype=torch.float64)
    for _, param in _scored_parameters(net):
        if param.grad is not None:
            total += (param.detach() * param.grad).abs().sum().cpu()
    return float(total)


def naswot(
    model: nn.Module, x: torch.Tensor, activations: tuple[type[nn.Module], ...] = NASWOT_ACTIVATIONS
) -> float:
    """NASWOT score ``log |det K|`` of the batch ``x`` (N, C, H, W) at the ``activations`` modules.

    The copy runs in train mode (batch statistics), as in the reference code.
    Equal codes for two inputs make K singular: the score is then ``-inf``.
    """
    net = copy.deepcopy(model).train()
    n = int(x.shape[0])
    if n < 2:
        raise ValueError(f"naswot needs a batch of at least 2 inputs, got {tuple(x.shape)}")
    kernel = torch.zeros(n, n, dtype=torch.float64, device=_device(net))
    hooked = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal kernel
        codes = (inputs[0].reshape(n, -1) > 0).to(torch.float64)  # (N, units)
        kernel += codes @ codes.T + (1 - codes) @ (1 - codes).T

    handles = []
    for module in net.modules():
        if isinstance(module, activations):
            handles.append(module.register_forward_hook(hook))
            hooked += 1
    if not hooked:
        names = ", ".join(t.__name__ for t in activations)
        raise UserError(
            f"naswot found no {names} module in {type(model).__name__}; it reads activation codes "
            f"there (functional activations are invisible), so pass activations=(...) with the model's"
        )
    try:
        with torch.no_grad():
            net(x.to(_device(net)))
    finally:
        for handle in handles:
            handle.remove()
    return float(torch.linalg.slogdet(kernel).logabsdet)


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over scored parameters of ``||d CE(model(x), y) / d theta||_2`` (copy in train mode)."""
    net = copy.deepcopy(model).train()
    for param in net.parameters():
        param.requires_grad_(True)
        param.grad = None
    device = _device(net)
    with torch.enable_grad():
        F.cross_entropy(net(x.to(device)), y.to(device)).backward()
    total = torch.zeros((), dtype=torch.float64)
    for _, param in _scored_parameters(net):
        if param.grad is not None:
            total += param.grad.detach().double().norm().cpu()
    return float(total)


# The implementation of each proxy that fusionnas.metrics names (a test checks the two agree).
SCORES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "synflow": lambda model, x, y: synflow(model, x.shape[1:]),
    "naswot": lambda model, x, y: naswot(model, x),
    "grad_norm": grad_norm,
}


def score(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Zero-cost proxy ``name`` (one of ``ZERO_COST_PROXIES``) of ``model`` on the batch (x, y)."""
    try:
        proxy = SCORES[name]
    except KeyError:
        raise UserError(
            f"unknown zero-cost proxy {name!r}; known: {', '.join(sorted(SCORES))}"
        ) from None
    return proxy(model, x, y)
