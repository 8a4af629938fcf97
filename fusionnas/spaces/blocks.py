"""MobileNetV2's inverted-residual block with pluggable fusion and depthwise operators.

Fusions (the 1x1 expansion and projection, and the head's final 1x1 layer)
come from :func:`fusionnas.layers.create_fusion`, depthwise operators from
:func:`fusionnas.layers.create_depthwise`: both registries live in
``fusionnas/layers``, where adding an operator is one file.

Every module a latency table times on its own (stem, block, head) has a
``signature``: a canonical string of its full configuration that, together
with its input shape, keys a lookup table.
"""
from __future__ import annotations

import torch
from torch import nn

from fusionnas.errors import UserError
from fusionnas.layers import (ConvBNReLU6, Folded, create_depthwise, create_fusion, fold_batch_norm, list_depthwise,
                              register_depthwise)
from fusionnas.spaces.arch import short_form

__all__ = [
    "ConvBNReLU6",
    "FusionBN",
    "InvertedResidual",
    "create_depthwise",
    "list_depthwise",
    "register_depthwise",
]


class FusionBN(nn.Sequential):
    """A fusion operator from the registry, batch norm, then ReLU6 unless ``activation=False``."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, activation: bool = True) -> None:
        layers = [create_fusion(kind, in_channels, out_channels), nn.BatchNorm2d(out_channels)]
        if activation:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)
        self.kind = kind
        self._folded = Folded()
        act = "relu6" if activation else "none"
        self.signature = f"fusion(kind={kind},in={in_channels},out={out_channels},act={act})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        fusion, bn = self[0], self[1]
        if not self.training and not torch.is_grad_enabled() and hasattr(fusion, "forward_fused"):
            # Inference: the batch norm and ReLU6 folded into the operator's native kernel.
            scale, shift = self._folded((bn.weight, bn.bias, bn.running_mean, bn.running_var), lambda: fold_batch_norm(bn))
            y = fusion.forward_fused(x, scale, shift, relu6=len(self) > 2)
            if y is not None:
                return y
        if not (torch.onnx.is_in_onnx_export() and not self.training and hasattr(fusion, "export_forward")):
            return super().forward(x)
        # The exported graph: the batch norm folded into the operator's last linear stage.
        scale, shift = fold_batch_norm(bn)
        if hasattr(fusion, "native_node"):  # to_onnx(form="native"): one node, the ReLU6 folded in too
            if (node := fusion.native_node(x, scale, shift, relu6=len(self) > 2)) is not None:
                return node
        y = fusion.export_forward(x, scale, shift)
        return self[2](y) if len(self) > 2 else y


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand (1x1 fusion), depthwise, project (1x1 fusion), residual.

    ``expand``: FusionBN with ReLU6, absent when ``expand_ratio == 1``;
    ``depthwise``: from the depthwise registry; ``project``: FusionBN, linear.
    The residual is added when ``stride == 1`` and ``in_channels == out_channels``,
    as in torchvision. With all-conv operators and k=3 this is torchvision's
    ``InvertedResidual`` with the same parameters in the same order.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: int,
        kernel_size: int = 3,
        expand: str | None = "conv",
        depthwise: str = "conv",
        project: str = "conv",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise UserError(f"stride must be 1 or 2, got {stride!r}")
        if (expand_ratio == 1) != (expand is None):
            raise UserError(
                f"expand must be None exactly when expand_ratio is 1, got expand={expand!r} "
                f"with expand_ratio={expand_ratio!r}"
            )
        hidden = int(round(in_channels * expand_ratio))
        self.in_channels, self.out_channels, self.hidden_channels = in_channels, out_channels, hidden
        self.stride, self.expand_ratio, self.kernel_size = stride, expand_ratio, kernel_size
        self.operators = (expand, depthwise, project)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = None if expand is None else FusionBN(expand, in_channels, hidden)
        self.depthwise = create_depthwise(depthwise, hidden, kernel_size, stride)
        self.project = FusionBN(project, hidden, out_channels, activation=False)
        if isinstance(self.depthwise, ConvBNReLU6):  # a 1x1 conv takes channels-last input without a copy
            self.depthwise.train_channels_last &= project == "conv"
        self.signature = (
            f"ir(in={in_channels},out={out_channels},hidden={hidden},s={stride},k={kernel_size},"
            f"expand={expand or 'none'},dw={depthwise},project={project},res={int(self.use_residual)})"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = x if self.expand is None else self.expand(x)  # (N, hidden, H, W)
        y = self.project(self.depthwise(y))  # (N, out, H / s, W / s)
        return x + y if self.use_residual else y

    def stages(self, input_shape: tuple[int, int, int]) -> list[tuple[str, nn.Module, tuple[int, int, int]]]:
        """(key, module, input shape (C, H, W)) of the block's stages in order: expand, depthwise, project.

        The block computes what its stages compute, plus the residual add where
        ``use_residual``. A key names a stage's full configuration, so a counter
        can keep one count per key and input shape: stages recur across
        architectures far more often than whole blocks do.
        """
        c, h, w = input_shape
        hidden, (_, depthwise, _) = self.hidden_channels, self.operators
        stages: list[tuple[str, nn.Module, tuple[int, int, int]]] = []
        if self.expand is not None:
            stages.append((self.expand.signature, self.expand, (c, h, w)))
        depthwise_key = f"dw(kind={depthwise},c={hidden},k={self.kernel_size},s={self.stride})"
        stages.append((depthwise_key, self.depthwise, (hidden, h, w)))
        stages.append((self.project.signature, self.project, (hidden, -(-h // self.stride), -(-w // self.stride))))
        return stages

    def describe(self) -> str:
        """``32->32 s1 e6 k3 wht/dw/bft +res``: channels, stride and operators."""
        ops = short_form(self.expand_ratio, self.kernel_size, *self.operators)
        res = " +res" if self.use_residual else ""
        return f"{self.in_channels}->{self.out_channels} s{self.stride} {ops}{res}"
