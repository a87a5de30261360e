"""``dim lab up|boot|status|run|reload|down``: the virtual cluster on this machine."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from dim.cli.output import emit_json
from dim.errors import UsageError
from dim.inventory import fold

DEFAULT_LAB = "/var/tmp/dim-lab"


def _folder(path: str) -> Path:
    return Path(path).resolve()


def _say(message: str) -> None:
    click.echo(message)


lab_dir = click.option(
    "--dir",
    "folder",
    envvar="DIM_LAB",
    default=DEFAULT_LAB,
    show_default=True,
    help="The lab's folder (env: DIM_LAB).",
)


@click.group("lab")
def lab_group() -> None:
    """A virtual cluster on this machine: a namespace, real daemons, QEMU nodes that PXE-boot.

    \b
    dim lab up              network, image, configuration, daemons
                            (--servers 2 --store ceph: two ganesha heads over a CephFS)
    dim lab boot --watch    power on the nodes and follow them to their marker
    dim lab watch NODE      follow a node to its marker (after dim power reset NODE)
    dim lab env             the exports that point dim's commands at the lab
    dim lab status          what runs
    dim lab run NODE -- CMD run CMD on NODE through its serial console
    dim lab reload          dim apply, then the daemons take it (after editing cluster.xml)
    dim lab fail SERVER     power loss of one server of a lab with --servers 2 or more
    dim lab restore SERVER  that server back
    dim lab down            stop everything the lab started
    """


@lab_group.command("up")
@lab_dir
@click.option("--nodes", default=2, show_default=True, type=click.IntRange(1, 99))
@click.option(
    "--dhcp",
    type=click.Choice(["dnsmasq", "kea", "isc"]),
    default="dnsmasq",
    show_default=True,
    help="DHCP server flavour.",
)
@click.option(
    "--debian",
    metavar="RELEASES",
    is_flag=False,
    flag_value="12,13",
    default="",
    callback=lambda ctx, param, value: _debian_releases(value),
    help="Also Debian minbase images with systemd, debian12 and/or debian13 "
    "(--debian alone: 12,13).",
)
@click.option(
    "--namespace",
    default="dimlab",
    show_default=True,
    help="The lab's network namespace (two labs at once need two names).",
)
@click.option(
    "--bmcs/--no-bmcs",
    default=True,
    show_default=True,
    help="Simulated IPMI BMCs for the nodes, for dim power (on the host's loopback: one lab "
    "at a time can have them).",
)
@click.option(
    "--servers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 9),
    help="Image servers; 2 or more: one failover set, each server in a namespace of its own "
    "with its own host name, daemons and keepalived, over one shared state folder.",
)
@click.option(
    "--store",
    type=click.Choice(["folder", "ceph"]),
    default="folder",
    show_default=True,
    help="Where the state folder (images, replicas) lives: a folder of this host, or the "
    "CephFS of a small Ceph cluster the lab starts (each server a ganesha head over it).",
)
@click.option(
    "--arch",
    "arches",
    metavar="ARCHES",
    default="x86_64",
    show_default=True,
    callback=lambda ctx, param, value: _architectures(value),
    help="The nodes' architectures, comma-separated: x86_64 (node01…) and aarch64 (arm01…, "
    "booted by Debian's AAVMF UEFI in qemu-system-aarch64 -M virt, TCG), --nodes of each.",
)
def lab_up(
    folder: str,
    nodes: int,
    dhcp: str,
    debian: tuple[str, ...],
    namespace: str,
    bmcs: bool,
    servers: int,
    store: str,
    arches: tuple[str, ...],
) -> None:
    """Build the lab and start its daemons (root needed)."""
    from dim.lab import cluster

    if len(arches) > 1 and nodes > cluster.FOREIGN_MAX:
        raise click.BadParameter(
            f"at most {cluster.FOREIGN_MAX} with --arch {','.join(arches)} (the aarch64 nodes' "
            "addresses are 10.77.0.201-250)",
            param_hint="--nodes",
        )
    _root()
    cluster.up(
        _folder(folder),
        flavour=dhcp,
        nodes=nodes,
        debian=debian,
        say=_say,
        namespace=namespace,
        bmcs=bmcs,
        servers=servers,
        store=store,
        arches=arches,
    )
    click.echo(f"lab up in {folder}: dim lab boot --watch starts the nodes")
    click.echo(f'dim commands on the lab: eval "$(dim lab env --dir {folder})"')


@lab_group.command("env")
@lab_dir
def lab_env(folder: str) -> None:
    """Print the shell exports that point dim's commands at the lab: its layout, its state,
    its state DB (DIM_DATABASE, unset for the state folder's), the root its daemons'
    files are installed under, and its ganeshas' pid files (DIM_NFS_PID_FILES, for
    `dim node status`).

    \b
    eval "$(dim lab env)"
    dim node list; dim power status @all; dim node switch node01 tiny2
    """
    from shlex import quote

    from dim.lab.daemons import ganesha_pid_files
    from dim.lab.state import database

    lab = _folder(folder)
    url = database(lab)
    click.echo(f"export DIM_CONFIG={quote(str(lab / 'cluster.xml'))}")
    click.echo(f"export DIM_STATE={quote(str(lab / 'state'))}")
    # unset otherwise: another lab's URL left in the shell would take this lab's commands
    click.echo(f"export DIM_DATABASE={quote(url)}" if url else "unset DIM_DATABASE")
    click.echo(f"export DIM_ROOT={quote(str(lab / 'root'))}")
    pid_files = ":".join(str(p) for p in ganesha_pid_files(lab))
    click.echo(f"export DIM_NFS_PID_FILES={quote(pid_files)}")


def _architectures(value: str) -> tuple[str, ...]:
    """``x86_64,aarch64`` (or aliases) as the table's names; x86-64's nodes are always there."""
    from dim import architectures

    names = [n.strip() for n in value.split(",") if n.strip()]
    found = [architectures.canonical(n) for n in names]
    unknown = [n for n, f in zip(names, found, strict=True) if f is None]
    if unknown:
        raise click.BadParameter(
            f"unknown architecture {', '.join(unknown)} "
            f"(known: {', '.join(architectures.choices())})"
        )
    return tuple(dict.fromkeys([architectures.DEFAULT, *(f for f in found if f)]))


def _debian_releases(value: str) -> tuple[str, ...]:
    """``12,13`` as a tuple of the releases the lab knows; anything else is a usage error."""
    from dim.lab.images import RELEASES

    numbers = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in numbers if n not in RELEASES]
    if unknown:
        raise click.BadParameter(
            f"unknown Debian release {', '.join(unknown)} (known: {', '.join(RELEASES)})"
        )
    return tuple(dict.fromkeys(numbers))


@lab_group.command("boot")
@lab_dir
@click.argument("nodeset", required=False)
@click.option(
    "--firmware",
    metavar="KIND",
    help="What network-boots the node: bios-ipxe-rom (default), uefi-ipxe-rom, uefi-pxe, "
    "uefi-http, uefi-secureboot (aliases: ipxe-rom, bios, uefi).",
)
@click.option("--uefi", is_flag=True, help="UEFI with iPXE's ROM: --firmware uefi-ipxe-rom.")
@click.option(
    "--watch/--no-watch",
    default=True,
    show_default=True,
    help="Follow the consoles until each node is up.",
)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to watch.")
def lab_boot(
    folder: str, nodeset: str | None, firmware: str | None, uefi: bool, watch: bool, timeout: float
) -> None:
    """Power on NODESET (default: every lab node) and follow each one booting."""
    from dim.lab import cluster
    from dim.lab.qemu import firmware_kind

    if firmware is not None:
        try:
            kind = firmware_kind(firmware)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--firmware") from None
        if uefi and kind != "uefi-ipxe-rom":
            raise click.BadParameter(
                f"--uefi means uefi-ipxe-rom, not {kind}", param_hint="--firmware"
            )
    _root()
    path = _folder(folder)
    names = _lab_nodes(path, nodeset)
    cluster.boot(path, names, firmware=firmware, uefi=uefi, say=_say)
    if watch:
        _watch(path, names, timeout)


@lab_group.command("watch")
@lab_dir
@click.argument("nodeset", required=False)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to watch.")
def lab_watch(folder: str, nodeset: str | None, timeout: float) -> None:
    """Follow NODESET's consoles (default: every lab node) until each node is up, without
    powering anything: after `dim power on|reset`, which goes through the nodes' BMCs."""
    path = _folder(folder)
    _watch(path, _lab_nodes(path, nodeset), timeout)


