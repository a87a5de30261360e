"""The ``dim`` command: the root group, its global options, and the one place errors are caught.

Each command family lives in its own module (:mod:`layout`, :mod:`node`, :mod:`apply`,
:mod:`templates`, :mod:`image`, :mod:`boot`, :mod:`serve`, :mod:`power`, :mod:`lab`) and is
added to the root here; no command module imports this one. A command parses its arguments,
calls one function of :mod:`dim.actions` and prints the result (tables for people, ``--json``
for scripts)::

    status = main(["--config", "cluster.xml", "node", "list", "--json"])

Errors are caught once, in :func:`main`: ``dim: error: …`` (and ``hint: …``) on stderr, exit
status 2 for bad input, 1 for a failed operation, 130 on Ctrl-C; a traceback only with
``--debug``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from dim import __version__
from dim.actions.context import Context
from dim.cli import apply, boot, image, lab, layout, node, power, serve, templates
from dim.errors import DimError

DEFAULT_CONFIG = "/etc/dim/cluster.xml"
DEFAULT_STATE = "/var/lib/dim"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DIM_CONFIG",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The cluster layout (env: DIM_CONFIG).",
)
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
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
def cli(ctx: click.Context, config: Path, state: Path, database: str | None, debug: bool) -> None:
    """dim: distributed image management for diskless Linux clusters.

    Thousands of nodes declared in a few lines of cluster.xml; DHCP, NFS, hosts and boot-loader
    configuration rendered from it, validated by the real daemons and installed atomically.
    """
    ctx.obj = Context(config=config, state=state, debug=debug, database=database or None)


cli.add_command(layout.group)
cli.add_command(node.group)
cli.add_command(apply.command)
cli.add_command(templates.group)
cli.add_command(image.group)
cli.add_command(boot.group)
cli.add_command(serve.command)
cli.add_command(power.group)
cli.add_command(power.bootdev)
cli.add_command(power.discover)
cli.add_command(lab.lab_group)


def main(argv: list[str] | None = None) -> int:
    """Run dim; return the exit status (also used by the tests, in-process)."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # without standalone mode, click returns the code of ctx.exit(N) instead of exiting
        returned = cli.main(args=argv, prog_name="dim", standalone_mode=False)
    except DimError as exc:
        if debug:
            raise
        click.echo(f"dim: error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
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
    sys.exit(main())
