"""Reading study files: TOML -> checked mapping -> :class:`~fusionnas.search.config.StudyConfig`.

Every problem found is collected, so one run of :func:`load_study_config`
reports them all (see :mod:`fusionnas.search.config` for the schema).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from fusionnas.plugins import PluginError, load_plugins
from fusionnas.search.config import Budget, StudyConfig
from fusionnas.search.problems import StudyConfigError, StudyConfigProblem, choice
from fusionnas.search.sampler_config import SamplerConfig
from fusionnas.search.space_config import SpaceRestriction
from fusionnas.search.study_sections import Constraints, DatasetConfig, Objective

__all__ = ["load_study_config", "parse_study_config", "resolve_storage", "value_kind"]

# --- reading TOML -------------------------------------------------------------------------

_KINDS = {str: "str", int: "int", float: "number", bool: "bool"}


def value_kind(hint: Any) -> str:
    """The study-file kind of a field's type hint (``int | None`` -> ``"int"``)."""
    origin, args = typing.get_origin(hint), [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return value_kind(args[0])
    if origin is tuple:
        return "table_list" if dataclasses.is_dataclass(args[0]) else "str_list"
    if dataclasses.is_dataclass(hint) or origin is Mapping:
        return "table"
    return _KINDS[hint]


def _schema(cls: type) -> dict[str, tuple[str, str]]:
    """key -> (kind, example value for the fix), for the fields of ``cls`` made by ``key``."""
    hints = typing.get_type_hints(cls)
    return {f.name: (value_kind(hints[f.name]), f.metadata["example"])
            for f in dataclasses.fields(cls) if "example" in f.metadata}


_SCHEMA: dict[str, dict[str, tuple[str, str]]] = {
    section: _schema(cls) for section, cls in (
        ("", StudyConfig), ("dataset", DatasetConfig), ("objectives", Objective),
        ("constraints", Constraints), ("budget", Budget), ("sampler", SamplerConfig))
}
_KIND_TEXT = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true or false",
              "str_list": "a list of strings", "table": "a table", "table_list": "tables"}


