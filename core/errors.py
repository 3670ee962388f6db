"""Errors that carry a message meant for the user.

A :class:`UserError` is how every layer says "your input was wrong, and here is why" in
one line. The CLI prints it on stderr and exits with code 2; the TUI shows it in place.
Anything else that escapes is a bug in tensorscope.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input, described in one line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep it one line: these are printed as-is, next to a prompt or on stderr.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


def syntax_error(path: str, exc: SyntaxError) -> UserError:
    """A script that does not compile, with its line number and text when Python knows
    them (not for a null byte)."""
    where = f" line {exc.lineno}" if exc.lineno else ""
    code = (exc.text or "").strip()
    return UserError(f"syntax error in {path}{where}: {exc.msg}" + (f": {code}" if code else ""))


def one_line(exc: BaseException) -> str:
    """Describe any exception in one line, as ``Type: first meaningful line``.

    PyTorch's messages often span many lines (C++ frames, hints); the first non-empty
    line carries the meaning.
    """
    text = str(exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    name = type(exc).__name__
    return f"{name}: {first}" if first else name
