"""The parts of a network that latency tables time one by one: stem, every block, head."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Part", "model_parts"]


class _Head(nn.Module):
    """Head conv, global average pool and classifier: the model's last part."""

    def __init__(self, head: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.head = head
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.head(x), 1), 1))


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
    """The stem, every block and the head of a model built by a search space.

    ``model`` must have ``stem``, ``blocks`` (a sequence of modules with a
    ``signature``), ``head`` and ``classifier``, as the spaces in
    :mod:`fusionnas.spaces` build them.
    """
    for name in ("stem", "blocks", "head", "classifier"):
        if not hasattr(model, name):
            raise ValueError(f"model has no '{name}'; build it with a fusionnas search space")
    c, h, w = (int(d) for d in input_shape[-3:])
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, c, h, w, dtype=next(model.parameters()).dtype)
        shapes = []
        for module in (model.stem, *model.blocks):
            shapes.append(tuple(x.shape[1:]))
            x = module(x)
        shapes.append(tuple(x.shape[1:]))
    finally:
        model.train(was_training)
    head = _Head(model.head, model.classifier)
    n_classes = getattr(model.classifier, "out_features", None) or sum(
        p.shape[0] for p in model.classifier.parameters() if p.dim() == 2
    )
    head_key = f"head[{_signature(model.head)},classes={n_classes}]"
    modules = [("stem", model.stem, _signature(model.stem))]
    modules += [(f"b{i}", block, _signature(block)) for i, block in enumerate(model.blocks)]
    modules.append(("head", head, head_key))
    return [
        Part(name, module, shape, f"{key}@{'x'.join(map(str, shape))}")
        for (name, module, key), shape in zip(modules, shapes)
    ]
