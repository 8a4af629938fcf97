"""MobileNetV2 search spaces: per block, which operators fuse channels and how wide it is.

The reference network is torchvision's ``mobilenet_v2`` (the ``# t, c, n, s``
table below). Per inverted-residual block a space offers:

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
subset or not.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence


from fusionnas.errors import UserError
from fusionnas.layers import list_fusions
from fusionnas.spaces.arch import Arch, BlockChoice, format_choices
from fusionnas.spaces.blocks import list_depthwise
from fusionnas.spaces.network import BlockConfig, FusionMobileNetV2, make_divisible, walk_shapes
from fusionnas.spaces.operator_defaults import operator_params, operator_parameters, sample_operators
from fusionnas.spaces.registry import NoBaselineError, register_space, restricted_choices

if TYPE_CHECKING:
    import optuna

__all__ = [
    "INVERTED_RESIDUAL_SETTING",
    "CIFAR_INVERTED_RESIDUAL_SETTING",
    "FUSIONS",
    "DEPTHWISE",
    "EXPAND_RATIOS",
    "KERNELS",
    "WIDTHS",
    "make_divisible",
    "BlockConfig",
    "FusionMobileNetV2",
    "MobileNetV2Space",
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


@dataclass(frozen=True)
class _BlockSlot:
    """One block position of a space: its fixed stride and nominal width, and what it offers."""

    base_ratio: int
    stride: int
    widths_out: Mapping[float, int]  # offered width multiplier -> output channels
    expand: tuple[str | None, ...]
    expand_ratio: tuple[int, ...]
    depthwise: tuple[str, ...]
    kernel: tuple[int, ...]
    project: tuple[str, ...]

    @property
    def width(self) -> tuple[float, ...]:
        return tuple(self.widths_out)

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Allowed values per BlockChoice field, in the order ``sample`` suggests them."""
        names = ("expand", "expand_ratio", "depthwise", "kernel", "project", "width")
        return {name: getattr(self, name) for name in names}


_Rule = Callable[[int, int], tuple[str | None, str, str]]
_FIELDS = ("expand", "expand_ratio", "depthwise", "kernel", "project", "width")


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
        self._rows = []  # (t, s, widths_out, width -> the width with its channels) per block
        for t, c, n, s in setting:
            widths_out: dict[float, int] = {1.0: make_divisible(c * width_mult, round_nearest)}
            same: dict[float, float] = {}
            for w in sorted(widths, key=lambda w: abs(w - 1.0)):  # a duplicate width keeps 1.0
                out = make_divisible(c * width_mult * w, round_nearest)
                same[float(w)] = next((v for v, o in widths_out.items() if o == out), float(w))
                widths_out.setdefault(same[float(w)], out)
            widths_out = {w: widths_out[w] for w in sorted(widths_out)}
            self._rows += [(t, s if i == 0 else 1, widths_out, same) for i in range(n)]
        self._expand_ratios, self._kernels = tuple(expand_ratios), tuple(kernels)
        self._widths = tuple(sorted(float(w) for w in widths))
        self._base = self  # the unrestricted space (see restrict)
        self._network_defaults = False  # see with_network_defaults
        self._slot_cache: tuple[tuple[tuple[str, ...], tuple[str, ...]], list[_BlockSlot]] | None = None
        self._presets: dict[str, tuple[_Rule, str]] = {}

    @property
    def fusions(self) -> tuple[str, ...]:
        """The fusion operators offered: the space's own list, else every registered one."""
        return self._fusions if self._fusions is not None else _offered(list_fusions(), FUSIONS)

    @property
    def depthwise(self) -> tuple[str, ...]:
        """The depthwise operators offered: the space's own list, else every registered one."""
        return self._depthwise if self._depthwise is not None else _offered(list_depthwise(), DEPTHWISE)

    @property
    def _slots(self) -> list[_BlockSlot]:
        """The block positions with what they offer now (an operator registered later, by a plugin,
        is offered from then on)."""
        key = (self.fusions, self.depthwise)
        if self._slot_cache is None or self._slot_cache[0] != key:
            fusions, depthwise = key
            self._slot_cache = (key, [
                _BlockSlot(base_ratio=t, stride=stride,
                           widths_out={w: out for w, out in widths_out.items()
                                       if w in {same[v] for v in self._widths}},
                           expand=(None,) if t == 1 else fusions,
                           expand_ratio=(1,) if t == 1 else self._expand_ratios,
                           depthwise=depthwise, kernel=self._kernels, project=fusions)
                for t, stride, widths_out, same in self._rows])
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
                  for i, block in enumerate(arch.blocks) for field in _FIELDS}
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
        return self._arch(blocks, rule(len(self._slots), len(self._slots))[2])

    def preset_note(self, name: str) -> str:
        """One line on where the preset comes from."""
        self.preset(name)  # validates the name
        return self._presets[name][1]

    def add_preset(self, name: str, rule: _Rule, note: str = "") -> None:
        """Register a preset: ``rule(i, n) -> (expand, depthwise, project)`` for block i of n; i = n is the head."""
        if name in self._presets:
            raise ValueError(f"preset {name!r} of space {self.name!r} already exists")
        self._presets[name] = (rule, note)
        self.preset(name)  # fails now, not at use, if the rule leaves the space (register the space first)

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


def _offered(registered: Sequence[str], first: Sequence[str]) -> tuple[str, ...]:
    """``registered`` with the names of ``first`` leading, in their order, the rest sorted."""
    return (*(n for n in first if n in registered), *sorted(n for n in registered if n not in first))


def _add_standard_presets(space: MobileNetV2Space) -> MobileNetV2Space:
    """baseline; seed 000's hybrid; all-WHT/-DCT/-BFT; all-WHT with Hadamard depthwise."""
    space.add_preset("baseline", lambda i, n: ("conv", "conv", "conv"),
                     "torchvision's mobilenet_v2, all conv (seed 000 on CIFAR-10: 2.270M parameters)")

    def last_third(i: int, n: int) -> tuple[str, str, str]:
        # the last floor(n / 3) blocks (5 of 17) and, for i == n, the head
        return ("wht", "conv", "wht") if i >= n - n // 3 else ("conv", "conv", "conv")

    space.add_preset("wht-last-third", last_third,
                     "seed 000's hybrid (CIFAR-10: 540K parameters): WHT in every 1x1 layer of the last 5 of 17 "
                     "blocks and the head")
    space.add_preset("wht-last-third-blocks", lambda i, n: last_third(i, n) if i < n else ("conv",) * 3,
                     "wht-last-third with a conv head (seed 000's earlier abstract: 947K parameters)")
    for fusion in ("wht", "dct", "bft"):
        space.add_preset(f"all-{fusion}", lambda i, n, f=fusion: (f, "conv", f),
                         f"every 1x1 layer (expansions, projections, head) {fusion}")
    space.add_preset("all-wht-hadamard", lambda i, n: ("wht", "hadamard", "wht"),
                     "every 1x1 layer WHT, every depthwise conv Hadamard: no dense weights but the stem and classifier")
    return space


# Registered before the presets are added: an Arch is only valid in a registered space.
MOBILENETV2_CIFAR = _add_standard_presets(register_space(MobileNetV2Space(
    "mobilenetv2-cifar", CIFAR_INVERTED_RESIDUAL_SETTING, input_shape=(3, 32, 32), num_classes=10, stem_stride=1,
)))
MOBILENETV2_IMAGENET = _add_standard_presets(register_space(MobileNetV2Space(
    "mobilenetv2-imagenet", INVERTED_RESIDUAL_SETTING, input_shape=(3, 224, 224), num_classes=1000, stem_stride=2,
)))
