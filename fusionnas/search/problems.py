"""Problems in a study file: each names its field, what is wrong and how to fix it, on one line."""
from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from fusionnas.errors import UserError

__all__ = ["StudyConfigProblem", "StudyConfigError", "raise_if", "choice", "positive", "study_key"]


@dataclass(frozen=True)
class StudyConfigProblem:
    """One problem in a study: the field (dotted path), what is wrong, how to fix it."""

    field: str
    problem: str
    fix: str

    def line(self, path: str | Path | None = None) -> str:
        """The one-line form ``<file>: <field>: <problem>; <fix>``."""
        parts = [str(p) for p in (path, self.field) if p]
        return ": ".join([*parts, f"{self.problem}; {self.fix}"])


class StudyConfigError(UserError):
    """A study file (or mapping) with problems; ``problems`` lists every one found."""

    def __init__(self, problems: Sequence[StudyConfigProblem], path: str | Path | None = None):
        self.problems = tuple(problems)
        self.path = path
        lines = [p.line(path) for p in self.problems]
        if len(lines) > 1:
            lines.insert(0, f"{path or 'study'}: {len(lines)} problems in the study")
        super().__init__("\n".join(lines))


def raise_if(problems: list[StudyConfigProblem]) -> None:
    """Raise StudyConfigError when ``problems`` is not empty."""
    if problems:
        raise StudyConfigError(problems)


def choice(field_: str, value: str, choices: Collection[str], what: str) -> StudyConfigProblem:
    """An 'unknown name' problem that suggests the closest valid name."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return StudyConfigProblem(
        field_, f"unknown {what} {value!r}", f"{hint}known: {', '.join(sorted(choices))}"
    )


def positive(problems: list, field_: str, value: float | None, fix: str, low: float = 0) -> None:
    """Record a problem unless ``value`` is None or above ``low``."""
    if value is not None and not value > low:
        problems.append(StudyConfigProblem(field_, f"must be > {low:g}, got {value!r}", fix))


def study_key(example: str, default: Any = MISSING, *, factory: Any = MISSING, doc: str = "",
              choices: Collection[str] = ()) -> Any:
    """A study-file key as a dataclass field; ``example`` is the value its fix messages suggest.

    The study-file reader takes each section's keys from the fields made here, their
    kinds from the type hints; ``factory`` makes a mutable default. ``doc`` (what the
    key means) and ``choices`` (its valid names) are what docs/study-file.md shows
    (:mod:`fusionnas.search.study_file_docs`).
    """
    metadata = {"example": example, "doc": doc, "choices": tuple(choices)}
    return field(default=default, default_factory=factory, metadata=metadata)
