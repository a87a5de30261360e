"""dim's command table: what ``dim --help`` lists, readable without importing click.

The root group (:mod:`dim.cli`) is built from this table, and ``dim --help`` is printed from it
before click is imported (:mod:`dim.helptext`; click alone costs more than the 0.1 s the issue
allows a help page). Each family is named by its module, the command's name there and its
one-line summary; the root options by the help records click makes of them::

    FAMILIES["node"].load()          # imports dim.cli.node, returns its click group
    ROOT_OPTIONS[0]                  # ("--config FILE", "The cluster layout …")

The summaries and records are copies of what click makes of the commands and options
themselves; tests/unit/test_cli_startup.py compares them, and the help page as a whole, so
that they cannot drift. This module imports nothing that costs: no click, no dataclasses, not
even typing.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing's own, without importing typing (6 ms)
if TYPE_CHECKING:
    import click

DEFAULT_CONFIG = "/etc/dim/cluster.xml"
DEFAULT_STATE = "/var/lib/dim"
HELP_OPTIONS = ("-h", "--help")
MAX_CONTENT_WIDTH = 100  # click wraps help to the terminal's width, at most this

# what click's group help prints above the options (its `help`, already dedented)
ROOT_HELP = """dim: distributed image management for diskless Linux clusters.

Thousands of nodes declared in a few lines of cluster.xml; DHCP, NFS, hosts and boot-loader
configuration rendered from it, validated by the real daemons and installed atomically."""

# click's help record of each root option, in the order click lists them
ROOT_OPTIONS = (
    ("--config FILE", f"The cluster layout (env: DIM_CONFIG).  [default: {DEFAULT_CONFIG}]"),
    (
        "--state DIRECTORY",
        "State folder: the DB, images and node replicas (env: DIM_STATE).  "
        f"[default: {DEFAULT_STATE}]",
    ),
    (
        "--database URL",
        "The state DB: postgresql://USER:PASSWORD@HOST/DB for several servers "
        "(default: state.db in the state folder; env: DIM_DATABASE).",
    ),
    ("--debug", "Show tracebacks."),
    ("--version", "Show the version and exit."),
    ("-h, --help", "Show this message and exit."),
)


class Family:
    """A top-level command: the module that defines it, its name there, its summary.

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, 15 ms of a help page.
    """

    __slots__ = ("module", "attribute", "summary")

    def __init__(self, module: str, attribute: str, summary: str) -> None:
        self.module = module
        self.attribute = attribute
        self.summary = summary

    def load(self) -> click.Command:
        return getattr(importlib.import_module(self.module), self.attribute)


# Each summary is the first line of the command's own help (tests/unit/test_cli_startup.py
# compares them): `dim --help` lists them without importing the families.
FAMILIES = {
    "api": Family(
        "dim.cli.api",
        "group",
        "Serve the REST API (/api/v1, OpenAPI at /api/v1/openapi.json) until stopped.",
    ),
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
