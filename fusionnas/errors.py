"""The one exception type for mistakes a user can fix."""
from __future__ import annotations

from collections.abc import Mapping

__all__ = ["UserError", "in_terms_of"]


class UserError(ValueError):
    """A bad argument, file, name or setting: the message says what is wrong and how to fix it.

    The command line prints it as one ``fusionnas: error: ...`` line and exits
    with 2; any other exception is a bug and shows its traceback. It is a
    ``ValueError`` so that library callers catching ``ValueError`` keep working.

    Args:
        problem: what is wrong (the whole message when ``fix`` is empty).
        fix: how to mend it; the message is ``<problem>; <fix>``. Kept apart so that
            a caller reporting the error in its own terms (a study file's field) need
            not split the message.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}; {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix


def in_terms_of(message: str, names: Mapping[str, str]) -> str:
    """``message`` with each backticked parameter name it mentions (```out```) replaced by
    what the caller calls it (``--out`` on the command line); other text is left alone.

    Library messages name parameters, not command-line flags; the CLI maps them.
    """
    for parameter, name in names.items():
        message = message.replace(f"`{parameter}`", name)
    return message
