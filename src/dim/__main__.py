"""``python -m dim`` and the ``dim`` console script.

``dim --version``, ``dim --help`` (``-h``) and ``dim`` alone are answered here, before click is
imported: click is most of a 0.1 s start. What they print is what click prints (the help page
from :mod:`dim.helptext`; tests/unit/test_cli_startup.py compares them); every other command
line goes to :func:`dim.quick.run` (``layout check`` and ``node list``, without click too) and
then, if it is not one of theirs, to :func:`dim.cli.main`.
"""

from __future__ import annotations

import os
import sys

from dim import __version__
from dim.commands import HELP_OPTIONS

TYPE_CHECKING = False  # typing's own, without importing typing
if TYPE_CHECKING:
    from typing import TextIO


def entry_point() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:
        _print(f"dim, version {__version__}", sys.stdout)
        sys.exit(0)
    # "_DIM_COMPLETE" asks click for shell completion, which only click can answer
    if (argv == [] or (len(argv) == 1 and argv[0] in HELP_OPTIONS)) and (
        "_DIM_COMPLETE" not in os.environ
    ):
        from dim.helptext import root_help

        # as click: the page asked for on stdout; `dim` alone is a usage error, page on stderr
        _print(root_help(), sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    # `layout check` and `node list`, typed all day, need no click either (dim.quick)
    from dim.quick import CLICK, run

    status = run(argv)
    if status is not CLICK:
        # Its output flushed and its files closed, the process ends here, without tearing the
        # interpreter down: that teardown touches every object (the 10,000 of a 2,576-node
        # layout), and after a cold command has forked the child that writes the layout
        # cache, each page it touches is copied first.
        os._exit(status)
    from dim.cli import entry_point

    entry_point()


def _print(text: str, stream: TextIO) -> None:
    """``print``, but a reader gone (``dim --help | head -1``) ends quietly, as dim.cli.main."""
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        sys.exit(1)


if __name__ == "__main__":
    entry_point()
