"""Bad input, told in one line: the error type every command raises for it and the one exit path.

Every problem a user can fix (a missing or broken file, a wrong value, a foreign checkpoint) is
a :class:`UserError` whose message names the file or config key, what was wrong and the fix.
:func:`exit_on_user_error` wraps each command's body and prints that message as one line on
stderr with exit status 2; ``HYDRA_FULL_ERROR=1`` shows the full trace instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

# torch's DataLoader re-raises a worker's exception as the same type, with the worker's whole
# traceback folded into the message under this line; the user's message is the last line of it.
_WORKER_TRACE = "Original Traceback"


class UserError(ValueError):
    """Input the user can fix; the message names the file or key and says how."""


class ConfigError(UserError):
    """A config value (a command-line override or a preset's field) that cannot work."""


def one_line(err: BaseException) -> str:
    """The error's message as one line, also when it was raised inside a DataLoader worker."""
    message = str(err).strip()
    if _WORKER_TRACE in message:
        last = message.splitlines()[-1]
        # the last line reads "<module>.<Type>: <message>"
        head, sep, rest = last.partition(f"{type(err).__name__}: ")
        message = rest if sep and " " not in head.strip() else last
    return " ".join(message.split())


def full_trace_wanted() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


@contextlib.contextmanager
def exit_on_user_error(hint=None) -> Iterator[None]:
    """Print bad input as one line and exit with status 2.

    Bad input is a :class:`UserError` or another ValueError naming the key (the constructors
    check their arguments that way), or a FileExistsError (nothing is overwritten).

    ``hint`` is called with the error and may return a sentence to add, such as where a stopped
    training run's last checkpoint is.
    """
    try:
        yield
    except (ValueError, FileExistsError) as err:
        if full_trace_wanted():
            raise
        extra = hint(err) if hint is not None else None
        print(f"error: {one_line(err)}" + (f"; {extra}" if extra else ""), file=sys.stderr)
        sys.exit(2)
