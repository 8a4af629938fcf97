"""Search spaces: portable architecture documents and the models they build.

``get_space("mobilenetv2-cifar").baseline()`` is the reference network as an
:class:`Arch`; ``space.sample(trial)`` draws one with Optuna; ``space.build(arch)``
gives the torch model; ``space.restrict(fusions=["conv"])`` samples a subset;
``space.uniform("wht", size="largest")`` has one operator everywhere and the rest at its largest.
"""
from fusionnas.spaces.arch import Arch, BlockChoice
from fusionnas.spaces.blocks import InvertedResidual, create_depthwise, list_depthwise, register_depthwise
from fusionnas.spaces.mobilenetv2 import FusionMobileNetV2, MobileNetV2Space, make_divisible
from fusionnas.spaces.pretrained import load_torchvision_weights
from fusionnas.spaces.registry import (
    NoBaselineError,
    RestrictionError,
    Space,
    baseline_or_none,
    choices_fingerprint,
    get_space,
    list_spaces,
    random_archs,
    register_space,
    restricted_choices,
)

__all__ = [
    "Arch",
    "BlockChoice",
    "Space",
    "register_space",
    "choices_fingerprint",
    "get_space",
    "list_spaces",
    "random_archs",
    "RestrictionError",
    "restricted_choices",
    "NoBaselineError",
    "baseline_or_none",
    "MobileNetV2Space",
    "FusionMobileNetV2",
    "InvertedResidual",
    "register_depthwise",
    "create_depthwise",
    "list_depthwise",
    "make_divisible",
    "load_torchvision_weights",
]
