"""MobileNetV2 search spaces: per block, which operators fuse channels and how wide it is.

The reference network is torchvision's ``mobilenet_v2`` (the ``# t, c, n, s``
tables of :mod:`fusionnas.spaces.mobilenetv2_tables`, with the default choices
and the standard presets). Per inverted-residual block a space offers:

* ``expand`` and ``project``: the 1x1 fusion operator, every registered one
  (:mod:`fusionnas.layers.registry`, plugins included) unless the space
  restricts the list;
  the first block (t = 1) has no expansion, so no ``expand`` or ``expand_ratio``;
* ``depthwise``: every registered depthwise operator: ``conv`` (k x k
  depthwise conv + BN + ReLU6), ``hadamard``, ...;
* ``expand_ratio`` in ``EXPAND_RATIOS`` = (3, 4, 6): around MobileNetV2's 6,
  as in ProxylessNAS/FBNet-style spaces, without blowing up the hidden width;
* ``kernel`` in ``KERNELS`` = (3, 5): the depthwise kernel (the Hadamard tile
  is next_power_of_two(k): 4x4 or 8x8);
* ``width`` in ``WIDTHS`` = (0.75, 1.0): multiplier on the block's output
  channels, rounded by :func:`make_divisible`. Where 0.75 rounds to the same
  width as 1.0 (the 16- and 24-channel stages) the block offers only 1.0.

plus ``head_fusion``, the operator of the final 1x1 layer (320 -> 1280).
Strides are fixed by the table, so they are not choices. The baseline
(t = 6, k = 3, width 1.0, all conv) is in every space.

``space.with_network_defaults()`` draws the same architectures with their
operators as a network default and per-layer overrides
(:mod:`fusionnas.spaces.operator_defaults`).
``space.restrict(fusions=["conv"], kernels=[3])`` is the same space sampling
only a subset (see :meth:`MobileNetV2Space.restrict`); its architectures keep
the space's name and archids, and its baseline is the space's, inside the
subset or not. ``space.uniform("wht", size="largest")`` is the architecture
with one operator everywhere and the rest at its smallest or largest.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fusionnas.errors import UserError
from fusionnas.layers import list_fusions
from fusionnas.spaces._block_slots import FIELDS, BlockSlot, block_rows, block_slots, offered
from fusionnas.spaces.arch import Arch, BlockChoice
from fusionnas.spaces.blocks import list_depthwise
from fusionnas.spaces.mobilenetv2_tables import (CIFAR_INVERTED_RESIDUAL_SETTING, DEPTHWISE, EXPAND_RATIOS, FUSIONS,
                                                 INVERTED_RESIDUAL_SETTING, KERNELS, STANDARD_PRESETS, WIDTHS)
from fusionnas.spaces.network import BlockConfig, FusionMobileNetV2, make_divisible, walk_shapes
from fusionnas.spaces.operator_defaults import operator_params, operator_parameters, sample_operators
from fusionnas.spaces.registry import NoBaselineError, format_choices, register_space, restricted_choices

if TYPE_CHECKING:
    import optuna

__all__ = [
    "INVERTED_RESIDUAL_SETTING", "CIFAR_INVERTED_RESIDUAL_SETTING", "FUSIONS", "DEPTHWISE", "EXPAND_RATIOS",
    "KERNELS", "WIDTHS", "make_divisible", "BlockConfig", "FusionMobileNetV2", "MobileNetV2Space",
]


_Rule = Callable[[int, int], tuple[str | None, str, str]]


class MobileNetV2Space:
    """A MobileNetV2 search space (see the module docstring for the choices).

    Args:
        name: registry name.
        setting: the ``# t, c, n, s`` table.
        input_shape: (C, H, W) of one image.
        num_classes: default classifier width for :meth:`build`.
        stem_stride: stride of the 3x3 stem conv.
        width_mult: global width multiplier, as torchvision's.
        dropout: classifier dropout.
        version: bump when the choices change (stored in every Arch).
    """

    def __init__(
        self,
        name: str,
        setting: Sequence[Sequence[int]],
        input_shape: tuple[int, int, int],
        num_classes: int,
        stem_stride: int = 2,
        width_mult: float = 1.0,
        fusions: Sequence[str] | None = None,
        depthwise: Sequence[str] | None = None,
        expand_ratios: Sequence[int] = EXPAND_RATIOS,
        kernels: Sequence[int] = KERNELS,
        widths: Sequence[float] = WIDTHS,
        dropout: float = 0.2,
        version: int = 1,
        round_nearest: int = 8,
    ) -> None:
        if not setting or any(len(row) != 4 for row in setting):
            raise ValueError(f"setting must be non-empty rows of (t, c, n, s), got {setting!r}")
        for label, values, known in (("fusions", fusions, list_fusions()),
                                     ("depthwise", depthwise, list_depthwise())):
            unknown = [v for v in values or () if v not in known]
            if unknown:
                raise ValueError(f"{label}: {unknown[0]!r} is not one of {format_choices(known)}")
        if 6 not in expand_ratios or 3 not in kernels or 1.0 not in widths or "conv" not in (fusions or ("conv",)):
            raise ValueError("the choices must contain the baseline (expand ratio 6, kernel 3, width 1.0, conv)")
        self.name, self.version = name, version
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.stem_stride, self.dropout = stem_stride, dropout
        self._fusions = tuple(fusions) if fusions is not None else None
        self._depthwise = tuple(depthwise) if depthwise is not None else None
        self.stem_channels = make_divisible(32 * width_mult, round_nearest)
        self.head_channels = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        self._rows = block_rows(setting, width_mult, widths, round_nearest)
        self._expand_ratios, self._kernels = tuple(expand_ratios), tuple(kernels)
        self._widths = tuple(sorted(float(w) for w in widths))
        self._base = self  # the unrestricted space (see restrict)
        self._network_defaults = False  # see with_network_defaults
        self._slot_cache: tuple[tuple[tuple[str, ...], tuple[str, ...]], list[BlockSlot]] | None = None
        self._presets: dict[str, tuple[_Rule, str]] = {}

    @property
    def fusions(self) -> tuple[str, ...]:
        """The fusion operators offered: the space's own list, else every registered one."""
        return self._fusions if self._fusions is not None else offered(list_fusions(), FUSIONS)

    @property
    def depthwise(self) -> tuple[str, ...]:
        """The depthwise operators offered: the space's own list, else every registered one."""
        return self._depthwise if self._depthwise is not None else offered(list_depthwise(), DEPTHWISE)

    @property
    def kernels(self) -> tuple[int, ...]:
        """The depthwise kernel sizes offered."""
        return self._kernels

    @property
    def _slots(self) -> list[BlockSlot]:
        """The block positions with what they offer now (an operator registered later, by a plugin,
        is offered from then on)."""
        key = (self.fusions, self.depthwise)
        if self._slot_cache is None or self._slot_cache[0] != key:
            slots = block_slots(self._rows, *key, self._expand_ratios, self._kernels, self._widths)
            self._slot_cache = (key, slots)
        return self._slot_cache[1]

    def __repr__(self) -> str:
        restricted = ", restricted" if self._base is not self else ""
        return (f"MobileNetV2Space({self.name!r}, input_shape={self.input_shape}, "
                f"blocks={len(self._slots)}{restricted})")

    # -- restriction ---------------------------------------------------------------------

    def restrictions(self) -> dict[str, tuple[Any, ...]]:
        """Restrictable choice -> the values offered: ``fusions``, ``depthwise``, ``expand_ratios``,
        ``kernels``, ``widths``."""
        return {"fusions": self.fusions, "depthwise": self.depthwise, "expand_ratios": self._expand_ratios,
                "kernels": self._kernels, "widths": self._widths}

    def restrict(self, **subsets: Sequence[Any]) -> MobileNetV2Space:
        """This space sampling only ``subsets`` of :meth:`restrictions`, e.g. ``fusions=["conv"]``.

        The result shares name, version, blocks and presets, and its
        :meth:`baseline` is this space's even where the subset lacks it;
        :meth:`sample`, :meth:`choices`, :meth:`params`, :meth:`size` and
        :meth:`validate` see the subset, :meth:`build` every architecture of
        the unrestricted space. ``widths=[0.75]`` keeps 1.0 in the blocks where
        0.75 rounds to the same channels. A list that is not a subset raises
        :class:`~fusionnas.spaces.registry.RestrictionError`.
        """
        kept = restricted_choices(self.name, self.restrictions(), subsets)
        restricted = copy.copy(self)
        restricted._fusions = kept.get("fusions", self._fusions)
        restricted._depthwise = kept.get("depthwise", self._depthwise)
        restricted._expand_ratios = kept.get("expand_ratios", self._expand_ratios)
        restricted._kernels = kept.get("kernels", self._kernels)
        restricted._widths = kept.get("widths", self._widths)
        restricted._slot_cache = None
        return restricted

    # -- architectures -------------------------------------------------------------------

    def sample(self, trial: optuna.trial.BaseTrial) -> Arch:
        """Draw an Arch: one ``suggest_categorical`` per offered choice (``b3.project``, ``head.fusion``),
        or, with :meth:`with_network_defaults`, the operators as a network default with overrides."""
        layers = self._layer_choices()
        if self._network_defaults:
            values = sample_operators(trial, layers)
        else:
            values = {name: trial.suggest_categorical(name, options) for name, options in layers.items()}
        blocks = [
            BlockChoice(**{field: values.get(f"b{i}.{field}", options[0]) for field, options in slot.choices().items()})
            for i, slot in enumerate(self._slots)
        ]
        return self._arch(blocks, values.get("head.fusion", self.fusions[0]))

    def choices(self) -> dict[str, list[Any]]:
        """Optuna parameter name -> offered values, for every choice with more than one value.

        A block leaves out what it cannot take: ``b0.expand`` and
        ``b0.expand_ratio`` (MobileNetV2's first block has no expansion) and
        ``b{i}.width`` where 0.75 rounds to the same width as 1.0. With network
        defaults the operators' parameters are those of
        :func:`~fusionnas.spaces.operator_defaults.operator_parameters`.
        """
        layers = self._layer_choices()
        return operator_parameters(layers) if self._network_defaults else layers

    def _layer_choices(self) -> dict[str, list[Any]]:
        """Layer-by-layer choice -> offered values (the parameters without network defaults)."""
        offered = {
            f"b{i}.{field}": list(options)
            for i, slot in enumerate(self._slots)
            for field, options in slot.choices().items()
            if len(options) > 1
        }
        if len(self.fusions) > 1:
            offered["head.fusion"] = list(self.fusions)
        return offered

    def params(self, arch: Arch) -> dict[str, Any]:
        """The Optuna parameters that make :meth:`sample` return ``arch`` (for ``enqueue_trial``)."""
        self.validate(arch)
        values = {f"b{i}.{field}": getattr(block, field)
                  for i, block in enumerate(arch.blocks) for field in FIELDS}
        values["head.fusion"] = arch.head_fusion
        layers = self._layer_choices()
        if self._network_defaults:
            return operator_params(values, layers)
        return {name: values[name] for name in layers}

    def with_network_defaults(self) -> MobileNetV2Space:
        """This space drawing its operators as a network-wide default with per-layer overrides
        (:mod:`fusionnas.spaces.operator_defaults`): the same architectures, parameterised otherwise."""
        space = copy.copy(self)
        space._network_defaults = True
        return space

    def baseline(self) -> Arch:
        """The reference network: torchvision's MobileNetV2 (all conv, t = 6, k = 3, width 1.0),
        the unrestricted space's; :class:`~fusionnas.spaces.registry.NoBaselineError` when the
        space was made without the ``baseline`` preset."""
        if "baseline" not in self._presets:
            raise NoBaselineError(
                f"space {self.name!r} has no 'baseline' preset, the all-conv reference that latency measured "
                f"here, export and `pareto --measure` compare against; add it where the space is registered: "
                f"space.add_preset(\"baseline\", lambda i, n: (\"conv\", \"conv\", \"conv\"))")
        return self.preset("baseline")

    def presets(self) -> list[str]:
        """Names of the named architectures."""
        return list(self._presets)

    def preset(self, name: str) -> Arch:
        """The named architecture ``name`` (see :meth:`presets`)."""
        if name not in self._presets:
            known = ", ".join(self._presets) or "none (space.add_preset adds one)"
            raise UserError(f"unknown preset {name!r} of space {self.name!r}; known: {known}")
        rule, _ = self._presets[name]
        blocks = []
        for i, slot in enumerate(self._slots):
            expand, depthwise, project = rule(i, len(self._slots))
            blocks.append(BlockChoice(expand=None if slot.base_ratio == 1 else expand, depthwise=depthwise,
                                      project=project, expand_ratio=slot.base_ratio, kernel=3, width=1.0))
        arch = self._arch(blocks, rule(len(self._slots), len(self._slots))[2])
        self._base.validate(arch)  # a rule may name an operator the space does not offer
        return arch

    def preset_note(self, name: str) -> str:
        """One line on where the preset comes from."""
        self.preset(name)  # validates the name
        return self._presets[name][1]

    def add_preset(self, name: str, rule: _Rule, note: str = "") -> None:
        """Register a preset: ``rule(i, n) -> (expand, depthwise, project)`` for block i of n; i = n is the head."""
        if name in self._presets:
            raise ValueError(f"preset {name!r} of space {self.name!r} already exists")
        self._presets[name] = (rule, note)
        self.preset(name)  # fails now, not at use, if the rule leaves the space

    def uniform(self, fusion: str, depthwise: str | None = None, *, kernel: int | None = None,
                size: str = "smallest") -> Arch:
        """The architecture with ``fusion`` in every 1x1 layer (expansions, projections, head) and
        ``depthwise`` (default: the first offered) in every block; each block's expansion ratio, kernel
        (unless ``kernel`` is given) and width the ``"smallest"`` or ``"largest"`` it offers.

        The cheapest architectures of the space are ``uniform(f, d)`` over its operators; the widest
        ``uniform(f, d, kernel=k, size="largest")``. Operators outside the space raise ``ValueError``.
        """
        if size not in ("smallest", "largest"):
            raise UserError(f"size: {size!r} is not one of smallest, largest")
        pick = min if size == "smallest" else max
        depthwise = self.depthwise[0] if depthwise is None else depthwise
        kernel = pick(self._kernels) if kernel is None else kernel
        for field, value, allowed in (("fusion", fusion, self.fusions), ("depthwise", depthwise, self.depthwise),
                                      ("kernel", kernel, self._kernels)):
            if value not in allowed:
                raise UserError(f"{field}: {value!r} is not one of {format_choices(allowed)}")
        blocks = [BlockChoice(expand=fusion if fusion in slot.expand else None, depthwise=depthwise, project=fusion,
                              expand_ratio=pick(slot.expand_ratio), kernel=kernel, width=pick(slot.width))
                  for slot in self._slots]
        return self._arch(blocks, fusion)

    def _arch(self, blocks: list[BlockChoice], head_fusion: str) -> Arch:
        return Arch(space=self.name, version=self.version, stem_channels=self.stem_channels,
                    head_channels=self.head_channels, head_fusion=head_fusion, blocks=tuple(blocks))

    def size(self) -> int:
        """Number of architectures: the product of the number of offered values of every choice."""
        return math.prod(len(values) for values in self._layer_choices().values())

    def validate(self, arch: Arch) -> None:
        """Raise ``ValueError`` naming the first field of ``arch`` this space does not allow."""
        for field, value, allowed in (
            ("space", arch.space, (self.name,)),
            ("version", arch.version, (self.version,)),
            ("stem_channels", arch.stem_channels, (self.stem_channels,)),
            ("head_channels", arch.head_channels, (self.head_channels,)),
            ("head_fusion", arch.head_fusion, self.fusions),
        ):
            if value not in allowed:
                raise UserError(f"{field}: {value!r} is not one of {format_choices(allowed)}")
        if len(arch.blocks) != len(self._slots):
            raise UserError(f"blocks: space {self.name!r} has {len(self._slots)} blocks, got {len(arch.blocks)}")
        for i, (slot, block) in enumerate(zip(self._slots, arch.blocks)):
            for field, allowed in slot.choices().items():
                value = getattr(block, field)
                if value not in allowed:
                    shown = "null" if value is None else repr(value)
                    raise UserError(f"blocks[{i}].{field}: {shown} is not one of {format_choices(allowed)}")

    # -- models --------------------------------------------------------------------------

    def block_configs(self, arch: Arch) -> list[BlockConfig]:
        """Resolved constructor arguments of every block of ``arch`` (any of the unrestricted space)."""
        self._base.validate(arch)
        configs, channels = [], self.stem_channels
        for slot, block in zip(self._base._slots, arch.blocks):
            out = slot.widths_out[block.width]
            configs.append(BlockConfig(channels, out, slot.stride, block.expand_ratio, block.kernel,
                                       block.expand, block.depthwise, block.project))
            channels = out
        return configs

    def block_input_shapes(self, arch: Arch) -> list[tuple[int, int, int]]:
        """(C, H, W) entering each block of ``arch`` at the space's input size."""
        blocks = [(c.in_channels, c.out_channels, c.stride) for c in self.block_configs(arch)]
        return walk_shapes(self.input_shape, self.stem_stride, blocks)[:-1]

    def build(self, arch: Arch, num_classes: int | None = None) -> FusionMobileNetV2:
        """The torch model of ``arch`` (``num_classes`` defaults to the space's)."""
        if not isinstance(arch, Arch):
            raise TypeError(f"arch must be an Arch, got {type(arch).__name__}")
        if arch.space != self.name:
            raise UserError(f"arch is from space {arch.space!r}, not {self.name!r}; use get_space({arch.space!r})")
        num_classes = self.num_classes if num_classes is None else num_classes
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
        return FusionMobileNetV2(
            self.block_configs(arch), stem_channels=self.stem_channels, stem_stride=self.stem_stride,
            head_channels=self.head_channels, head_fusion=arch.head_fusion, num_classes=num_classes,
            dropout=self.dropout, input_shape=self.input_shape,
        )


def _with_standard_presets(space: MobileNetV2Space) -> MobileNetV2Space:
    for name, rule, note in STANDARD_PRESETS:
        space.add_preset(name, rule, note)
    return space


MOBILENETV2_CIFAR = register_space(_with_standard_presets(MobileNetV2Space(
    "mobilenetv2-cifar", CIFAR_INVERTED_RESIDUAL_SETTING, input_shape=(3, 32, 32), num_classes=10, stem_stride=1,
)))
MOBILENETV2_IMAGENET = register_space(_with_standard_presets(MobileNetV2Space(
    "mobilenetv2-imagenet", INVERTED_RESIDUAL_SETTING, input_shape=(3, 224, 224), num_classes=1000, stem_stride=2,
)))
