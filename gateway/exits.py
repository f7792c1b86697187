"""Exit codes and the one-line error of the command line, shared by the
parser (``cli``) and the commands (``commands``) without either importing
the other. Standard library only: ``cli`` imports it at start."""

from __future__ import annotations

import sys

EX_OK = 0
EX_FAIL = 1  # not found, refused
EX_USAGE = 2  # bad arguments, bad configuration
EX_SOFTWARE = 70  # a bug
EX_TEMPFAIL = 75


class CommandError(Exception):
    """A command cannot go on; the message is shown as is."""

    def __init__(self, message: str, code: int = EX_FAIL) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def error(message: str) -> None:
    print(f"gateway: {one_line(message)}", file=sys.stderr)
