"""Architecture documents: an immutable, portable description of one network in a space.

An :class:`Arch` names its space and version, the stem and head settings and,
per inverted-residual block, a :class:`BlockChoice`. ``to_json()`` gives the
canonical JSON (sorted keys, no whitespace), ``archid`` a short hash of it,
the same in every process::

    {"blocks": [{"depthwise": "conv", "expand": null, "expand_ratio": 1,
                 "kernel": 3, "project": "conv", "width": 1.0}, ...],
     "head_channels": 1280, "head_fusion": "conv", "space": "mobilenetv2-cifar",
     "stem_channels": 32, "version": 1}

An Arch is a plain value: construction checks only the types. Its values
are checked where an architecture enters or is used: ``from_json`` (against
the space the document names, or the one given), ``space.params``,
``space.build`` and ``space.validate``. A bad field raises ``ValueError``
naming its path, the bad value and the allowed values, e.g.
``blocks[3].project: 'fft9' is not one of conv, wht, dct, bft``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from fusionnas.errors import UserError
from fusionnas.spaces.registry import format_choices, get_space, list_spaces

if TYPE_CHECKING:
    from fusionnas.spaces.registry import Space

__all__ = ["Arch", "BlockChoice", "format_choices", "short_form"]

# Short names of the depthwise operators in ``describe()`` strings.
_DEPTHWISE_SHORT = {"conv": "dw", "hadamard": "hd"}


def _show(value: Any) -> str:
    """A value as the JSON document spells it (``null`` for None)."""
    return "null" if value is None else repr(value)


def short_form(expand_ratio: int, kernel: int, expand: str | None, depthwise: str, project: str) -> str:
    """``e6 k3 wht/dw/bft``: the short block form shared by documents and modules."""
    dw = _DEPTHWISE_SHORT.get(depthwise, depthwise)
    return f"e{expand_ratio} k{kernel} {expand or '-'}/{dw}/{project}"


def _require(path: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise UserError(f"{path}: {_show(value)} is not {what}")


@dataclass(frozen=True)
class BlockChoice:
    """The choices of one inverted-residual block.

    Attributes:
        expand: fusion operator of the 1x1 expansion (``None``: the block has
            expansion ratio 1 and no expansion layer, as MobileNetV2's first).
        depthwise: depthwise operator (``conv`` or ``hadamard``).
        project: fusion operator of the 1x1 projection.
        expand_ratio: hidden channels = round(in_channels * expand_ratio).
        kernel: depthwise kernel size (the Hadamard tile for ``hadamard``).
        width: multiplier on the block's nominal output channels.
    """

    expand: str | None
    depthwise: str
    project: str
    expand_ratio: int
    kernel: int
    width: float

    def __post_init__(self) -> None:
        if self.expand is not None:
            _require("expand", self.expand, str, "a string or null")
        _require("depthwise", self.depthwise, str, "a string")
        _require("project", self.project, str, "a string")
        _require("expand_ratio", self.expand_ratio, int, "an integer")
        _require("kernel", self.kernel, int, "an integer")
        _require("width", self.width, (int, float), "a number")
        # 1 and 1.0 are one choice: store a float so the canonical JSON is unique.
        object.__setattr__(self, "width", float(self.width))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the choices."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> BlockChoice:
        """Parse ``to_dict()`` output; errors name the field, prefixed by ``path`` (``blocks[3]``)."""
        values = _fields_of(cls, data, path)
        try:
            return cls(**values)
        except ValueError as error:
            raise UserError(f"{path}.{error}" if path else str(error)) from None

    def describe(self) -> str:
        """Short form for tables and plots: ``e6 k3 wht/dw/bft`` (``w0.75`` when not 1)."""
        text = short_form(self.expand_ratio, self.kernel, self.expand, self.depthwise, self.project)
        return text if self.width == 1.0 else f"{text} w{self.width:g}"


@dataclass(frozen=True)
class Arch:
    """One architecture of a search space (see the module docstring).

    Attributes:
        space: the space's name, e.g. ``mobilenetv2-cifar``.
        version: the space's version when the document was written.
        stem_channels: output channels of the stem convolution.
        head_channels: output channels of the final 1x1 layer (1280).
        head_fusion: fusion operator of that final layer.
        blocks: one :class:`BlockChoice` per inverted-residual block.
    """

    space: str
    version: int
    stem_channels: int
    head_channels: int
    head_fusion: str
    blocks: tuple[BlockChoice, ...]

    def __post_init__(self) -> None:
        _require("space", self.space, str, "a string")
        _require("version", self.version, int, "an integer")
        _require("stem_channels", self.stem_channels, int, "an integer")
        _require("head_channels", self.head_channels, int, "an integer")
        _require("head_fusion", self.head_fusion, str, "a string")
        if isinstance(self.blocks, (str, bytes)) or not isinstance(self.blocks, Sequence):
            raise UserError(f"blocks: {_show(self.blocks)} is not a list of blocks")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        for i, block in enumerate(self.blocks):
            if not isinstance(block, BlockChoice):
                raise UserError(f"blocks[{i}]: {_show(block)} is not a BlockChoice")

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what ``to_json`` writes)."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["blocks"] = [block.to_dict() for block in self.blocks]
        return data

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: sorted keys, compact unless ``indent`` is given (for people)."""
        separators = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=separators)

    @classmethod
    def from_dict(cls, data: Any, space: Space | None = None) -> Arch:
        """Build an Arch from ``to_dict()`` output and check it against ``space`` (by default the
        registered space the document names)."""
        values = _fields_of(cls, data, "")
        blocks = values["blocks"]
        if not isinstance(blocks, list):
            raise UserError(f"blocks: {_show(blocks)} is not a list of blocks")
        values["blocks"] = tuple(BlockChoice.from_dict(block, f"blocks[{i}]") for i, block in enumerate(blocks))
        arch = cls(**values)
        if space is None:
            if arch.space not in list_spaces():
                raise UserError(f"space: {arch.space!r} is not one of {format_choices(list_spaces())}")
            space = get_space(arch.space)
        space.validate(arch)
        return arch

    @classmethod
    def from_json(cls, text: str | bytes, space: Space | None = None) -> Arch:
        """Parse a JSON document and check it as :meth:`from_dict` does; any problem raises
        ``ValueError`` naming it."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"invalid architecture JSON: {error}") from None
        return cls.from_dict(data, space)

    # -- identity and display ------------------------------------------------------------

    @property
    def archid(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON: stable everywhere."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:12]

    def describe(self) -> str:
        """One line: every block's short form, then the head's fusion."""
        blocks = ", ".join(f"b{i} {block.describe()}" for i, block in enumerate(self.blocks))
        return f"{blocks}; head {self.head_fusion}"


def _fields_of(cls: type, data: Any, path: str) -> dict[str, Any]:
    """``data``'s values for the dataclass fields of ``cls``; errors name the key under ``path``."""
    names = [f.name for f in fields(cls)]
    if not isinstance(data, Mapping):
        raise UserError(
            f"{path or 'document'}: {_show(data)} is not a JSON object with keys {', '.join(names)}"
        )
    prefix = f"{path}." if path else ""
    unknown = sorted(str(key) for key in set(data) - set(names))
    if unknown:
        raise UserError(f"{prefix}{unknown[0]}: unknown field; known: {', '.join(names)}")
    missing = [name for name in names if name not in data]
    if missing:
        raise UserError(f"{prefix}{missing[0]}: missing field")
    return {name: data[name] for name in names}
