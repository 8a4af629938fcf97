"""Every command's --help describes it and shows the default of every option that has one."""
from __future__ import annotations

import argparse

import pytest

from fusionnas.cli import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_top_level_help_describes_the_tool_and_lists_every_command() -> None:
    text = _flat(build_parser().format_help())
    assert "Command line: parse" not in text  # the module docstring is for readers of the code
    assert "architecture search" in text and "fusionnas COMMAND --help" in text
    assert all(name in text for name in _commands())


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_has_a_description_and_shows_its_defaults(name: str) -> None:
    parser = _commands()[name]
    text = _flat(parser.format_help())
    assert parser.description and _flat(parser.description) in text, f"{name} has no description"
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS:
            continue
        flag = action.option_strings[-1]
        assert action.help, f"{name} {flag} has a default ({action.default!r}) but no help"
        shown = _flat(formatter._expand_help(action))
        assert f"(default: {action.default})" in shown and shown in text, f"{name} {flag}: {shown!r}"
