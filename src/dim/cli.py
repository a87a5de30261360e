"""The ``dim`` command: parse, call the domain, print (tables for people, ``--json`` for scripts).

Errors are caught once, in :func:`main`: ``dim: error: …`` on stderr, exit status 2 for bad
input, 1 for a failed operation, 130 on Ctrl-C; a traceback only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dim import __version__
from dim.errors import ApplyError, DimError, UsageError
from dim.inventory import fold, node_record, select, server_name, summary
from dim.layout import parser as layout
from dim.layout.model import Cluster, Inventory
from dim.records import Boot, StaleLease, read_last_boots, read_observed, read_stale_leases
from dim.services import apply as applier
from dim.services import leases
from dim.services.render import RenderContext, render_all

if TYPE_CHECKING:
    from dim.state import StateDB

DEFAULT_CONFIG = "/etc/dim/cluster.xml"
DEFAULT_STATE = "/var/lib/dim"


@dataclass(slots=True)
class Settings:
    """What every command needs, loaded once and passed down."""

    config: Path
    state: Path
    debug: bool = False

    def cluster(self) -> Cluster:
        return layout.load(self.config)

    def db(self, *, create: bool = True) -> StateDB:
        from dim.state import StateDB  # SQLAlchemy: only for commands that write

        return StateDB.open(self.state, create=create)

    def existing_db(self) -> StateDB | None:
        """The state DB if there is one; reading commands need not create it."""
        return self.db(create=False) if self._has_db() else None

    def inventory(self) -> Inventory:
        observed = read_observed(self.state)
        return Inventory(self.cluster(), observed.macs, observed.images)

    def last_boots(self) -> dict[str, Boot]:
        """Each node's last network boot, as ``dim serve`` recorded it (none without a DB)."""
        return read_last_boots(self.state)

    def _has_db(self) -> bool:
        return (self.state / "state.db").exists()

    @property
    def template_dir(self) -> Path:
        return self.config.parent / "templates"


pass_settings = click.make_pass_decorator(Settings)


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


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
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="dim")
@click.pass_context
def cli(ctx: click.Context, config: Path, state: Path, debug: bool) -> None:
    """dim: distributed image management for diskless Linux clusters.

    Thousands of nodes declared in a few lines of cluster.xml; DHCP, NFS, hosts and boot-loader
    configuration rendered from it, validated by the real daemons and installed atomically.
    """
    ctx.obj = Settings(config=config, state=state, debug=debug)


# -- layout ------------------------------------------------------------------------------------


@cli.group("layout")
def layout_group() -> None:
    """Check and show the cluster layout (cluster.xml)."""


@layout_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def layout_check(settings: Settings, as_json: bool) -> None:
    """Validate cluster.xml against its schema and checks; summarise it.

    Exit status 2 and a one-line error naming file, line and value if anything is wrong.
    """
    report = summary(settings.inventory())
    if as_json:
        emit_json(report)
        return
    click.echo(f"{report['source']}: cluster {report['cluster']} is valid")
    click.echo(f"  nodes     {report['nodes']}")
    for name, count in report["groups"].items():
        click.echo(f"  group     {name}: {count} nodes")
    for name, subnet in report["networks"].items():
        click.echo(f"  network   {name}: {subnet}")
    for name, server in report["servers"].items():
        click.echo(
            f"  server    {name}: {server['address']} dhcp={server['dhcp']} nfs={server['nfs']}"
        )
    for name, count in report["images"].items():
        click.echo(f"  image     {name}: {count} nodes")
    if report["nodes_without_mac"]:
        click.echo(f"  warning: no MAC recorded for {report['nodes_without_mac']}")
    if report["macs_of_unknown_nodes"]:
        click.echo(
            f"  warning: MACs recorded for nodes not in the layout: "
            f"{report['macs_of_unknown_nodes']}"
        )


