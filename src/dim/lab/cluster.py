"""The virtual cluster's lifecycle: ``dim lab up|boot|status|run|reload|down``.

One network namespace (``dimlab`` unless ``up`` is given another name) holds a bridge with
the image server's address (`dim.lab.network`), the real DHCP server and nfs-ganesha on dim's
rendered configuration, and ``dim serve`` (`dim.lab.daemons`), all configured through the same
use cases the ``dim`` command calls (`dim.actions`); QEMU nodes (`dim.lab.qemu`) on
tap devices in the bridge network-boot from it (through iPXE, or OVMF's own PXE or HTTP boot:
``boot(…, firmware=…)``), and are followed and driven through their serial consoles
(`dim.lab.console`). Everything the lab starts is recorded in
``<lab>/lab.json`` by process id (`dim.lab.state`), so that ``down`` stops exactly that::

    <lab>/cluster.xml   the lab's layout (package data, dim/lab/lab.xml; examples/lab.xml in a
                        checkout) with the chosen DHCP flavour and node count
    <lab>/state/        dim's state: DB, images, replicas, boot builds (with ``--store ceph``
                        the CephFS of <lab>/ceph/, the lab's Ceph cluster: dim.lab.store)
    <lab>/root/         what `dim apply --root` installed (configs, boot files)
    <lab>/logs/         daemon logs and one serial console per node
    <lab>/lab.json      namespace, daemons and nodes with their process ids

In Python, as the e2e tests do::

    up(folder, say=print, namespace="dimtest")
    boot(folder, ["node01"], say=print)
    watch(folder, ["node01"], timeout=180, say=print)     # {"node01": 14.2}
    run(folder, "node01", "cat /etc/hostname")            # (0, "node01\\n")
    down(folder)                                          # ["node01", "dnsmasq", …]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import time
from importlib import resources
from pathlib import Path

from dim import architectures
from dim.actions import apply as applying
from dim.actions import images as image_actions
from dim.actions import nodes as node_actions
from dim.actions.context import Context
from dim.errors import LabError
from dim.lab import console, images, network, postgres
from dim.lab import store as lab_store
from dim.lab.bmcs import start_bmcs
from dim.lab.daemons import Say, restart_daemon, start_daemons
from dim.lab.images import MARKER
from dim.lab.network import NAMESPACE
from dim.lab.processes import Process, alive, sleep_until, spawn, stop
from dim.lab.qemu import (
    DEFAULT_FIRMWARE,
    FOREIGN_NODES,
    firmware_kind,
    foreign_command,
    lab_macs,
    node_macs,
    nvram_template,
    qemu_command,
)
from dim.lab.state import LabState, database, locked


def layout_text(
    flavour: str,
    nodes: int,
    servers: int = 1,
    ceph_conf: Path | None = None,
    arches: tuple[str, ...] = (),
) -> str:
    """The lab's layout (package data) with the DHCP flavour and node count asked for.

    Each architecture of ``arches`` other than x86-64 adds as many nodes of its own (aarch64:
    ``arm01``…, 10.77.0.(200+N), `foreign_group`) and an image for them, ``tiny-<arch>``.

    With several ``servers``: ``srv1``… in one failover set, service addresses 10.77.0.K
    (nodes are given those), own addresses 10.77.0.(100+K) on their namespace's ``eth0``; the
    nodes dealt out in turn, node01 to srv1, node02 to srv2… With ``ceph_conf`` (the lab's
    Ceph cluster's), a ``<store>`` on its CephFS whose heads are every server
    (`dim.lab.store.store_element`).
    """
    text = resources.files("dim.lab").joinpath("lab.xml").read_text()
    foreign = "".join(
        foreign_group(arch, nodes, "srv1" if servers > 1 else None)
        for arch in arches
        if arch != architectures.DEFAULT
    )
    text = text.replace("</cluster>", foreign + "</cluster>")
    text = re.sub(r'dhcp="\w+"', f'dhcp="{flavour}"', text, count=1)
    text = re.sub(r'nodes="node\[01-\d+\]"', f'nodes="node[01-{nodes:02}]"', text, count=1)
    if servers < 2:
        store = lab_store.store_element(ceph_conf, "labsrv") if ceph_conf else ""
        return text.replace("  <image ", store + "  <image ", 1)
    store = lab_store.store_element(ceph_conf, f"srv[1-{servers}]") if ceph_conf else ""
    line = re.search(r"  <server [^>]*/>\n", text)
    assert line is not None
    declared = "".join(
        line.group()
        .replace('name="labsrv"', f'name="srv{k}"')
        .replace('address="10.77.0.1"', f'address="10.77.0.{k}" own-address="10.77.0.{100 + k}"')
        .replace('interface="br0"', f'interface="{network.SERVER_IFACE}"')
        for k in range(1, servers + 1)
    )
    declared += f'  <failover name="lab" servers="srv[1-{servers}]"/>\n' + store
    text = text.replace(line.group(), declared)
    deal = "".join(
        f'    <node name="{name}" server="srv{k}"/>\n'
        for k in range(2, servers + 1)
        if (name := ",".join(f"node{n:02}" for n in range(k, nodes + 1, servers)))
    )
    text = text.replace('image="tiny">', 'image="tiny" server="srv1">', 1)
    return text.replace("  </group>", deal + "  </group>", 1)


FOREIGN_MAX = 50  # nodes of each other architecture: 10.77.0.(200+N), below the broadcast


def foreign_group(arch: str, nodes: int, server: str | None) -> str:
    """The image and group of the lab's ``nodes`` nodes of ``arch`` (another than x86-64),
    as cluster.xml elements."""
    prefix, _ = FOREIGN_NODES[arch]
    if nodes > FOREIGN_MAX:
        raise LabError(
            f"at most {FOREIGN_MAX} {arch} nodes in the lab (10.77.0.201-250): {nodes} asked",
            hint=f"--nodes {FOREIGN_MAX} or fewer",
        )
    console = architectures.named(arch).console
    on = f' server="{server}"' if server else ""
    return (
        f'  <image name="tiny-{arch}" kernel-args="console={console}">\n'
        '    <persist path="/etc"/> <persist path="/root"/>\n'
        '    <volatile path="/tmp"/>\n'
        '    <keepout path="/etc/hostname"/>\n'
        "  </image>\n"
        f'  <group name="{arch}" nodes="{prefix}[01-{nodes:02}]" image="tiny-{arch}" '
        f'arch="{arch}"{on}>\n'
        '    <interface network="boot" ip="10.77.0.{200+n1}"/>\n'
        "  </group>\n"
    )


def up(
    folder: Path,
    *,
    flavour: str = "dnsmasq",
    nodes: int = 2,
    debian: tuple[str, ...] = (),
    say: Say,
    namespace: str = NAMESPACE,
    bmcs: bool = True,
    servers: int = 1,
    store: str = "folder",
    arches: tuple[str, ...] = (),
) -> LabState:
    """Build the lab's network, image and configuration, and start its daemons.

    ``arches``: the architectures of the lab's nodes besides x86-64's ``nodeNN``, each with
    as many nodes (`foreign_group`) booting an image of busybox and Debian's kernel of their
    architecture.

    ``namespace`` names the lab's network namespace: two labs (a hand-run one and a test's)
    can be up at once when their namespaces differ, though only one with ``bmcs`` (a simulated
    IPMI BMC per node, `dim.lab.bmcs`, on the host's loopback). ``store``: ``folder`` (the
    host's state folder, shared by the servers) or ``ceph`` (`dim.lab.store`: the state folder
    a CephFS of the lab's own Ceph cluster, every server a ganesha head over it). If a step
    fails, everything started so far is stopped again (`down`) and the error raised.
    """
    if store not in lab_store.KINDS:
        raise LabError(f"unknown store {store!r}", hint=f"one of {', '.join(lab_store.KINDS)}")
    on_ceph = store == "ceph"
    if on_ceph:
        lab_store.check_available()
    existing = LabState.load(folder)
    if existing is not None and network.exists(existing.namespace):
        raise LabError(
            f"the lab in {folder} is up already",
            hint="dim lab status shows it; dim lab down stops it",
        )
    conf = lab_store.ceph_conf(folder) if on_ceph else None
    foreign = tuple(a for a in dict.fromkeys(arches) if a != architectures.DEFAULT)
    layout = layout_text(flavour, nodes, servers, conf, foreign)  # refused before any file
    for sub in ("logs", "state", "root"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "cluster.xml").write_text(layout)
    macs = folder / "macs.csv"
    every = lab_macs(nodes, foreign)
    macs.write_text("".join(f"{n},{m}\n" for n, m in every.items()))
    if network.exists(namespace):
        raise LabError(
            f"the network namespace {namespace} exists already (another lab?)",
            hint="dim lab down --dir FOLDER stops the lab that made it; or pick another name",
        )
    names = tuple(f"srv{k}" for k in range(1, servers + 1)) if servers > 1 else ()
    state = LabState(
        str(folder), namespace, flavour, servers=names, store="ceph" if on_ceph else ""
    )
    network.make(namespace, servers=bool(names))
    state.save()
    try:
        for number, name in enumerate(names, start=1):
            network.add_server(namespace, name, f"10.77.0.{100 + number}")
        if on_ceph:  # before the images: dim writes the store through CephFS
            state = lab_store.start(state, say)
        if names:  # several servers share one state DB: PostgreSQL, as on a real site
            say("database: PostgreSQL (the state DB of every server)")
            database = postgres.start(_database_folder(folder, namespace))
            state = dataclasses.replace(state, database=database.socket_url)
            state.save()
        _build_images(folder, debian=debian, arches=foreign, say=say)
        node_actions.import_macs(context(folder), macs)
        _apply(folder, names)
        state = start_daemons(state, say)
        if names:
            _wait_own_addresses(state, say)
        if bmcs:
            start_bmcs(folder, list(node_macs(nodes)), say=say)
            state = LabState.running(folder)
    except BaseException:
        down(folder)
        raise
    return state


def _database_folder(folder: Path, namespace: str) -> Path:
    """Where the lab's PostgreSQL keeps its data: ``<lab>/postgres``, a link to a folder below
    /var/tmp when the lab's own is out of the postgres user's reach (a test's temporary
    folder is private to root). Made anew at each ``up``."""
    link = folder / "postgres"
    if link.is_symlink() or link.exists():
        target = link.resolve()
        stale = postgres.running(target)
        if stale is not None:
            postgres.stop(stale)
        shutil.rmtree(target, ignore_errors=True)
        if link.is_symlink():
            link.unlink()
    if all(os.stat(p).st_mode & 0o001 for p in [folder, *folder.parents]):
        return link
    target = Path("/var/tmp") / f"dim-lab-postgres-{namespace}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o755)
    link.symlink_to(target)
    return target  # the server's own paths (its socket) must not pass through the lab's


def _wait_own_addresses(state: LabState, say: Say, timeout: float = 15.0) -> None:
    """Until each server holds its own service address (keepalived's first election), so
    that every test starts with each node on its own server."""
    cluster = context(state.folder).cluster()
    wanted = {name: str(cluster.servers[name].address) for name in state.servers}

    def settled() -> bool:
        return all(
            network.addresses(network.server_namespace(state.namespace, name))[1:] == [address]
            for name, address in wanted.items()
        )

    if not sleep_until(settled, timeout):
        held = {
            name: network.addresses(network.server_namespace(state.namespace, name))[1:]
            for name in state.servers
        }
        raise LabError(
            f"keepalived did not give each server its own address within {timeout:.0f} s: "
            + ", ".join(f"{name} holds {', '.join(a) or 'none'}" for name, a in held.items()),
            hint=f"keepalived's logs: {state.folder}/servers/*/logs/keepalived.log",
        )
    for name, address in wanted.items():
        say(f"{name}: holds {address}")


def _build_images(
    folder: Path, *, debian: tuple[str, ...], arches: tuple[str, ...] = (), say: Say
) -> None:
    """The tiny image (and tiny2, to switch to), ``tiny-<arch>`` for each other architecture,
    the Debian releases asked, their boot files."""
    say("image: tiny (busybox and the Debian kernel)")
    kernel = images.fetch_kernel()
    shutil.rmtree(folder / "trees" / "tiny", ignore_errors=True)
    tree = images.tiny_tree(folder / "trees" / "tiny", kernel)
    _import(folder, "tiny", tree)
    _import(folder, "tiny2", tree)
    built = ["tiny", "tiny2"]
    for arch in arches:
        image = f"tiny-{arch}"
        say(f"image: {image} (Debian's {arch} busybox and kernel)")
        shutil.rmtree(folder / "trees" / image, ignore_errors=True)
        _import(folder, image, images.foreign_tiny_tree(folder / "trees" / image, arch))
        built.append(image)
    for number in debian:
        release = images.RELEASES[number]
        say(f"image: {release.image} ({release.suite} minbase with systemd and its kernel)")
        shutil.rmtree(folder / "trees" / release.image, ignore_errors=True)
        tree = images.debian_tree(folder / "trees" / release.image, release, progress=say)
        _import(folder, release.image, tree)
        built.append(release.image)
    for image in built:
        image_actions.boot_build(context(folder), image)


def _secure_boot_mismatches(folder: Path, names: list[str], kind: str) -> list[str]:
    """What will not boot because the firmware and the layout's secure-boot disagree: DHCP
    sends a node declared secure-boot shim, whatever it asks as, and the others iPXE, which
    Secure Boot refuses."""
    cluster = context(folder).cluster()
    declared = {n.name for n in cluster.nodes if n.name in names and n.secure_boot}
    if kind == "uefi-secureboot":
        return [
            f'{name} is not declared secure-boot="yes" in {folder}/cluster.xml: it is sent '
            "iPXE, which Secure Boot refuses (dim lab reload after declaring it)"
            for name in names
            if name not in declared
        ]
    if kind in ("bios-ipxe-rom", "uefi-ipxe-rom"):
        return [
            f'{name} is declared secure-boot="yes": it is sent shim, a UEFI loader, over '
            f"TFTP; boot it with --firmware uefi-secureboot or uefi-pxe"
            for name in sorted(declared)
        ]
    return []


def context(folder: Path) -> Context:
    """The lab's layout and state, for dim's use cases (``dim --config … --state …``, and
    ``--database`` when the lab has a database server)."""
    return Context(config=folder / "cluster.xml", state=folder / "state", database=database(folder))


def _import(folder: Path, image: str, tree: Path) -> None:
    """``dim image import``, or ``sync`` once the store has the image."""
    ctx = context(folder)
    incremental = ctx.store().exists(image)
    image_actions.import_image(ctx, image, str(tree), incremental=incremental)


def _apply(folder: Path, servers: tuple[str, ...] = ()) -> None:
    """``dim apply --root <lab>/root --no-reload``: the daemons take the files themselves.
    With several servers, each its own: ``--server S --root <lab>/servers/S/root``."""
    if not servers:
        applying.apply(context(folder), root=folder / "root", do_reload=False)
    for server in servers:
        root = folder / "servers" / server / "root"
        applying.apply(context(folder), root=root, server=server, do_reload=False)


def boot(
    folder: Path,
    names: list[str],
    *,
    firmware: str | None = None,
    uefi: bool = False,
    memory: int = 384,
    say: Say,
) -> LabState:
    """Start (or restart) QEMU nodes; each one network-boots through ``firmware``.

    ``firmware`` is a kind of `dim.lab.qemu.FIRMWARES` (or an alias); by default
    ``bios-ipxe-rom``, or ``uefi-ipxe-rom`` with ``uefi`` (the earlier switch). A kind with
    NVRAM gets ``<lab>/nvram/<node>.<kind>.fd``, copied from OVMF's template on its first
    boot and kept after, as a server keeps its boot entries.
    """
    kind = firmware_kind(firmware or ("uefi-ipxe-rom" if uefi else DEFAULT_FIRMWARE))
    for warning in _secure_boot_mismatches(folder, names, kind):
        say(f"warning: {warning}")
    with locked(folder):
        return _boot(folder, names, kind, memory, say)


def last_firmware(folder: Path, name: str) -> str:
    """The firmware the node was last powered on with (a BMC's power on uses it again)."""
    try:
        return firmware_kind((folder / "run" / f"{name}.firmware").read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_FIRMWARE


def _boot(folder: Path, names: list[str], kind: str, memory: int, say: Say) -> LabState:
    state = LabState.running(folder)
    macs = lab_macs()
    arches = _architectures(folder, names)
    for name in names:
        if name not in macs:
            raise LabError(f"unknown lab node {name!r}")
        arch = arches[name]
        node_kind = kind if arch == architectures.DEFAULT else _foreign_kind(name, arch, kind)
        previous = state.nodes.get(name)
        if previous is not None:
            stop(previous.pid)
            network.remove_tap(state.namespace, previous.tap)
            state = state.without_node(name)
        log = console.console_path(folder, name)
        if log.exists():
            log.replace(log.with_suffix(".console.1"))
        log.touch()
        tap = network.add_tap(state.namespace)
        nvram = _nvram(folder, name, node_kind, arch)
        if arch == architectures.DEFAULT:
            command = qemu_command(macs[name], tap, log, firmware=kind, memory=memory, nvram=nvram)
        else:
            assert nvram is not None
            command = foreign_command(arch, macs[name], tap, log, memory=memory, nvram=nvram)
        qemu_log = folder / "logs" / f"{name}.qemu.log"
        process = spawn(state.namespace, name, command, qemu_log, tap=tap)
        state = state.with_node(name, process)
        state.save()
        (folder / "run").mkdir(exist_ok=True)
        (folder / "run" / f"{name}.firmware").write_text(f"{node_kind}\n")
        on = "" if arch == architectures.DEFAULT else f" {arch}"
        say(f"{name}: powered on ({node_kind}{on}, pid {process.pid})")
    return state


def _architectures(folder: Path, names: list[str]) -> dict[str, str]:
    """The architecture of each of the lab's nodes ``names``, as its layout states it."""
    cluster = context(folder).cluster()
    found = {}
    for name in names:
        node = cluster.node(name)
        found[name] = cluster.groups[node.group].arch if node else architectures.DEFAULT
    return found


def _foreign_kind(name: str, arch: str, kind: str) -> str:
    """The firmware of a node of another architecture: its UEFI's own PXE, the one kind the
    lab has for it (asked for the default, BIOS with iPXE's ROM, it is that too)."""
    if kind not in (DEFAULT_FIRMWARE, "uefi-pxe"):
        raise LabError(
            f"{name} ({arch}) boots by its UEFI firmware's PXE only, not {kind}",
            hint="--firmware uefi-pxe, or none",
        )
    return "uefi-pxe"


def _nvram(folder: Path, name: str, kind: str, arch: str = architectures.DEFAULT) -> Path | None:
    """The node's own UEFI variables for ``kind``, made from the template the first time."""
    if arch == architectures.DEFAULT:
        template = nvram_template(kind)
        package = "ovmf"
    else:
        facts = architectures.named(arch)
        template, package = Path(facts.firmware_vars), facts.firmware_package
    if template is None:
        return None
    if not template.exists():
        raise LabError(f"no {template} for firmware {kind}", hint=f"apt-get install {package}")
    path = folder / "nvram" / f"{name}.{kind}.fd"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)
    return path


def power_off(folder: Path, names: list[str], *, say: Say | None = None) -> None:
    """Stop the QEMU of each node by its process id (a pulled plug) and remove its tap."""
    with locked(folder):
        state = LabState.running(folder)
        for name in names:
            process = state.nodes.get(name)
            if process is None:
                continue
            stop(process.pid)
            network.remove_tap(state.namespace, process.tap)
            state = state.without_node(name)
            state.save()
            if say:
                say(f"{name}: powered off")


def watch(
    folder: Path, names: list[str], *, timeout: float, say: Say, until: str = MARKER
) -> dict[str, float | None]:
    """Follow the nodes' consoles; say each stage as it is reached.

    Seconds to ``until`` for each node; -1.0 for a node whose QEMU ended first, None for one
    still on its way after ``timeout``.
    """
    started = time.monotonic()
    seen: dict[str, set[str]] = {n: set() for n in names}
    done: dict[str, float | None] = {n: None for n in names}
    while time.monotonic() - started < timeout and any(v is None for v in done.values()):
        state = LabState.load(folder)
        for name in (n for n in names if done[n] is None):
            text = console.read(folder, name)
            elapsed = time.monotonic() - started
            for label in console.progress(text, seen[name]):
                say(f"{name}  {elapsed:5.1f} s  {label}")
            if until in text:
                done[name] = elapsed
            elif state is not None and name in state.nodes and not alive(state.nodes[name].pid):
                say(f"{name}  {elapsed:5.1f} s  powered off")
                done[name] = -1.0
        time.sleep(0.25)
    return done


def run(folder: Path, name: str, command: str, *, timeout: float = 30.0) -> tuple[int, str]:
    """Run a shell command on a running lab node through its serial console: (status, output).

    The node is running when its QEMU runs, started by ``boot`` or through its simulated BMC
    (`dim.lab.bmcpower`), which powers it the same way.
    """
    state = LabState.running(folder)
    node = state.nodes.get(name)
    if node is None or not alive(node.pid):
        raise LabError(
            f"{name} is not running in the lab in {folder}",
            hint=f"dim lab boot --dir {folder} {name} powers it on",
        )
    return console.console_run(folder, name, command, timeout=timeout)


def status(folder: Path) -> dict:
    """What runs, for ``dim lab status``: daemons, nodes and each node's last console line."""
    state = LabState.load(folder)
    if state is None:
        return {"up": False, "folder": str(folder)}
    nodes = {}
    for name, process in state.nodes.items():
        text = console.read(folder, name)
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
        nodes[name] = {
            "pid": process.pid,
            "running": alive(process.pid),
            "up": MARKER in text,
            "console": last[-100:],
        }
    servers = {}
    for server in state.servers:
        namespace = network.server_namespace(state.namespace, server)
        held = network.addresses(namespace) if network.exists(namespace) else []
        servers[server] = {"addresses": held}
    return {
        "up": network.exists(state.namespace),
        "folder": str(folder),
        "flavour": state.flavour,
        **({"servers": servers} if servers else {}),
        **({"store": lab_store.status(state)} if state.store else {}),
        "daemons": {
            d.name: {"pid": d.pid, "running": alive(d.pid), "log": d.log} for d in state.daemons
        },
        "nodes": nodes,
    }


def restart(folder: Path, name: str, *, down_for: float = 0.0, say: Say | None = None) -> Process:
    """Stop the lab's daemon ``name`` by its process id and start it again, as ``up`` did,
    ``down_for`` seconds later (a server outage, for the tests).

    The nodes keep running: an NFS client retries until ganesha answers again.
    """
    return restart_daemon(LabState.running(folder), name, down_for=down_for, say=say)[1]


def reload(folder: Path, *, say: Say | None = None) -> None:
    """``dim apply`` into the lab's root, then the daemons take it: after a change to the
    lab's cluster.xml (a switch needs no reload).

    Both are restarted rather than signalled: a changed layout can change an export's path
    under the same export id, which ganesha's reload does not apply, and dnsmasq rereads only
    its hosts files on SIGHUP, not the boot-file choice of its main file (Kea and dhcpd read
    their configuration at start only).
    """
    state = LabState.running(folder)
    _apply(folder, state.servers)
    for server in state.servers or ("",):
        prefix = f"{server}/" if server else ""
        restart(folder, f"{prefix}{state.flavour}", say=say)
        restart(folder, f"{prefix}ganesha", say=say)


def reload_vrrp(folder: Path, *, say: Say | None = None) -> None:
    """``dim apply`` into each server's root, then SIGHUP to each running keepalived, which
    rereads its configuration: after a change to the failover set (preempt) that must not
    restart ganesha or DHCP under the running nodes."""
    state = LabState.running(folder)
    _apply(folder, state.servers)
    for process in state.daemons:
        if process.name.endswith("/keepalived") and alive(process.pid):
            os.kill(process.pid, signal.SIGHUP)
            if say:
                say(f"{process.name}: reloaded")


def set_preempt(folder: Path, preempt: bool, *, say: Say | None = None) -> None:
    """Turn preemption of the lab's failover set on or off (its cluster.xml) and have every
    keepalived reread its configuration (`reload_vrrp`): ganesha and DHCP keep running."""
    config = folder / "cluster.xml"
    text = re.sub(r'(<failover name="lab")(?: preempt="\w+")?', r"\1", config.read_text())
    if preempt:
        text = text.replace('<failover name="lab"', '<failover name="lab" preempt="yes"')
    config.write_text(text)
    reload_vrrp(folder, say=say)


def fail(folder: Path, server: str, *, say: Say | None = None) -> list[str]:
    """A power loss of one lab server: SIGKILL to every daemon of it at once (no clean stop,
    no goodbye from keepalived), and its link to the bridge down. Its namespace stays, so
    that `restore` brings it back; which daemons were killed. In a lab on CephFS, ``server``
    may name one of the store's OSDs (``osd.1``): that daemon alone is killed."""
    state = LabState.running(folder)
    if state.store and server.startswith("osd."):
        lab_store.fail_osd(state, server, say=say)
        return [server]
    if server not in state.servers:
        raise LabError(
            f"the lab has no server {server!r}",
            hint=f"its servers: {', '.join(state.servers)}"
            if state.servers
            else "this lab has one server: dim lab up --servers 2",
        )
    with locked(folder):
        state = LabState.running(folder)
        killed = [d for d in state.daemons if d.name.startswith(f"{server}/")]
        for process in killed:
            if process.pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            # gone: its id may be another process's by the time the server is restored
            state = state.with_daemon(dataclasses.replace(process, pid=0))
        state.save()
    network.set_server_link(state.namespace, server, up=False)
    # what a power loss also loses: the addresses keepalived had added (SIGKILL leaves them)
    network.forget_service_addresses(state.namespace, server)
    if say:
        say(f"{server}: failed ({len(killed)} daemons killed, link down)")
    return [d.name for d in killed]


def kill(folder: Path, name: str) -> None:
    """SIGKILL to the lab's daemon ``name`` alone (a crash, its server living on), recorded
    as gone so that a later restart or ``down`` never signals a process that took its id."""
    with locked(folder):
        state = LabState.running(folder)
        process = state.daemon(name)
        if process is None:
            raise LabError(f"the lab runs no daemon {name!r}", hint="dim lab status lists them")
        if process.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        state.with_daemon(dataclasses.replace(process, pid=0)).save()


def restore(folder: Path, server: str, *, say: Say) -> LabState:
    """The failed ``server`` back: link up, its daemons started again as ``up`` did (a
    killed OSD of the store: that daemon started again)."""
    state = LabState.running(folder)
    if state.store and server.startswith("osd."):
        lab_store.restore_osd(state, server, say=say)
        return state
    if server not in state.servers:
        raise LabError(f"the lab has no server {server!r}")
    network.set_server_link(state.namespace, server, up=True)
    for name in [d.name for d in state.daemons if d.name.startswith(f"{server}/")]:
        state, _ = restart_daemon(state, name, say=say)
    return state


def down(folder: Path) -> list[str]:
    """Stop every process the lab started and delete its namespace; files stay.

    Nodes first, then daemons in reverse start order, then a CephFS store's mount and Ceph
    cluster (`dim.lab.store.stop`; its folder stays). Without ``lab.json`` there is nothing
    of this lab's to stop, and no namespace is touched: it may be another lab's.
    """
    state = LabState.load(folder)
    if state is None:
        return []
    for process in [*state.nodes.values(), *reversed(state.daemons)]:
        if process.name != lab_store.FUSE:  # unmounted by lab_store.stop
            stop(process.pid)
    if state.store:
        lab_store.stop(state)
    state.without_processes().save()
    database = postgres.running((folder / "postgres").resolve())
    if database is not None:
        postgres.stop(database)
    for server in state.servers:
        network.delete(network.server_namespace(state.namespace, server))
    network.delete(state.namespace)
    return [p.name for p in [*state.nodes.values(), *state.daemons]]


def discard_outside(folder: Path) -> None:
    """After :func:`down`, delete what the lab keeps outside ``folder``: the PostgreSQL data
    folder below /var/tmp that ``<lab>/postgres`` links to (see :func:`_database_folder`).
    For a caller about to delete ``folder`` itself, a test's temporary folder say: that
    folder would otherwise outlive the link to it, 46 MB a lab."""
    link = folder / "postgres"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()
