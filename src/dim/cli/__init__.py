"""The ``dim`` command: the root group, its global options, and the one place errors are caught.

Each command family lives in its own module (:mod:`layout`, :mod:`node`, :mod:`apply`,
:mod:`templates`, :mod:`image`, :mod:`boot`, :mod:`serve`, :mod:`power`, :mod:`lab`), named
in :data:`dim.commands.FAMILIES` and imported only when a command line names it
(:mod:`dim.cli.lazy`). ``dim --version`` and ``dim --help`` are answered before this module is
imported (:mod:`dim.__main__`, :mod:`dim.helptext`); ``dim FAMILY --help`` imports click and
that family. No command module imports this one. A command parses its arguments, calls one
function of :mod:`dim.actions` and prints the result (tables for people, ``--json`` for
scripts)::

    status = main(["--config", "cluster.xml", "node", "list", "--json"])

Errors are caught once, in :func:`main`: ``dim: error: …`` (and ``hint: …``) on stderr, exit
status 2 for bad input, 1 for a failed operation, 130 on Ctrl-C; a traceback only with
``--debug``.
"""

from __future__ import annotations

import gc
import os
import sys

import click

from dim import __version__
from dim.cli.lazy import LazyGroup
from dim.commands import (
    DEFAULT_CONFIG,
    DEFAULT_STATE,
    FAMILIES,
    HELP_OPTIONS,
    MAX_CONTENT_WIDTH,
    ROOT_HELP,
)
from dim.errors import DimError
from dim.printable import printable


@click.group(
    cls=LazyGroup,
    families=FAMILIES,
    help=ROOT_HELP,
    context_settings={
        "help_option_names": list(HELP_OPTIONS),
        "max_content_width": MAX_CONTENT_WIDTH,
    },
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="DIM_CONFIG",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The cluster layout (env: DIM_CONFIG).",
)
@click.option(
    "--state",
    type=click.Path(file_okay=False),
    envvar="DIM_STATE",
    default=DEFAULT_STATE,
    show_default=True,
    help="State folder: the DB, images and node replicas (env: DIM_STATE).",
)
@click.option(
    "--database",
    metavar="URL",
    envvar="DIM_DATABASE",
    help="The state DB: postgresql://USER:PASSWORD@HOST/DB for several servers "
    "(default: state.db in the state folder; env: DIM_DATABASE).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="dim")
@click.pass_context
def cli(ctx: click.Context, config: str, state: str, database: str | None, debug: bool) -> None:
    # the group's help is dim.commands.ROOT_HELP, which `dim --help` prints without click
    # here, not above: `dim --version` and `dim --help` need no Context, nor even pathlib
    from pathlib import Path

    from dim.cli.context import Context

    ctx.obj = Context(
        config=Path(config), state=Path(state), debug=debug, database=database or None
    )


def main(argv: list[str] | None = None) -> int:
    """Run dim; return the exit status (also used by the tests, in-process)."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # without standalone mode, click returns the code of ctx.exit(N) instead of exiting
        returned = cli.main(args=argv, prog_name="dim", standalone_mode=False)
    except DimError as exc:
        if debug:
            raise
        # one line each, whatever the message quotes (a node name with a newline, from a script)
        click.echo(f"dim: error: {printable(exc.message)}", err=True)
        if exc.hint:
            click.echo(f"hint: {printable(exc.hint)}", err=True)
        return exc.exit_status
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Abort:
        click.echo("dim: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("dim: interrupted", err=True)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return returned if isinstance(returned, int) else 0


def entry_point() -> None:
    status = main()
    # The process ends here. Python's exit would run the cycle collector over every object
    # still alive (the modules' functions, classes and constants: 38 million instructions
    # after a one-node dim apply, a tenth of it) to free what the exit gives back anyway;
    # frozen, they are left out of it. Finalizers still run as the modules are torn down.
    gc.freeze()
    sys.exit(status)
