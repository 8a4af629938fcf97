"""The literal tables of the MobileNetV2 spaces: block layouts, default choices, standard presets.

:mod:`fusionnas.spaces.mobilenetv2` builds its spaces from them (and
re-exports them); they are data, so they need nothing from it.
"""
from __future__ import annotations

__all__ = [
    "INVERTED_RESIDUAL_SETTING", "CIFAR_INVERTED_RESIDUAL_SETTING",
    "FUSIONS", "DEPTHWISE", "EXPAND_RATIOS", "KERNELS", "WIDTHS", "STANDARD_PRESETS",
]

INVERTED_RESIDUAL_SETTING = (
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# CIFAR (32x32): stem stride 1 and stride 1 in the 24-channel stage, as in
# kuangliu/pytorch-cifar, so the last maps are 4x4 instead of 1x1.
CIFAR_INVERTED_RESIDUAL_SETTING = (
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# Every registered operator is offered (a space may restrict the list); these come first, in this
# order, so that the choices of studies stored before the registry decided them stay as they were.
FUSIONS = ("conv", "wht", "dct", "bft")
DEPTHWISE = ("conv", "hadamard")
EXPAND_RATIOS = (3, 4, 6)
KERNELS = (3, 5)
WIDTHS = (0.75, 1.0)


def _last_third(i: int, n: int) -> tuple[str, str, str]:
    """WHT in every 1x1 layer of the last floor(n / 3) blocks (5 of 17) and, for i == n, the head."""
    return ("wht", "conv", "wht") if i >= n - n // 3 else ("conv", "conv", "conv")


STANDARD_PRESETS = (
    # name, rule(i, n) -> (expand, depthwise, project) of block i of n (i == n: the head), note
    ("baseline", lambda i, n: ("conv", "conv", "conv"),
     "torchvision's mobilenet_v2, all conv (seed 000 on CIFAR-10: 2.270M parameters)"),
    ("wht-last-third", _last_third,
     "seed 000's hybrid (CIFAR-10: 540K parameters): WHT in every 1x1 layer of the last 5 of 17 blocks and the head"),
    ("wht-last-third-blocks", lambda i, n: _last_third(i, n) if i < n else ("conv",) * 3,
     "wht-last-third with a conv head (seed 000's earlier abstract: 947K parameters)"),
    *((f"all-{fusion}", lambda i, n, f=fusion: (f, "conv", f),
       f"every 1x1 layer (expansions, projections, head) {fusion}") for fusion in ("wht", "dct", "bft")),
    ("all-wht-hadamard", lambda i, n: ("wht", "hadamard", "wht"),
     "every 1x1 layer WHT, every depthwise conv Hadamard: no dense weights but the stem and classifier"),
)
