"""How commands show things: JSON for scripts, aligned tables and short lines for people.

::

    emit_json({"changes": []})                        # indented, keys in their order
    table([["c01", "on"]], ["NODE", "STATE"])         # columns as wide as their widest cell
    human(1_500_000)                                  # '1.5 MB'
    progress("reading /srv/tree")                     # '  … reading /srv/tree' on a tty
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from dim.quick import json_text, table_lines

if TYPE_CHECKING:  # a type only: listing nodes must not import the image modules
    from dim.images.delta import Delta


def emit_json(data: object) -> None:
    click.echo(json_text(data))


def table(rows: list[list[str]], headers: list[str]) -> None:
    for line in table_lines(rows, headers):
        click.echo(line)


def human(size: int) -> str:
    """A byte count for people, in powers of 1000: ``'512 B'``, ``'1.5 MB'``."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def progress(message: str) -> None:
    """A line of progress on stderr, when a person watches it (a terminal) only."""
    if sys.stderr.isatty():
        click.echo(f"  … {message}", err=True)


def node_counter(total: int) -> Callable[[int, int], None] | None:
    """A ``done/of nodes`` counter on stderr, for runs long enough to need one, on a tty."""
    if total < 50 or not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(done: int, of: int) -> None:
        now = time.monotonic()
        # at most five redraws a second: thousands of nodes must not flood the terminal
        if done == of or now - last[0] >= 0.2:
            last[0] = now
            click.echo(f"\r  … {done}/{of} nodes", err=True, nl=False)
            if done == of:
                click.echo("", err=True)

    return show


def delta(changes: Delta, as_json: bool) -> None:
    """Paths added (+), changed (~) and removed (-), one a line; or three JSON lists."""
    if as_json:
        emit_json(changes.record())
        return
    for sign, paths in (("+", changes.added), ("~", changes.changed), ("-", changes.removed)):
        for path in paths:
            click.echo(f"{sign} /{path}")
