"""Operators from outside the package: plugin modules named by a study file or an entry point.

A plugin is a module that registers operators when imported
(``@register_fusion``, ``@register_depthwise``). It reaches fusionnas in one
of two ways, the way pytest and flake8 find theirs:

* a study file's ``plugins = ["my_ops"]``: modules importable from the study
  file's folder or from ``sys.path``, imported when the file is read, so
  every command that reads the study (search, pareto, export) knows them;
* an installed package's ``fusionnas.operators`` entry point, loaded with
  :mod:`fusionnas.layers`.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from fusionnas.errors import UserError

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "load_plugins", "load_entry_point_plugins"]

ENTRY_POINT_GROUP = "fusionnas.operators"


class PluginError(UserError):
    """A plugin module could not be imported."""


def load_plugins(names: Sequence[str], folder: str | Path | None = None) -> None:
    """Import the plugin modules ``names``, looked up in ``folder`` first, then on ``sys.path``."""
    if folder is not None and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 (a plugin's own bug is reported in one line)
            first = (str(error).strip().splitlines() or [""])[0]
            where = f" (looked in {folder} and on sys.path)" if folder is not None else ""
            raise PluginError(f"plugin {name!r} failed to import: {type(error).__name__}: {first}{where}",
                              "fix it or remove it from the study file's plugins") from error


def load_entry_point_plugins() -> None:
    """Import every installed package's ``fusionnas.operators`` entry point."""
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as error:  # noqa: BLE001
            first = (str(error).strip().splitlines() or [""])[0]
            raise PluginError(f"plugin {point.value!r} (entry point {point.name!r} of {ENTRY_POINT_GROUP}) failed "
                              f"to import: {type(error).__name__}: {first}", "fix or uninstall it") from error
