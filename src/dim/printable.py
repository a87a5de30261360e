"""Text shown on one line: control characters escaped, as Python writes them in a bytes literal.

An error or a log line quotes what it was given (a node name from a script, an HTTP request's
target); a newline, a tab or a terminal escape in it would break the line or the terminal.
A count is shown with its noun, singular for one (``counted(1, "node")`` is ``1 node``)::

    >>> printable("x01\\nb\\x1b[31m")
    'x01\\\\x0ab\\\\x1b[31m'
"""

from __future__ import annotations


def printable(text: object) -> str:
    """``text`` with each character that is not printable written ``\\xNN`` (``\\n`` is
    ``\\x0a``): one line, and nothing a terminal acts on."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(text))


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless there is one: ``1 node``, ``3 nodes``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