def _watch(path: Path, names: list[str], timeout: float) -> None:
    from dim.lab import cluster

    done = cluster.watch(path, names, timeout=timeout, say=_say)
    up = [n for n, t in done.items() if t is not None and t >= 0]
    late = [n for n, t in done.items() if t is None or t < 0]
    click.echo(f"up: {fold(up) or 'none'}" + (f"; not up: {fold(late)}" if late else ""))
    if late:
        click.get_current_context().exit(1)


def _lab_nodes(folder: Path, nodeset: str | None) -> list[str]:
    """The lab's nodes that ``nodeset`` names (all if None), checked as every node set is."""
    from dim.inventory import select
    from dim.layout.parser import load

    return [n.name for n in select(load(folder / "cluster.xml"), nodeset)]


@lab_group.command("status")
@lab_dir
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lab_status(folder: str, as_json: bool) -> None:
    """Daemons and nodes of the lab, and each node's last console line."""
    from dim.lab import cluster

    report = cluster.status(_folder(folder))
    if as_json:
        emit_json(report)
        return
    if not report["up"]:
        click.echo(f"no lab is up in {folder}")
        return
    click.echo(f"lab in {report['folder']} ({report['flavour']})")
    if "store" in report:
        store = report["store"]
        mounted = "mounted" if store["mounted"] else "NOT MOUNTED"
        click.echo(f"  store    CephFS {store['health']}, {mounted} on {store['mount']}")
    for name, server in report.get("servers", {}).items():
        click.echo(f"  {name:<8} holds {', '.join(server['addresses']) or 'no address'}")
    for name, d in report["daemons"].items():
        click.echo(f"  {name:<16} {'running' if d['running'] else 'STOPPED'}  pid {d['pid']}")
    for name, n in report["nodes"].items():
        state = "up" if n["up"] else ("booting" if n["running"] else "off")
        click.echo(f"  {name:<8} {state:<8} {n['console']}")


