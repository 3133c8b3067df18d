"""The errors a user sees, and how the command line reports them.

Every bad input is a :class:`ValueError` whose message names the field (or config key, or
file) and the value. The command line turns any :class:`UserError` or ``ValueError`` into one
line on stderr and exit status 2; the traceback appears only with ``dualgap --debug``.

:class:`UserError` is for failures that are not a bad value as such but still the user's to fix
(a missing file, a hub id that cannot be resolved offline, a damaged run directory). It
subclasses ``ValueError`` so that ``except ValueError`` keeps catching every user error.
"""

from __future__ import annotations


class UserError(ValueError):
    """A failure the user can fix; the message says what is wrong and, where known, why."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (newlines folded), with its type when it has no text."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