def _kind_ok(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "bool"
    checks = {"bool": lambda v: False,"str": lambda v: isinstance(v, str), "int": lambda v: isinstance(v, int),
              "number": lambda v: isinstance(v, (int, float)),
              "str_list": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
              "table": lambda v: isinstance(v, Mapping),
              "table_list": lambda v: isinstance(v, list)
              and all(isinstance(t, Mapping) for t in v)}
    return checks[kind](value)


@dataclasses.dataclass(frozen=True)
class _Misspelt(StudyConfigProblem):
    """An unknown key that looks like a valid one the table lacks: ``meant`` is that key's field, whose
    problems (missing, needed by another key) are the misspelling's and go unreported."""

    meant: str = ""


def _unknown_key(section: str, field_: str, key: str, table: Mapping[str, Any]) -> StudyConfigProblem:
    close = difflib.get_close_matches(key, list(_SCHEMA[section]), n=1, cutoff=0.6)
    if close:
        meant = "" if close[0] in table else field_[: len(field_) - len(key)] + close[0]
        return _Misspelt(field_, "unknown key", f"did you mean {close[0]!r}?", meant=meant)
    for other, keys in _SCHEMA.items():
        if other and other != section and key in keys:
            where = "[[objectives]]" if other == "objectives" else f"[{other}]"
            return StudyConfigProblem(field_, "unknown key here", f"move it under {where}")
    return StudyConfigProblem(field_, "unknown key", f"valid keys: {', '.join(_SCHEMA[section])}")


def _read(table: Mapping[str, Any], section: str, prefix: str, problems: list,
          required: Sequence[str] = ()) -> dict[str, Any]:
    """The well-typed keys of ``table``; unknown, mistyped and missing keys become problems."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        field_ = f"{prefix}{key}"
        if key not in _SCHEMA[section]:
            problems.append(_unknown_key(section, field_, key, table))
            continue
        kind, example = _SCHEMA[section][key]
        if section == "" and key == "dataset" and isinstance(value, str):
            value = {"name": value}
        if section == "" and key == "space" and isinstance(value, Mapping):
            values[key] = value  # a [space] table, read by _space_table
            continue
        if not _kind_ok(value, kind):
            fix = (f"write {example} tables" if kind == "table_list" else
                   f"write {key} = {example}" if example else f"write [{key}] as a table")
            problems.append(StudyConfigProblem(
                field_, f"expected {_KIND_TEXT[kind]}, got {type(value).__name__} {value!r}", fix))
            continue
        values[key] = float(value) if kind == "number" else value
    for key in required:
        if key not in table:
            kind, example = _SCHEMA[section][key]
            fix = f"add {key} = {example}" if kind != "table_list" else f"add {example} tables"
            problems.append(StudyConfigProblem(f"{prefix}{key}", "missing", fix))
    return values


def _build(cls: type, values: dict[str, Any], prefix: str, problems: list,
           required: Sequence[str] = ()) -> Any:
    """``cls(**values)``, or None with its problems (prefixed) recorded."""
    if any(key not in values for key in required):
        return None  # _read has recorded why
    try:
        return cls(**values)
    except StudyConfigError as error:
        problems.extend(dataclasses.replace(p, field=prefix + p.field) for p in error.problems)
    return None


JOURNAL_SUFFIXES = (".log", ".journal")


def resolve_storage(storage: str | None, base: Path, stem: str) -> str:
    """SQLite and journal URLs and bare paths become absolute, relative to the study file's folder.

    A bare path is a SQLite file, or an Optuna journal file when it ends in
    ``.log`` or ``.journal`` (``journal:///path`` says so explicitly).
    """
    if storage is None:
        return f"sqlite:///{(base / f'{stem}.db').resolve()}"
    if "://" not in storage:
        scheme = "journal" if storage.endswith(JOURNAL_SUFFIXES) else "sqlite"
        return f"{scheme}:///{(base / Path(storage).expanduser()).resolve()}"
    for scheme in ("sqlite", "journal"):
        prefix = f"{scheme}:///"
        if storage.startswith(prefix) and not storage.startswith(prefix + "/"):
            relative = storage[len(prefix):]
            if relative and relative != ":memory:":
                return f"{prefix}{(base / relative).resolve()}"
    return storage


def _registered(kind: str, space: str | None) -> Collection[str] | None:
    """The names the registries hold for ``kind``; None for the presets of a space not registered."""
    from fusionnas.evaluators.data import list_datasets
    from fusionnas.evaluators.latency import list_devices
    from fusionnas.spaces import get_space, list_spaces

    if kind != "preset":
        return list({"space": list_spaces, "dataset": list_datasets, "device": list_devices}[kind]())
    try:
        return list(get_space(str(space)).presets())
    except ValueError:  # a space known to the caller but not registered
        return None


def _name_problems(names: list[tuple[str, str, str]], known: dict[str, Any],
                   space: str | None) -> list[StudyConfigProblem]:
    """Problems for each (field, kind, name) not among the known names of its kind.

    ``names`` lists the space first; presets are checked only against a valid space.
    """
    problems = []
    for field_, kind, name in names:
        choices = known[kind]
        if kind == "preset":
            if space is None:
                continue
            if isinstance(choices, Mapping):
                choices = choices.get(space, ())
        if choices is None:
            choices = _registered(kind, space)
        if choices is not None and name not in choices:
            problems.append(choice(field_, name, choices, kind))
            if kind == "space":
                space = None
    return problems


def parse_study_config(
    data: Mapping[str, Any], path: str | Path | None = None, *,
    known_spaces: Collection[str] | None = None,
    known_datasets: Collection[str] | None = None,
    known_devices: Collection[str] | None = None,
    known_presets: Collection[str] | Mapping[str, Collection[str]] | None = None,
) -> StudyConfig:
    """Validate a study mapping (parsed TOML) into a StudyConfig; raise StudyConfigError.

    ``known_*`` None looks the names up in the registries (``list_spaces``,
    ``get_space(space).presets()``, ``list_datasets``, ``list_devices``);
    ``known_presets`` may map space names to their presets.
    """
    path = Path(path) if path is not None else None
    problems: list[StudyConfigProblem] = []
    top = _read(data, "", "", problems, required=("space", "dataset", "objectives"))
    base = path.resolve().parent if path else Path.cwd()
    stem = path.stem if path else str(top.get("name") or "study")
    space, lists = _space_table(top.get("space"), problems)
    field_ = "space.name" if isinstance(top.get("space"), Mapping) else "space"
    names = [(field_, "space", space)] if space is not None else []  # (field, kind, name) to look up
    _load_plugins(top.get("plugins", []), base, problems)  # first: they add operators the rest may name
    dataset = _dataset(top, base, problems, names)
    sections = {key: _section(top, key, cls, problems, names)
                for key, cls in (("constraints", Constraints), ("budget", Budget), ("sampler", SamplerConfig))}
    objectives = _objectives(top, sections["budget"], problems, names)
    names += [(f"enqueue[{i}]", "preset", p) for i, p in enumerate(top.get("enqueue", []))]
    tables = _latency_tables(top.get("latency_tables", {}), base, names)
    known = {"space": known_spaces, "dataset": known_datasets, "device": known_devices, "preset": known_presets}
    problems += _name_problems(names, known, space)
    restriction = _restriction(space, lists, problems)
    config = _whole_study(dict(
        name=top.get("name", stem), storage=resolve_storage(top.get("storage"), base, stem),
        space=space or "?", space_restriction=restriction, dataset=dataset or DatasetConfig("?"),
        objectives=tuple(o for o in objectives if o is not None),
        constraints=sections["constraints"] or Constraints(), budget=sections["budget"] or Budget(),
        sampler=sections["sampler"] or SamplerConfig(), n_trials=top.get("n_trials"),
        timeout_s=top.get("timeout_s"), seed=top.get("seed", 0),
        enqueue=tuple(top.get("enqueue", ())), path=path.resolve() if path else None,
        latency_tables=tables, plugins=tuple(top.get("plugins", ())),
    ), problems)
    meant = {p.meant for p in problems if isinstance(p, _Misspelt)} - {""}
    problems = [p for p in problems if p.field not in meant]  # `step = 8`: not also "add steps"
    if config is not None and not problems:
        return config
    raise StudyConfigError(problems, path)


def _load_plugins(plugins: Sequence[str], base: Path, problems: list) -> None:
    """Import each plugin module; one that fails is a problem of its ``plugins[i]``."""
    for i, plugin in enumerate(plugins):
        try:
            load_plugins([plugin], base)
        except PluginError as error:
            problems.append(StudyConfigProblem(f"plugins[{i}]", error.problem,
                                               f"put {plugin}.py beside the study file, install it, or remove it"))


def _dataset(top: Mapping[str, Any], base: Path, problems: list, names: list) -> DatasetConfig | None:
    """The ``[dataset]`` table (its root resolved beside the study file), or None with its problems."""
    values = _read(top.get("dataset", {}), "dataset", "dataset.", problems)
    if "root" in values:
        values["root"] = str((base / Path(values["root"]).expanduser()).resolve())
    if "name" in values:
        names.append(("dataset.name", "dataset", values["name"]))
    dataset = _build(DatasetConfig, values, "dataset.", problems, ("name",))
    if "dataset" in top and "name" not in top["dataset"]:
        problems.append(StudyConfigProblem("dataset.name", "missing", 'add name = "cifar10"'))
    return dataset


def _section(top: Mapping[str, Any], key: str, cls: type, problems: list, names: list) -> Any:
    """The ``[constraints]``, ``[budget]`` or ``[sampler]`` table, or None with its problems."""
    values = _read(top.get(key, {}), key, f"{key}.", problems)
    if cls is SamplerConfig and 0 <= top.get("seed", 0) < 2**32:
        values.setdefault("seed", top.get("seed", 0))  # else the study reports the seed
    if "latency_device" in values:
        names.append(("constraints.latency_device", "device", values["latency_device"]))
    return _build(cls, values, f"{key}.", problems)


def _objectives(top: Mapping[str, Any], budget: Budget | None, problems: list,
                names: list) -> list[Objective | None]:
    """Each ``[[objectives]]`` table, None where it has problems; a zero_cost one defaults to the
    budget's proxy."""
    zero_cost_proxy = budget.zero_cost_proxy if budget else "synflow"
    objectives = []
    for i, table in enumerate(top.get("objectives", [])):
        prefix = f"objectives[{i}]."
        values = _read(table, "objectives", prefix, problems, required=("metric",))
        if values.get("metric") == "zero_cost":
            values.setdefault("proxy", zero_cost_proxy)
        if "device" in values:
            names.append((f"{prefix}device", "device", values["device"]))
        objectives.append(_build(Objective, values, prefix, problems, ("metric",)))
    return objectives


def _latency_tables(tables: Mapping[str, Any], base: Path, names: list) -> dict[str, Any]:
    """Device -> table file resolved beside the study file; a bad entry is left for StudyConfig."""
    for device in tables:
        names.append((f"latency_tables.{device}", "device", device))
    return {device: str((base / Path(table).expanduser()).resolve()) if isinstance(table, str) and table
            else table for device, table in tables.items()}


def _restriction(space: str | None, lists: dict[str, Any], problems: list) -> SpaceRestriction | None:
    """The ``[space]`` table's lists, checked once its space is sound."""
    if not lists or any(_root(p.field) == "space" for p in problems):
        return None
    options = {"network_defaults": lists.pop("network_defaults")} if "network_defaults" in lists else {}
    return _build(SpaceRestriction, {"name": space, "subsets": lists, **options}, "space.", problems)


def _whole_study(values: dict[str, Any], problems: list) -> StudyConfig | None:
    """The StudyConfig of ``values``. Its whole-study checks run even when a part failed (with a
    stand-in for it); only their problems about fields not already reported are kept."""
    late: list[StudyConfigProblem] = []
    config = _build(StudyConfig, values, "", late)
    reported = {_root(p.field) for p in problems}
    problems += [p for p in late if _root(p.field) not in reported]
    return config


def _space_table(value: Any, problems: list) -> tuple[str | None, dict[str, Any]]:
    """A study's ``space``: its name (None if missing), and the other keys of a ``[space]`` table."""
    if not isinstance(value, Mapping):
        return value, {}
    lists = {key: values for key, values in value.items() if key != "name"}
    name = value.get("name")
    if not isinstance(name, str):
        shown = "missing" if name is None else f"expected a string, got {type(name).__name__} {name!r}"
        problems.append(StudyConfigProblem("space.name", shown, 'write name = "mobilenetv2-cifar"'))
        return None, lists
    return name, lists


def _root(field_: str) -> str:
    """The top-level key of a field path: ``objectives[1].device`` -> ``objectives``."""
    return re.split(r"[.\[]", field_, maxsplit=1)[0]


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)$")


def load_study_config(path: str | Path, **known: Any) -> StudyConfig:
    """Read and validate a study file; ``known`` as in :func:`parse_study_config`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyConfigError([StudyConfigProblem(
            "", "no such study file", "check the path (studies/quickstart.toml is one)")], path
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise StudyConfigError([StudyConfigProblem(
            "", f"cannot read the study file ({error})", "pass a readable UTF-8 TOML file")], path
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = _TOML_POSITION.search(message)
        line = match.group(1) if match else str(text.count("\n") + 1)
        column = f", column {match.group(2)}" if match else ""
        reason = _TOML_POSITION.sub("", message).replace("(at end of document)", "").strip()
        raise StudyConfigError([StudyConfigProblem(
            f"line {line}{column}", f"TOML syntax error: {reason}",
            f"fix line {line} (strings need quotes, tables [brackets])")], path) from None
    return parse_study_config(data, path, **known)
