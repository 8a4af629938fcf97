"""The parts of a network that latency tables time one by one: stem, every block, head."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fusionnas.evaluators.training import eval_mode
from fusionnas.spaces.network import HeadPart

__all__ = ["Part", "model_parts"]


@dataclass(frozen=True)
class Part:
    """One timed piece of a network: its module, input shape (C, H, W) and table key."""

    name: str
    module: nn.Module
    input_shape: tuple[int, int, int]
    key: str


def _signature(module: nn.Module) -> str:
    signature = getattr(module, "signature", None)
    if signature is None:
        raise ValueError(f"{type(module).__name__} has no 'signature'; latency tables need one per part")
    return str(signature)


@torch.no_grad()
def model_parts(model: nn.Module, input_shape: Sequence[int]) -> list[Part]:
    """The parts of a model built by a search space (its ``parts()``: stem, every block, head),
    with the input shape each receives and its table key."""
    if not hasattr(model, "parts"):
        raise ValueError(f"{type(model).__name__} has no parts(); build it with a fusionnas search space")
    c, h, w = (int(d) for d in input_shape[-3:])
    parts = model.parts()
    with eval_mode(model):
        x = torch.zeros(1, c, h, w, dtype=next(model.parameters()).dtype)
        shapes = []
        for _, module in parts:
            shapes.append(tuple(x.shape[1:]))
            x = module(x)
    return [Part(name, module, shape, f"{_key(module)}@{'x'.join(map(str, shape))}")
            for (name, module), shape in zip(parts, shapes)]


def _key(module: nn.Module) -> str:
    """A part's table key: its ``signature``; the head's with its classifier's width."""
    if not isinstance(module, HeadPart):
        return _signature(module)
    head, classifier = module.head, module.classify.classifier
    n_classes = getattr(classifier, "out_features", None) or sum(
        p.shape[0] for p in classifier.parameters() if p.dim() == 2)
    return f"head[{_signature(head)},classes={n_classes}]"