@lab_group.command("run", context_settings={"ignore_unknown_options": True})
@lab_dir
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for COMMAND.")
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def lab_run(folder: str, timeout: float, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND on NODE through its serial console; print its output, exit with its status.

    \b
    dim lab run node01 -- cat /etc/hostname
    dim lab run node01 -- sh -c 'echo hi; exit 3'     # prints hi, exits 3
    """
    from dim.lab import cluster

    _root()
    status, output = cluster.run(_folder(folder), node, shlex.join(command), timeout=timeout)
    click.echo(output, nl=False)
    click.get_current_context().exit(status)


@lab_group.command("reload")
@lab_dir
def lab_reload(folder: str) -> None:
    """dim apply into the lab, then its daemons take the new files (after a change to the
    lab's cluster.xml; a switch needs none)."""
    from dim.lab import cluster

    _root()
    cluster.reload(_folder(folder), say=_say)
    click.echo("lab reloaded: reset the switched nodes (dim lab boot NODESET) to boot their image")


@lab_group.command("fail")
@lab_dir
@click.argument("server")
def lab_fail(folder: str, server: str) -> None:
    """Fail SERVER as a power loss would: SIGKILL every daemon of it, its link down. In a
    lab on CephFS (--store ceph), SERVER may be one of the store's OSDs: osd.0, osd.1 or
    osd.2, killed alone.

    
    dim lab fail srv1; dim lab status     # srv2 holds 10.77.0.1 too
    dim lab restore srv1
    dim lab fail osd.1; dim lab restore osd.1
    """
    from dim.lab import cluster

    _root()
    cluster.fail(_folder(folder), server, say=_say)


@lab_group.command("restore")
@lab_dir
@click.argument("server")
def lab_restore(folder: str, server: str) -> None:
    """Bring a failed SERVER back: its link up, its daemons started again (an OSD of a lab
    on CephFS: started again)."""
    from dim.lab import cluster

    _root()
    cluster.restore(_folder(folder), server, say=_say)


@lab_group.command("down")
@lab_dir
def lab_down(folder: str) -> None:
    """Stop every process the lab started and delete its namespace (files stay)."""
    from dim.lab import cluster

    _root()
    stopped = cluster.down(_folder(folder))
    click.echo(f"lab down: stopped {', '.join(stopped) or 'nothing'}")


def _root() -> None:
    if os.geteuid() != 0:
        raise UsageError("the lab needs root (network namespaces, QEMU taps, NFS server)")
