"""``dim node …``: list nodes, record MACs, assign, switch and reset images, diff replicas.

::

    dim node set node01 --mac 52:54:00:00:00:01
    dim node import-macs macs.csv --dry-run
    dim node switch @rack1 rhel9
"""

from __future__ import annotations

from pathlib import Path

import click

from dim.actions import nodes
from dim.cli.context import Context, pass_context, root_option
from dim.cli.output import delta, emit_json, progress, table
from dim.errors import UsageError
from dim.inventory import fold
from dim.quick import list_lines


@click.group("node")
def group() -> None:
    """Nodes: list them, record their MAC addresses, assign images."""


@group.command("list")
@click.argument("nodeset", required=False)
@click.option("-x", "--exclude", metavar="NODESET", help="Leave these nodes out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def node_list(ctx: Context, nodeset: str | None, exclude: str | None, as_json: bool) -> None:
    """List nodes (all, or NODESET): group, addresses, MACs, image, server, BMC, last boot.

    IMAGE is the image the node boots next; BOOTED the image and boot build version it last
    booted (IMAGE/VERSION), and LAST BOOT when: the local time at which it last fetched its
    boot script from `dim serve`. A node switched and not yet reset shows its new image under
    IMAGE and its old one under BOOTED. `--json` adds the client address of the last boot.
    """
    records = nodes.records(ctx, nodeset, exclude)
    if as_json:
        emit_json(records)
        return
    for line in list_lines(records):  # what `dim node list` prints without click too
        click.echo(line)


@group.command("status")
@click.argument("nodeset", required=False)
@click.option("-x", "--exclude", metavar="NODESET", help="Leave these nodes out.")
@click.option("--power", is_flag=True, help="Also ask every node's BMC for its power state.")
@click.option(
    "--nfs-pid-file",
    "pid_files",
    multiple=True,
    metavar="FILE",
    help="Pid file of an NFS server on this machine whose sessions to read, repeatable; "
    "'self' for this machine's own (kernel nfsd); 'none' to read only those the image "
    "servers recorded. Default: $DIM_NFS_PID_FILES (colon-separated), else "
    "/run/ganesha/ganesha.pid.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def node_status(
    ctx: Context,
    nodeset: str | None,
    exclude: str | None,
    power: bool,
    pid_files: tuple[str, ...],
    as_json: bool,
) -> None:
    """The state of each node (all, or NODESET): up, booting, down, off or unknown.

    \b
    up       it holds an NFS session with an image server now
    booting  no session yet, boot script fetched in the last 5 minutes
    down     no session; it booted from dim before
    off      its BMC says so (--power)
    unknown  no NFS server's sessions readable, or never seen booting

    A session is a connection to an NFS server's port 2049 that the node sent something on
    in the last 45 s (a running node renews its NFS lease every few seconds): no agent on the
    nodes. Each image server's `dim serve` records those it holds in the state DB every 5 s
    (SESSION names that server); the NFS servers of this machine are read with ss as well
    (`--nfs-pid-file none`: not). CONFLICTS
    counts the paths its replica kept against the image's changes (--json lists them). Nodes
    alike are folded into one line.
    """
    from dim.actions import status
    from dim.services import sessions

    files = list(pid_files) or sessions.pid_files_from_env() or list(sessions.DEFAULT_PID_FILES)
    found = status.live_sessions(ctx, files)
    states = status.power_states(ctx, nodeset, exclude) if power else None
    report = status.statuses(ctx, nodeset, exclude, sessions=found, power=states)
    if as_json:
        emit_json(report.record())
        return
    if not report.sessions_known:
        click.echo(
            f"dim: no NFS server's sessions readable ({', '.join(files)}) or recorded by an "
            f"image server's dim serve in the last {sessions.FRESH:.0f} s",
            err=True,
        )
    rows: dict[tuple, list[str]] = {}
    for n in report.nodes:
        booted = f"{n.booted['image']}" if n.booted else "-"
        key = (
            n.state,
            n.image,
            booted,
            "-" if n.live_version is None else str(n.live_version),
            _session(n.session, n.session_server),
            n.power or ("?" if n.power_error else "-"),
            str(len(n.conflicts)) if n.conflicts else "-",
        )
        rows.setdefault(key, []).append(n.name)
    table(
        [[fold(names), *key] for key, names in rows.items()],
        ["NODES", "STATE", "IMAGE", "BOOTED", "LIVE", "SESSION", "POWER", "CONFLICTS"],
    )
    counts = ", ".join(f"{count} {state}" for state, count in report.counts.items() if count)
    click.echo(counts or "no node")


def _session(address: str | None, server: str | None) -> str:
    if address is None:
        return "-"
    return f"{address} ({server})" if server else address


@group.command("set")
@click.argument("nodeset")
@click.option("--mac", help="MAC address of the node's interface (one node only).")
@click.option("--network", help="Network of that interface (default: the boot interface's).")
@click.option("--image", help="Assign this image to every node of NODESET.")
@pass_context
def node_set(
    ctx: Context, nodeset: str, mac: str | None, network: str | None, image: str | None
) -> None:
    """Record a node's MAC address, or assign an image to nodes.

    \b
    dim node set node01 --mac 52:54:00:00:00:01
    dim node set @blades --image sles15
    """
    if mac is None and image is None:
        raise UsageError("nothing to set: give --mac and/or --image")
    if mac is not None:
        m = nodes.set_mac(ctx, nodeset, mac, network)
        click.echo(f"{m.node} ({m.network}): MAC {m.mac}" + ("" if m.changed else " (unchanged)"))
    if image is not None:
        a = nodes.set_image(ctx, nodeset, image)
        click.echo(f"{fold(list(a.nodes))}: image {a.image} ({a.changed} changed)")


@group.command("import-macs")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and say what would change.")
@pass_context
def node_import_macs(ctx: Context, csv_file: Path, dry_run: bool) -> None:
    """Record MAC addresses from CSV_FILE: lines of node,mac[,network].

    The whole file is checked first (unknown nodes, malformed or duplicate MACs); on any error
    nothing is recorded.
    """
    r = nodes.import_macs(ctx, csv_file, dry_run=dry_run)
    if dry_run:
        click.echo(f"{r.source}: {r.macs} MACs, {r.changed} would change (dry run)")
    else:
        click.echo(f"{r.source}: {r.macs} MACs, {r.changed} changed")


@group.command("switch")
@click.argument("nodeset")
@click.argument("image_name", metavar="IMAGE")
@click.option(
    "--reset", is_flag=True, help="Then hard-reset the nodes through their BMCs (dim power reset)."
)
@click.option("-y", "--yes", is_flag=True, help="With --reset: do not ask for confirmation.")
@root_option("Where dim apply installed the nodes' loader files")
@pass_context
def node_switch(
    ctx: Context, nodeset: str, image_name: str, reset: bool, yes: bool, root: Path
) -> None:
    """Assign IMAGE to NODESET, in one transaction: each node gets its replica of IMAGE (its
    old one if it had one), and its own PXELINUX and GRUB file under --root points at IMAGE.
    Running nodes keep their image until reset; then they boot IMAGE, nothing else needed:
    the NFS exports do not depend on it, and iPXE nodes ask dim serve.

    \b
    dim node switch @rack1 sles15          # then: dim power reset @rack1
    dim node switch node01 rhel9 --reset   # both at once
    """
    from dim.actions import power as remote
    from dim.cli.power import act, confirm

    chosen = None
    if reset:  # credentials read and the question asked before anything changes
        chosen = remote.select_nodes(ctx, nodeset)
        if not yes:
            confirm("reset", chosen.names)
    s = nodes.switch(ctx, nodeset, image_name, progress=progress, root=root)
    click.echo(
        f"{fold(list(s.nodes))}: image {s.image} ({s.switched} switched); new replicas for "
        f"{fold(list(s.created)) or 'no node'}, kept replicas found for "
        f"{fold(list(s.found)) or 'no node'}"
        + (f"; {s.links} loader files pointed at {s.image}" if s.links else "")
    )
    if chosen is not None:
        act(ctx, chosen, "reset", remote.DEFAULT_OPTIONS, yes=True)


@group.command("reset")
@click.argument("nodeset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def node_reset(ctx: Context, nodeset: str, yes: bool) -> None:
    """Give NODESET fresh replicas of their image; the old ones are kept until `image gc`."""
    plan = nodes.reset_plan(ctx, nodeset)
    if not yes and not click.confirm(f"discard the persistent state of {fold(plan.nodes)}?"):
        raise click.exceptions.Abort()
    for r in nodes.reset(ctx, plan):
        click.echo(f"{fold(list(r.nodes))}: fresh replicas of {r.image}; old ones kept until gc")


@group.command("diff")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def node_diff(ctx: Context, node: str, as_json: bool) -> None:
    """What NODE changed in its persistent paths, against its image."""
    delta(nodes.diff(ctx, node), as_json)