@layout_group.command("show")
@click.argument("nodeset")
@click.option("-x", "--exclude", metavar="NODESET", help="Leave these nodes out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def layout_show(settings: Settings, nodeset: str, exclude: str | None, as_json: bool) -> None:
    """Show everything declared and observed for NODESET."""
    inventory = settings.inventory()
    boots = settings.last_boots()
    records = [
        node_record(inventory, n, boots.get(n.name))
        for n in select(inventory.cluster, nodeset, exclude)
    ]
    if as_json:
        emit_json(records)
        return
    for record in records:
        click.echo(
            f"{record['name']}  (group {record['group']}, server {record['server']}, "
            f"image {record['image'] or '-'})"
        )
        for iface in record["interfaces"]:
            click.echo(
                f"  {iface['network']:<8} {iface['ip']:<15} {iface['hostname']:<20} "
                f"{iface['mac'] or '-'}"
            )
        if record["bmc"]:
            bmc = record["bmc"]
            click.echo(
                f"  bmc      {bmc['address']:<15} {bmc['driver']}"
                f" (credentials {bmc['credentials'] or '-'})"
            )


# -- nodes -------------------------------------------------------------------------------------


@cli.group("node")
def node_group() -> None:
    """Nodes: list them, record their MAC addresses, assign images."""


@node_group.command("list")
@click.argument("nodeset", required=False)
@click.option("-x", "--exclude", metavar="NODESET", help="Leave these nodes out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def node_list(settings: Settings, nodeset: str | None, exclude: str | None, as_json: bool) -> None:
    """List nodes (all, or NODESET): group, addresses, MACs, image, server, BMC, last boot.

    LAST BOOT is the local time at which the node last fetched its boot script from
    `dim serve`; `--json` adds the image, boot build version and client address.
    """
    inventory = settings.inventory()
    boots = settings.last_boots()
    records = [
        node_record(inventory, n, boots.get(n.name))
        for n in select(inventory.cluster, nodeset, exclude)
    ]
    if as_json:
        emit_json(records)
        return
    rows = []
    for r in records:
        ips = ",".join(i["ip"] for i in r["interfaces"])
        macs = ",".join(i["mac"] or "-" for i in r["interfaces"])
        bmc = r["bmc"]["address"] if r["bmc"] else "-"
        boot = r["last_boot"]["at"][:19].replace("T", " ") if r["last_boot"] else "-"
        rows.append([r["name"], r["group"], ips, macs, r["image"] or "-", r["server"], bmc, boot])
    table(rows, ["NODE", "GROUP", "IP", "MAC", "IMAGE", "SERVER", "BMC", "LAST BOOT"])


@node_group.command("set")
@click.argument("nodeset")
@click.option("--mac", help="MAC address of the node's interface (one node only).")
@click.option("--network", help="Network of that interface (default: the boot interface's).")
@click.option("--image", help="Assign this image to every node of NODESET.")
@pass_settings
def node_set(
    settings: Settings, nodeset: str, mac: str | None, network: str | None, image: str | None
) -> None:
    """Record a node's MAC address, or assign an image to nodes.

    \b
    dim node set node01 --mac 52:54:00:00:00:01
    dim node set @blades --image sles15
    """
    if mac is None and image is None:
        raise UsageError("nothing to set: give --mac and/or --image")
    cluster = settings.cluster()
    nodes = select(cluster, nodeset)
    db = settings.db()
    if mac is not None:
        if len(nodes) != 1:
            raise UsageError(f"--mac names one node, and {nodeset!r} names {len(nodes)}")
        node = nodes[0]
        net = network or node.boot.network
        try:
            from dim.state import normalize_mac

            value = normalize_mac(mac)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        changed = db.set_macs(cluster, {(node.name, net): value})
        click.echo(f"{node.name} ({net}): MAC {value}" + ("" if changed else " (unchanged)"))
    if image is not None:
        changed = db.set_images(cluster, [n.name for n in nodes], image)
        click.echo(f"{fold([n.name for n in nodes])}: image {image} ({changed} changed)")


@node_group.command("import-macs")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and say what would change.")
@pass_settings
def node_import_macs(settings: Settings, csv_file: Path, dry_run: bool) -> None:
    """Record MAC addresses from CSV_FILE: lines of node,mac[,network].

    The whole file is checked first (unknown nodes, malformed or duplicate MACs); on any error
    nothing is recorded.
    """
    cluster = settings.cluster()
    from dim.state import parse_mac_csv

    changes = parse_mac_csv(csv_file.read_text(), str(csv_file), cluster)
    if dry_run:
        current = settings.inventory().macs
        changed = sum(1 for k, v in changes.items() if current.get(k) != v)
        click.echo(f"{csv_file}: {len(changes)} MACs, {changed} would change (dry run)")
        return
    changed = settings.db().set_macs(cluster, changes, source=f"import {csv_file.name}")
    click.echo(f"{csv_file}: {len(changes)} MACs, {changed} changed")


# -- apply -------------------------------------------------------------------------------------


@cli.command("apply")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Install under this folder instead of / (staging, tests).",
)
@click.option("--server", help="Image server to configure (default: the only one).")
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; write nothing.")
@click.option("--diff", "show_diff", is_flag=True, help="Show a unified diff of each change.")
@click.option(
    "--reload/--no-reload",
    "do_reload",
    default=None,
    help="Run the services' reload commands (default: only when --root is /).",
)
@click.option(
    "--skip-validation",
    is_flag=True,
    help="Install even when a daemon's test mode is not available.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def apply_command(
    settings: Settings,
    root: Path,
    server: str | None,
    dry_run: bool,
    show_diff: bool,
    do_reload: bool | None,
    skip_validation: bool,
    as_json: bool,
) -> None:
    """Render DHCP, NFS, hosts and boot files; validate; install atomically; reload.

    Files that would not change are not touched. A daemon that refuses its new configuration
    stops everything before any file is written. After a reload, the DHCP leases that replaced
    MACs still hold are released, so that the new MACs get their nodes' addresses.
    """
    inventory = settings.inventory()
    name = server_name(inventory.cluster, server)
    context = RenderContext(inventory, name, settings.state, settings.template_dir)
    from dim.images.operations import ensure_replicas
    from dim.images.store import Store

    created = ensure_replicas(Store(settings.state), inventory, name, dry_run=dry_run)
    files = render_all(context)
    srv = inventory.cluster.servers[name]
    do_reload = (root.resolve() == Path("/")) if do_reload is None else do_reload
    result = applier.apply(
        files,
        root,
        reload_command=srv.reload_command,
        dry_run=dry_run,
        do_reload=do_reload,
        validation=not skip_validation,
    )
    stale = read_stale_leases(settings.state)
    released: list[leases.ReleaseResult] = []
    waiting: list[StaleLease] = []
    if stale and do_reload and not dry_run:
        # the state DB is opened for writing only to forget the leases released
        released = leases.settle(settings.db(create=False), srv, inventory.cluster)
    elif stale:
        waiting = leases.pending(stale, srv, inventory.cluster)
    if as_json:
        emit_json(
            {
                "server": name,
                "root": str(root),
                "dry_run": dry_run,
                "changes": [
                    {"path": c.path, "action": c.action, "service": c.service}
                    for c in result.changes
                ],
                "unchanged": result.unchanged,
                "validated": result.validated,
                "not_validated": result.not_validated,
                "reloaded": result.reloaded,
                "replicas_created": fold(created),
                **_release_records(released, waiting),
            }
        )
        _fail_unreleased(released)
        return
    for change in result.changes[:50] if not show_diff else result.changes:
        click.echo(f"  {change.action:<7} {change.path}")
        if show_diff:
            click.echo(applier.diff(change), nl=False)
    if len(result.changes) > 50 and not show_diff:
        click.echo(f"  … and {len(result.changes) - 50} more")
    counts = result.counts()
    verb = "would change" if dry_run else "changed"
    click.echo(
        f"{name}: {len(result.changes)} files {verb} ({counts['create']} created, "
        f"{counts['update']} updated, {counts['remove']} removed), {result.unchanged} unchanged"
        + (f"; validated: {', '.join(result.validated)}" if result.validated else "")
        + (f"; reloaded: {', '.join(result.reloaded)}" if result.reloaded else "")
    )
    if result.not_validated:
        click.echo(f"warning: not validated: {', '.join(result.not_validated)}", err=True)
    if created:
        click.echo(f"{'would create' if dry_run else 'created'} replicas for {fold(created)}")
    _print_releases(released, waiting, dry_run)
    _fail_unreleased(released)


_RELEASE_KEYS = {
    leases.RELEASED: "released",
    leases.NOT_NEEDED: "release_not_needed",
    leases.FAILED: "release_failed",
}


def _release_records(
    results: list[leases.ReleaseResult], waiting: list[StaleLease]
) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {key: [] for key in _RELEASE_KEYS.values()}
    for r in results:
        record = {"node": r.lease.node, "network": r.lease.network, "mac": r.lease.mac, "ip": r.ip}
        if r.message:
            record["reason" if r.ok else "error"] = r.message
        records[_RELEASE_KEYS[r.outcome]].append(record)
    records["release_pending"] = [
        {"node": s.node, "network": s.network, "mac": s.mac} for s in waiting
    ]
    return records


def _print_releases(
    released: list[leases.ReleaseResult], waiting: list[StaleLease], dry_run: bool
) -> None:
    groups: dict[tuple[str, str], list[str]] = {}
    for r in released:
        if r.outcome == leases.FAILED:
            click.echo(
                f"warning: the stale lease of {r.lease.node} ({r.lease.mac} on {r.ip}) "
                f"was not released: {r.message}",
                err=True,
            )
        else:
            groups.setdefault((r.outcome, r.message), []).append(r.lease.node)
    for (outcome, message), nodes in groups.items():
        reason = f" ({message})" if message else ""
        what = (
            "released stale leases"
            if outcome == leases.RELEASED
            else "stale leases need no release"
        )
        click.echo(f"{what}: {fold(sorted(set(nodes)))}{reason}")
    if waiting:
        nodes = fold(sorted({lease.node for lease in waiting}))
        if dry_run:
            click.echo(f"would release stale leases: {nodes}")
        else:
            click.echo(f"stale leases pending: {nodes} (released by the next apply that reloads)")


def _fail_unreleased(released: list[leases.ReleaseResult]) -> None:
    failed = sum(1 for r in released if not r.ok)
    if failed:
        raise ApplyError(
            f"{failed} stale DHCP lease{'s' if failed > 1 else ''} not released",
            hint="they stay recorded: the next dim apply that reloads tries again",
        )


# -- templates ---------------------------------------------------------------------------------


@cli.group("templates")
def templates_group() -> None:
    """The Jinja2 templates dim renders; override one by copying it next to cluster.xml."""


@templates_group.command("list")
@pass_settings
def templates_list(settings: Settings) -> None:
    """List the templates, marking those overridden in the templates folder."""
    from importlib import resources

    for entry in sorted(
        resources.files("dim").joinpath("templates").iterdir(), key=lambda e: e.name
    ):
        overridden = (settings.template_dir / entry.name).exists()
        click.echo(f"{entry.name}{'  (overridden)' if overridden else ''}")


@templates_group.command("copy")
@click.argument("name")
@pass_settings
def templates_copy(settings: Settings, name: str) -> None:
    """Copy template NAME into the templates folder next to cluster.xml, for editing."""
    from importlib import resources

    source = resources.files("dim").joinpath("templates").joinpath(name)
    if "/" in name or not source.is_file():
        raise UsageError(f"unknown template {name!r}", hint="`dim templates list` names them")
    destination = settings.template_dir / name
    if destination.exists():
        raise UsageError(f"{destination} exists already; edit it there")
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(source.read_bytes())
    click.echo(f"{destination}: copied; dim apply uses it from now on")


# -- entry point -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run dim; return the exit status (also used by the tests, in-process)."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="dim", standalone_mode=False)
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
    return 0


def entry_point() -> None:
    sys.exit(main())


# Commands of other areas register themselves on the groups above.
from dim import cli_images, cli_lab  # noqa: E402, F401, I001
from dim import cli_serve  # noqa: E402, F401, I001
from dim import cli_boot  # noqa: E402, F401, I001
from dim import cli_power  # noqa: E402, F401, I001
