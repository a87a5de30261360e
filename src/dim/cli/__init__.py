"""The ``dim`` command: the root group, its global options, and the one place errors are caught.

Each command family lives in its own module (:mod:`layout`, :mod:`node`, :mod:`apply`,
:mod:`templates`, :mod:`image`, :mod:`boot`, :mod:`serve`, :mod:`power`, :mod:`lab`), named
in :data:`FAMILIES` and imported only when a command line names it (:mod:`dim.cli.lazy`):
``dim --version`` and ``dim --help`` import click and nothing heavy. No command module
imports this one. A command parses its arguments, calls one function of :mod:`dim.actions` and
prints the result (tables for people, ``--json`` for scripts)::

    status = main(["--config", "cluster.xml", "node", "list", "--json"])

Errors are caught once, in :func:`main`: ``dim: error: …`` (and ``hint: …``) on stderr, exit
status 2 for bad input, 1 for a failed operation, 130 on Ctrl-C; a traceback only with
``--debug``.
"""

from __future__ import annotations

import os
import sys

import click

from dim import __version__
from dim.cli.lazy import Family, LazyGroup
from dim.errors import DimError

DEFAULT_CONFIG = "/etc/dim/cluster.xml"
DEFAULT_STATE = "/var/lib/dim"

# Each summary is the first line of the command's own help (tests/unit/test_cli_startup.py
# compares them): `dim --help` lists them without importing the families.
FAMILIES = {
    "apply": Family(
        "dim.cli.apply",
        "command",
        "Render DHCP, NFS, hosts and boot files; validate; install atomically; reload.",
    ),
    "boot": Family(
        "dim.cli.boot", "group", "Network-boot images: the kernel and initramfs of each image."
    ),
    "bootdev": Family(
        "dim.cli.power",
        "bootdev",
        "Set the boot device of NODESET: pxe (network) or disk, for the next boot or always.",
    ),
    "discover": Family(
        "dim.cli.power",
        "discover",
        "Read NODESET's MAC addresses from their BMCs (Redfish); show them; record with --save.",
    ),
    "image": Family(
        "dim.cli.image", "group", "Images: import, sync, change with exec, versions, rollback, gc."
    ),
    "lab": Family(
        "dim.cli.lab",
        "lab_group",
        "A virtual cluster on this machine: a namespace, real daemons, QEMU nodes that PXE-boot.",
    ),
    "layout": Family("dim.cli.layout", "group", "Check and show the cluster layout (cluster.xml)."),
    "node": Family(
        "dim.cli.node", "group", "Nodes: list them, record their MAC addresses, assign images."
    ),
    "power": Family(
        "dim.cli.power",
        "group",
        "Power status and control through the nodes' BMCs (IPMI, Redfish, SNMP).",
    ),
    "serve": Family(
        "dim.cli.serve",
        "command",
        "Serve iPXE boot scripts, kernels, initrds and http-root over HTTP until stopped.",
    ),
    "templates": Family(
        "dim.cli.templates",
        "group",
        "The Jinja2 templates dim renders; override one by copying it next to cluster.xml.",
    ),
}


@click.group(
    cls=LazyGroup,
    families=FAMILIES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
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
    """dim: distributed image management for diskless Linux clusters.

    Thousands of nodes declared in a few lines of cluster.xml; DHCP, NFS, hosts and boot-loader
    configuration rendered from it, validated by the real daemons and installed atomically.
    """
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
