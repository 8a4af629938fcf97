"""Start from torchvision's pretrained MobileNetV2: map its state dict onto our models.

Our module tree (``stem``, ``blocks[i].expand/depthwise/project``, ``head``,
``classifier``) holds the same tensors as torchvision's ``features``
Sequential, in the same order; only the names differ. A hybrid takes every
tensor that still fits (``strict=False``), e.g. all but its transform layers.
"""
from __future__ import annotations

from typing import Mapping

import torch

from fusionnas.errors import UserError
from fusionnas.spaces.network import FusionMobileNetV2

__all__ = ["load_torchvision_weights", "torchvision_names"]


def _prefixes(model: FusionMobileNetV2) -> dict[str, str]:
    """Our module prefix -> torchvision ``mobilenet_v2`` prefix."""
    prefixes = {"stem.": "features.0.", "classifier.": "classifier."}
    for i, block in enumerate(model.blocks):
        src = f"features.{i + 1}.conv."
        j = 0
        if block.expand is not None:
            prefixes[f"blocks.{i}.expand.0."] = f"{src}0.0."
            prefixes[f"blocks.{i}.expand.1."] = f"{src}0.1."
            j = 1
        prefixes[f"blocks.{i}.depthwise."] = f"{src}{j}."
        prefixes[f"blocks.{i}.project.0."] = f"{src}{j + 1}."
        prefixes[f"blocks.{i}.project.1."] = f"{src}{j + 2}."
    prefixes["head."] = f"features.{len(model.blocks) + 1}."
    return prefixes


def load_torchvision_weights(
    model: FusionMobileNetV2, state_dict: Mapping[str, torch.Tensor], strict: bool = True
) -> list[str]:
    """Copy a torchvision ``mobilenet_v2`` state dict into ``model``.

    Every tensor whose name and shape match is loaded. With ``strict`` (the
    default) anything left over on either side raises ``ValueError``; without
    it the rest keeps its initialisation, which is how a hybrid starts from
    pretrained conv weights. Returns our parameter names that were not loaded.
    """
    prefixes = _prefixes(model)
    ours = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, tensor in ours.items():
        source = _map(prefixes, key)
        if source in state_dict and tuple(state_dict[source].shape) == tuple(tensor.shape):
            loaded[key] = state_dict[source]
    missing = sorted(set(ours) - set(loaded))
    if strict:
        unexpected = sorted(set(state_dict) - {_map(prefixes, key) for key in loaded})
        if missing or unexpected:
            raise UserError(
                f"torchvision weights do not fit this model: {len(missing)} of our tensors have no match "
                f"({_few(missing)}) and {len(unexpected)} of theirs are unused ({_few(unexpected)}); "
                "pass strict=False to load what matches"
            )
    model.load_state_dict(loaded, strict=False)
    return missing


def _map(prefixes: Mapping[str, str], key: str) -> str | None:
    """torchvision's name of our tensor ``key`` (None where no module corresponds)."""
    prefix = max((p for p in prefixes if key.startswith(p)), key=len, default=None)
    return None if prefix is None else prefixes[prefix] + key[len(prefix):]


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") if names else "none"


def torchvision_names(model: FusionMobileNetV2) -> dict[str, str | None]:
    """Our state-dict key -> torchvision's name of the same tensor (None where there is none)."""
    prefixes = _prefixes(model)
    return {key: _map(prefixes, key) for key in model.state_dict()}
