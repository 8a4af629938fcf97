"""The one exception type for mistakes a user can fix."""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """A bad argument, file, name or setting: the message says what is wrong and how to fix it.

    The command line prints it as one ``fusionnas: error: ...`` line and exits
    with 2; any other exception is a bug and shows its traceback. It is a
    ``ValueError`` so that library callers catching ``ValueError`` keep working.
    """
