"""The one exception type for mistakes a user can fix."""
from __future__ import annotations

from collections.abc import Mapping

__all__ = ["UserError", "in_terms_of"]


class UserError(ValueError):
    """A bad argument, file, name or setting: the message says what is wrong and how to fix it.

    The command line prints it as one ``fusionnas: error: ...`` line and exits
    with 2; any other exception is a bug and shows its traceback. It is a
    ``ValueError`` so that library callers catching ``ValueError`` keep working.
    """


def in_terms_of(message: str, names: Mapping[str, str]) -> str:
    """``message`` with each backticked parameter name it mentions (```out```) replaced by
    what the caller calls it (``--out`` on the command line); other text is left alone.

    Library messages name parameters, not command-line flags; the CLI maps them.
    """
    for parameter, name in names.items():
        message = message.replace(f"`{parameter}`", name)
    return message
