"""Benchmark: a boot storm. N virtual nodes power on at the same moment against one image
server's real daemons, each doing what a network-booting node does (issue 14).

Run by hand, as root, never as a test (minutes at 2,500 nodes)::

    .venv/bin/python bench/storm.py [--nodes 500,2500] [--dhcp dnsmasq,kea,isc]
                                    [--boot http,tftp] [--reads bench/data/boot-reads-debian12.txt]
                                    [--dir /var/tmp/dst-storm] [--namespace dststorm]
                                    [--tftp-max N] [--json FILE] [--reuse] [--skip-reads]

For each node count, the image server is set up by dim itself, as an administrator would:
a cluster.xml with N nodes (10.77.0.0/16, node n00001 at 10.77.1.1, 250 per /24), their
MACs by ``dim node import-macs``, an image ``storm`` (the lab's tiny tree: busybox, the Debian
kernel and its modules, plus every file of ``--reads`` at its recorded size, random bytes),
its boot build (the real kernel and dim's initramfs), ``dim apply --root`` (replicas, DHCP,
ganesha's per-node exports, loader files). Then, for each DHCP flavour and each boot path, a
storm on fresh daemons: the DHCP server, ganesha and ``dim serve`` started as the lab starts
them (`dim.lab.daemons`), in a namespace ``<namespace>`` whose bridge holds 10.77.0.1; the
nodes live in ``<namespace>-c``, joined to the bridge, with every node's own address on one
interface. Each node, all started at once:

1. ``dhcp``: DISCOVER/REQUEST as a BIOS PXE ROM (option 93 = 0, vendor class PXEClient) with
   its own MAC, through a relay (giaddr 10.77.0.2: one socket speaks for all MACs; each server
   answers relayed requests); the ACK must give the node's address and a loader;
2. ``loader``: that loader (``undionly.kpxe``) over TFTP, as the ROM fetches it;
3. boot path ``http`` (iPXE): ``dhcp2``, the iPXE DHCP (user class iPXE, option 175), which must
   name dim serve's ``boot.ipxe``; ``script``: ``boot.ipxe`` and the node's own script over
   HTTP (aiohttp, one keep-alive connection per node from its own address, as iPXE);
   ``kernel``: kernel and initrd named by that script, from ``dim serve``;
   boot path ``tftp`` (PXELINUX): ``script``: ``pxelinux.cfg/01-<mac>`` over TFTP;
   ``kernel``: kernel and initrd over TFTP (``<tftp-root>/dim/images/storm/…``);
4. ``mount``: the image's read-only export and the node's own read-write export, NFSv4 (libnfs:
   one TCP connection per node from its own address, as a kernel client holds one per server;
   ganesha's pseudo-root mounted, each export's root looked up, ganesha admitting a node to
   its own export only: before the storm, node 2's address is shown to be refused node 1's);
5. ``reads``: the files a booting Debian 12 reads (``--reads``, recorded from a lab boot),
   replayed: READ of the bytes recorded, READDIR, READLINK, one after the other.

TFTP and NFS run in `bench/storm_client.c` (compiled here with cc and libnfs-dev: Python's
per-packet cost would make the client the bottleneck), DHCP and HTTP in Python. Reported per
storm and stage: seconds until all N nodes are through (from the common start), per-node
latency of the stage (median, p95, p99, max), failures and retries; per daemon, CPU seconds
used during the storm and peak memory (VmHWM summed over its processes, from /proc); whether
every daemon still runs with the process id it started with (no restart). The physical bound
of a 10 GbE server, from the bytes per node, is printed next to it.

Limits: dnsmasq's ``dhcp-lease-max`` and ``tftp-max`` are what ``dim apply`` renders for N
nodes (2N, and N up to 1,000; ``--tftp-max`` overrides the second). Bench-only: the host's ARP
table thresholds are raised to hold every node's entry when the storm needs it, and restored
(the namespaces share the host's table; ``dim apply`` writes a sysctl.d file for the server's
own machine). ganesha's ``RPC_Max_Connections`` is dim's (2N, at most 10,000): the simulator
holds one connection per node, so 10,000 nodes fit.
``--reuse`` skips the set-up when the folder holds one for as many nodes. Everything started
is stopped by process id and both namespaces are deleted at the end; the C client dies with
the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from dim.lab import images, netns  # noqa: E402
from dim.lab.daemons import RUN_FOLDERS, daemon_specs, log_path  # noqa: E402
from dim.lab.processes import spawn, stop, wait_listening  # noqa: E402
from dim.lab.state import LabState  # noqa: E402
from dim.services import limits  # noqa: E402

SERVER = "10.77.0.1"
RELAY = "10.77.0.2"
BRIDGE = "br0"
PER_SUBNET = 250
HTTP_PORT = 8080
STAGES = {
    "http": ("dhcp", "loader", "dhcp2", "script", "kernel", "mount", "reads"),
    "tftp": ("dhcp", "loader", "script", "kernel", "mount", "reads"),
}
LAYOUT = """<?xml version="1.0"?>
<!-- The boot storm's cluster (bench/storm.py): one server, {count} nodes in 10.77.0.0/16. -->
<cluster name="storm" domain="storm.dim">
  <network name="boot" subnet="10.77.0.0/16" gateway="10.77.0.1" dns="10.77.0.1"/>
  <server name="stormsrv" address="10.77.0.1" dhcp="{flavour}" nfs="ganesha" interface="br0"
          tftp-root="/srv/dim/tftp" http-root="/srv/dim/http"/>
  <image name="storm" kernel-args="console=ttyS0">
    <persist path="/etc"/> <persist path="/var"/> <persist path="/root"/>
    <volatile path="/tmp"/> <volatile path="/var/tmp"/>
  </image>
  <group name="nodes" nodes="n[00001-{count:05}]" image="storm">
    <interface network="boot" ip="10.77.{{1+(n1-1)//{per}}}.{{1+(n1-1)%{per}}}"/>
  </group>
</cluster>
"""


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def node_name(number: int) -> str:
    return f"n{number:05}"


def node_mac(number: int) -> str:
    return "52:54:01:{:02x}:{:02x}:{:02x}".format(*number.to_bytes(3, "big"))


def node_address(number: int) -> str:
    return f"10.77.{1 + (number - 1) // PER_SUBNET}.{1 + (number - 1) % PER_SUBNET}"


# -- the server, set up by dim ----------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    kind: str  # read, list, link
    export: str  # image, node
    path: str
    bytes: int = 0  # read by the boot
    size: int = 0  # of the file


def load_reads(path: Path) -> list[Operation]:
    operations = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        words = line.split()
        read, size = (int(words[3]), int(words[4])) if words[0] == "read" else (0, 0)
        operations.append(Operation(words[0], words[1], words[2], read, size))
    return operations


def storm_tree(dest: Path, operations: list[Operation]) -> list[Operation]:
    """The lab's tiny tree plus every file the boot reads at its size (random bytes), in
    ``dest``; the operations that this tree can answer (a recorded link where the tiny tree
    has a folder, /lib for one, is left out)."""
    shutil.rmtree(dest, ignore_errors=True)
    images.tiny_tree(dest, images.fetch_kernel())
    kept = []
    for op in operations:  # a node's files are seeded from the image's persistent paths
        target = dest / op.path
        try:
            if op.kind == "read":
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink():  # a busybox applet of the tiny tree: a file in Debian
                    target.unlink()
                if not target.is_dir():
                    target.write_bytes(random.randbytes(op.size))
            elif op.kind == "list":
                target.mkdir(parents=True, exist_ok=True)
            elif not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to("dim-storm-link")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
        if op.kind == "read" and (target.is_symlink() or not target.is_file()):
            continue
        kept.append(op)
    return kept


def write_reads(path: Path, operations: list[Operation]) -> None:
    path.write_text("".join(f"{op.kind} {op.export} {op.path} {op.bytes}\n" for op in operations))


def set_up(folder: Path, count: int, reads: Path, say=say) -> dict:
    """Layout, MACs, image, boot build and ``dim apply --root`` for ``count`` nodes."""
    from dim.actions import apply as applying
    from dim.actions import images as image_actions
    from dim.actions import nodes as node_actions
    from dim.actions.context import Context

    shutil.rmtree(folder, ignore_errors=True)
    for sub in ("logs", "state", "root"):
        (folder / sub).mkdir(parents=True)
    write_layout(folder, count, "dnsmasq")
    macs = folder / "macs.csv"
    macs.write_text("".join(f"{node_name(n)},{node_mac(n)}\n" for n in range(1, count + 1)))
    ctx = Context(config=folder / "cluster.xml", state=folder / "state")
    timings = {}
    started = time.monotonic()
    kept = storm_tree(folder / "tree", load_reads(reads))
    write_reads(folder / "reads.txt", kept)
    image_actions.import_image(ctx, "storm", str(folder / "tree"), incremental=False)
    image_actions.boot_build(ctx, "storm")
    timings["image"] = time.monotonic() - started
    started = time.monotonic()
    node_actions.import_macs(ctx, macs)
    timings["import_macs"] = time.monotonic() - started
    started = time.monotonic()
    applying.apply(ctx, root=folder / "root", do_reload=False)
    timings["apply"] = time.monotonic() - started
    say(
        "set up: image {image:.1f} s, import-macs {import_macs:.1f} s, apply {apply:.1f} s".format(
            **timings
        )
    )
    return {k: round(v, 2) for k, v in timings.items()}


def write_layout(folder: Path, count: int, flavour: str) -> None:
    text = LAYOUT.format(count=count, flavour=flavour, per=PER_SUBNET)
    (folder / "cluster.xml").write_text(text)


def apply_flavour(folder: Path, flavour: str, count: int, tftp_max: int) -> None:
    from dim.actions import apply as applying
    from dim.actions.context import Context

    write_layout(folder, count, flavour)
    ctx = Context(config=folder / "cluster.xml", state=folder / "state")
    applying.apply(ctx, root=folder / "root", do_reload=False)
    # dim renders dnsmasq's dhcp-lease-max and tftp-max for the nodes (services/limits.py);
    # --tftp-max overrides the second, to compare
    if tftp_max:
        for name in ("dim.conf", "dim-tftp.conf"):
            conf = folder / "root/etc/dnsmasq.d" / name
            if conf.exists():
                lines = [
                    ln for ln in conf.read_text().splitlines() if not ln.startswith("tftp-max=")
                ]
                conf.write_text("\n".join([*lines, f"tftp-max={tftp_max}"]) + "\n")


def export_paths(folder: Path) -> tuple[str, str]:
    """What a node mounts: the image's live tree (below the export of all images) and its
    own replica (below its own export), from the rendered ganesha.conf."""
    text = (folder / "root/etc/ganesha/ganesha.conf").read_text()
    paths = re.findall(r'Pseudo = "([^"]+)"', text)
    images_export = next(p for p in paths if p.endswith("/images"))
    node_export = next(p for p in paths if p.endswith("/nodes/n00001"))
    return f"{images_export}/storm/live", node_export.replace("n00001", "{node}") + "/storm"


# -- the network: the server's namespace and the nodes' ----------------------------------------


@contextlib.contextmanager
def arp_room(count: int):
    """Room for every node in the host's neighbour table (one table for all namespaces; its
    gc_thresh3 is 1024 by default, beyond which the server cannot reach new nodes), raised
    only when the storm needs more, and restored after."""
    names = [Path(f"/proc/sys/net/ipv4/neigh/default/gc_thresh{n}") for n in (2, 3)]
    before = [int(p.read_text()) for p in names]
    wanted = [count + 1024, 2 * count + 2048]
    raise_it = count + 512 > before[1]
    if raise_it:
        for path, value in zip(names, wanted, strict=True):
            path.write_text(f"{value}\n")
    try:
        yield
    finally:
        if raise_it:
            for path, value in reversed(list(zip(names, before, strict=True))):
                path.write_text(f"{value}\n")


@contextlib.contextmanager
def receive_buffers(namespace: str, size: int | None):
    """The server namespace's ``net.core.rmem_default`` and ``rmem_max`` set to ``size``, as
    the sysctl file ``dim apply`` renders for these nodes sets them on a server (None: the
    kernel's). Per namespace since Linux 6.x; on a kernel where they are the host's, the host's
    values are restored after."""
    host = {key: Path("/proc/sys", *key.split(".")).read_text() for key in limits.BUFFER_KEYS}
    if size:
        netns.run(namespace, ["sysctl", "-q", "-w", *(f"{k}={size}" for k in limits.BUFFER_KEYS)])
    try:
        yield
    finally:
        for key, value in host.items():
            path = Path("/proc/sys", *key.split("."))
            if path.read_text() != value:
                path.write_text(value)


def softnet_drops() -> int:
    """Packets dropped for a full per-CPU input queue (netdev_max_backlog; the machine's)."""
    lines = Path("/proc/net/softnet_stat").read_text().splitlines()
    return sum(int(line.split()[1], 16) for line in lines)


def make_network(namespace: str, count: int) -> str:
    clients = f"{namespace}-c"
    for name in (clients, namespace):
        if netns.namespace_exists(name):
            netns.delete_namespace(name)
    netns.add_bridged_namespace(namespace, BRIDGE, f"{SERVER}/16")
    # the lab's router advertisements (dim.lab.daemons) need the bridge's IPv6 address
    netns.ip("-n", namespace, "-6", "addr", "add", "fd77::1/64", "dev", BRIDGE, "nodad")
    netns.add_namespace(clients)
    netns.join_bridge(namespace, BRIDGE, "vstorm", clients, "eth0")
    batch = [f"addr add {RELAY}/16 dev eth0"]
    batch += [f"addr add {node_address(n)}/16 dev eth0" for n in range(1, count + 1)]
    subprocess.run(
        ["ip", "-n", clients, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True
    )
    return clients


def delete_network(namespace: str) -> None:
    for name in (f"{namespace}-c", namespace):
        if netns.namespace_exists(name):
            netns.delete_namespace(name)


# -- daemons: CPU and memory from /proc ---------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                todo += [int(c) for c in children]
    return found


def cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(") ", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def peak_memory_mb(pid: int) -> float:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{member}/status").read_text()
            found = re.search(r"VmHWM:\s+(\d+) kB", status)
            total += int(found.group(1)) if found else 0
    return total / 1024


# -- one storm ----------------------------------------------------------------------------------


def storm(
    folder: Path,
    namespace: str,
    flavour: str,
    boot: str,
    count: int,
    timeout: float,
    *,
    reads: bool = True,
    buffer: int | None = None,
):
    """Fresh daemons, the N nodes started at once from the nodes' namespace, the figures."""
    shutil.rmtree(folder / "run", ignore_errors=True)
    (folder / "lab.json").unlink(missing_ok=True)
    clients = make_network(namespace, count)
    state = LabState(str(folder), namespace, flavour)
    state.save()
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(receive_buffers(namespace, buffer))
        backlog_before = softnet_drops()
        state, started = start_daemons(state)
        daemons = {d.name: d.pid for d in state.daemons if d.name != "ra"}
        time.sleep(1.0)
        cpu_before = {name: cpu_seconds(pid) for name, pid in daemons.items()}
        image_export, node_export = export_paths(folder)
        command = [
            "ip", "netns", "exec", clients, sys.executable, __file__, "_nodes",
            "--count", str(count), "--boot", boot, "--timeout", str(timeout),
            "--image-export", image_export, "--node-export", node_export,
            "--client", str(client_binary(folder)), "--reads-file", str(reads_file(folder, reads)),
        ]  # fmt: skip
        inside = subprocess.run(command, capture_output=True, text=True, check=False)
        if inside.returncode != 0:
            raise SystemExit(f"storm: the nodes' process failed: {inside.stderr[-2000:]}")
        nodes = json.loads(inside.stdout)
        cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in daemons.items()}
        memory = {name: round(peak_memory_mb(pid), 1) for name, pid in daemons.items()}
        alive = {name: Path(f"/proc/{pid}").exists() for name, pid in daemons.items()}
        drops = {"server": kernel_drops(namespace), "nodes": kernel_drops(clients)}
        drops["backlog"] = softnet_drops() - backlog_before
    finally:
        for process in reversed(LabState.load(folder).daemons):
            stop(process.pid)
        stack.close()
        delete_network(namespace)
    return summarise(nodes, boot, count) | {
        "daemon_start_s": started,
        "daemon_cpu_s": cpu,
        "daemon_peak_mb": memory,
        "daemons_kept_running": all(alive.values()),
        "kernel_drops": drops,
        "receive_buffer": buffer,
    }


def start_daemons(state: LabState) -> tuple[LabState, dict]:
    """The lab's daemons (`dim.lab.daemons`), started as ``dim lab up`` starts them, but given
    minutes rather than seconds to listen: ganesha reads one export per node first (more
    than the lab's 15 s for 2,500 exports on a busy machine). Seconds each took to listen."""
    for sub in RUN_FOLDERS:
        (state.folder / "run" / sub).mkdir(parents=True, exist_ok=True)
    (state.folder / "run/dhcpd.leases").touch()  # dhcpd refuses to start without it
    started = {}
    for spec in daemon_specs(state.folder, state.flavour):
        began = time.monotonic()
        process = spawn(state.namespace, spec.name, spec.command, log_path(state.folder, spec.name),
                        spec.binds)  # fmt: skip
        state = state.with_daemon(process)
        state.save()
        if spec.port:
            wait_listening(state.namespace, process, spec.port, udp=spec.udp, timeout=600)
        started[spec.name] = round(time.monotonic() - began, 2)
    return state, started


def kernel_drops(namespace: str) -> dict:
    """Packets the kernel dropped in a namespace: UDP datagrams for a full receive buffer,
    TCP connections for a full listen queue (/proc/net/snmp, /proc/net/netstat)."""
    counters = {}
    for table in ("snmp", "netstat"):
        text = netns.run(namespace, ["cat", f"/proc/net/{table}"]).stdout.splitlines()
        for names, values in zip(text[::2], text[1::2], strict=False):
            prefix = names.split(":")[0]
            counters |= {
                f"{prefix}.{n}": int(v)
                for n, v in zip(names.split()[1:], values.split()[1:], strict=False)
            }
    wanted = ("Udp.RcvbufErrors", "TcpExt.ListenOverflows", "TcpExt.ListenDrops")
    # (packet sockets, which Kea and dhcpd read, count their drops nowhere in /proc)
    return {name: counters.get(name, 0) for name in wanted}


def reads_file(folder: Path, reads: bool) -> Path:
    """The boot reads to replay; without ``reads``, none (the stage ends at the mount)."""
    if reads:
        return folder / "reads.txt"
    empty = folder / "no-reads.txt"
    empty.write_text("")
    return empty


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarise(nodes: dict, boot: str, count: int) -> dict:
    stages = {}
    for stage in STAGES[boot]:
        ends = [n["ends"][stage] for n in nodes["nodes"] if stage in n["ends"]]
        latencies = [n["latency"][stage] for n in nodes["nodes"] if stage in n["latency"]]
        failed = sum(1 for n in nodes["nodes"] if n.get("failed_at") == stage)
        stages[stage] = {
            "through": len(ends),
            "all_through_s": round(max(ends), 2) if len(ends) == count else None,
            "last_s": round(max(ends), 2) if ends else None,
            "median_s": round(statistics.median(latencies), 3) if latencies else None,
            "p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
            "p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
            "max_s": round(max(latencies), 3) if latencies else None,
            "failed": failed,
            "retries": sum(n["retries"].get(stage, 0) for n in nodes["nodes"]),
        }
        if stage.startswith("dhcp"):  # through, but after a real ROM would have given up
            stages[stage]["past_rom"] = sum(1 for n in nodes["nodes"] if n["past_rom"].get(stage))
    errors: dict[str, int] = {}
    for n in nodes["nodes"]:
        if n.get("error"):
            key = re.sub(r"\d+", "N", n["error"])[:160]
            errors[key] = errors.get(key, 0) + 1
    return {
        "nodes": count,
        "failed_nodes": sum(1 for n in nodes["nodes"] if n.get("failed_at")),
        "stages": stages,
        "bytes_per_node": nodes["bytes_per_node"],
        "errors": errors,
        "client_cpu_s": nodes["client_cpu_s"],
        "foreign_export": nodes["foreign_export"],
        "nfs_connections": nodes["nfs_connections"],
    }


def client_binary(folder: Path) -> Path:
    binary = folder / "storm-client"
    source = HERE / "storm_client.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        command = ["cc", "-O2", "-o", str(binary), str(source), "-lnfs", "-ldl"]
        subprocess.run([*command, "-Wl,--export-dynamic"], check=True)
    return binary


# -- the nodes (inside their namespace) --------------------------------------------------------


@dataclass
class Node:
    number: int
    name: str
    mac: str
    address: str
    ends: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    retries: dict = field(default_factory=dict)
    bytes: dict = field(default_factory=dict)
    past_rom: dict = field(default_factory=dict)  # DHCP stage: needed the second round
    failed_at: str = ""
    error: str = ""

    def done(self, stage: str, start: float, began: float, end: float, retries: int = 0):
        self.ends[stage] = end - start
        self.latency[stage] = end - began
        self.retries[stage] = retries


class Failed(Exception):
    pass


class Relay(asyncio.DatagramProtocol):
    """A DHCP relay agent on 10.77.0.2:67: one socket sends every node's DHCP packets with
    giaddr set, and the server answers it, whatever the node's MAC."""

    def __init__(self) -> None:
        self.waiting: dict[int, tuple[asyncio.Future, set[int]]] = {}
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, _address) -> None:
        if len(data) < 240:
            return
        xid = struct.unpack("!I", data[4:8])[0]
        future, types = self.waiting.get(xid, (None, set()))
        if future is not None and not future.done() and parse_reply(data).get("type") in types:
            future.set_result(data)

    def expect(self, xid: int, types: set[int]) -> asyncio.Future:
        """The next answer of one of these message types to transaction ``xid``."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[xid] = (future, types)
        return future

    def send(self, packet: bytes) -> None:
        self.transport.sendto(packet, (SERVER, 67))

    def forget(self, xid: int) -> None:
        self.waiting.pop(xid, None)


PXE_CLASS = b"PXEClient:Arch:00000:UNDI:002001"


def dhcp_packet(mac: str, xid: int, kind: int, ipxe: bool, offer: dict | None = None) -> bytes:
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    header = struct.pack("!BBBBIHH4s4s4s4s", 1, 1, 6, 1, xid, 0, 0, b"\0" * 4, b"\0" * 4,
                         b"\0" * 4, socket.inet_aton(RELAY))  # fmt: skip
    options = [(53, bytes([kind])), (93, b"\0\0"), (94, b"\1\2\1"), (60, PXE_CLASS)]
    options.append((55, bytes([1, 3, 6, 12, 15, 17, 43, 60, 66, 67, 119, 128, 175])))
    if ipxe:  # iPXE's own DHCP: its user class and its feature flags (175)
        options += [(77, b"iPXE"), (175, b"\x13\x01\x01\x15\x01\x01\x10\x01\x02")]
    if offer is not None:
        options += [(50, socket.inet_aton(offer["yiaddr"])), (54, offer["server"])]
    body = b"".join(bytes([code, len(value)]) + value for code, value in options)
    return header + chaddr + b"\0" * 192 + b"\x63\x82\x53\x63" + body + b"\xff"


def parse_reply(data: bytes) -> dict:
    reply = {"yiaddr": socket.inet_ntoa(data[16:20]), "file": data[108:236].split(b"\0")[0]}
    index = 240
    while index < len(data) and data[index] != 255:
        if data[index] == 0:
            index += 1
            continue
        code, length = data[index], data[index + 1]
        value = data[index + 2 : index + 2 + length]
        if code == 53:
            reply["type"] = value[0]
        elif code == 54:
            reply["server"] = value
        elif code == 67:
            reply["file"] = value.rstrip(b"\0")
        index += 2 + length
    reply["file"] = reply["file"].decode(errors="replace")
    return reply


DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6
# Seconds a client waits for an answer before it sends again: a PXE ROM 4, 8, 16, 32 (the PXE
# specification; then it gives up, 60 s after power-on), iPXE 1, 2, 4, 8 (its default,
# config/dhcp.h). The simulator goes on for a second round (a BIOS that tries its boot order
# again), and counts the nodes that needed it: on hardware that does not, they fail.
PXE_WAITS = (4.0, 8.0, 16.0, 32.0)
IPXE_WAITS = (1.0, 2.0, 4.0, 8.0)
ROUNDS = 2


async def dhcp(relay: Relay, node: Node, ipxe: bool) -> tuple[dict, int, bool]:
    """DISCOVER until an OFFER, then REQUEST until an ACK, each sent again after each wait,
    with one transaction id throughout as PXE ROMs and iPXE keep it: a late answer to an
    earlier try counts. The ACK, the retries and whether the first round was not enough."""
    waits = (IPXE_WAITS if ipxe else PXE_WAITS) * ROUNDS
    xid = random.getrandbits(32)
    packet, answer = dhcp_packet(node.mac, xid, DISCOVER, ipxe), relay.expect(xid, {OFFER})
    retries, sent, past_rom = 0, 0, False
    try:
        while sent < len(waits):
            relay.send(packet)
            base = waits[sent]
            sent += 1
            wait = base + random.uniform(-1.0, 1.0) * min(1.0, base / 4)  # RFC 2131 4.1: spread
            try:
                data = await asyncio.wait_for(asyncio.shield(answer), wait)
            except TimeoutError:
                retries += 1
                past_rom |= sent >= len(waits) // ROUNDS
                continue
            reply = parse_reply(data)
            if reply["type"] == OFFER:
                packet = dhcp_packet(node.mac, xid, REQUEST, ipxe, reply)
                answer, sent = relay.expect(xid, {ACK, NAK}), 0
                continue
            if reply["type"] == NAK:
                raise Failed("DHCP NAK")
            if reply["yiaddr"] != node.address:
                raise Failed(f"DHCP gave {reply['yiaddr']}, not {node.address}")
            return reply, retries, past_rom
    finally:
        relay.forget(xid)
    raise Failed(f"no DHCP answer after {retries} tries")


class Client:
    """The C client (TFTP, NFS): tasks in on stdin, one line per finished stage out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: dict[tuple[str, str], asyncio.Future] = {}

    async def read(self) -> None:
        async for line in self.process.stdout:
            stage, ident, status, moment, count, retries, *error = line.decode().split(" ", 6)
            future = self.waiting.pop((stage, ident), None)
            if future is not None and not future.done():
                future.set_result((status, float(moment), int(count), int(retries), error))

    def expect(self, stage: str, ident: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiting[(stage, ident)] = future
        return future

    def send(self, line: str) -> None:
        self.process.stdin.write(line.encode() + b"\n")


async def tftp(client: Client, node: Node, files: list[str]) -> tuple[float, int, int]:
    result = client.expect("tftp", node.name)
    client.send(f"tftp {node.name} {node.address} {' '.join(files)}")
    status, moment, count, retries, error = await result
    if status != "ok":
        raise Failed(f"TFTP {' '.join(files)}: {''.join(error).strip()}")
    return moment, count, retries


async def http_get(session, url: str) -> tuple[bytes | int, int]:
    """A script's text, or a file's length (read to the end, not kept)."""
    async with session.get(url) as response:
        if response.status != 200:
            raise Failed(f"HTTP {response.status} for {url}")
        if url.endswith(".ipxe"):
            return await response.read(), 0
        total = 0
        while chunk := await response.content.readany():
            total += len(chunk)
        return total, 0


async def boot(node: Node, start: float, args, relay: Relay, client: Client) -> None:
    import aiohttp

    stage, began = "dhcp", start
    try:
        reply, retries, node.past_rom["dhcp"] = await dhcp(relay, node, ipxe=False)
        if not reply["file"]:
            raise Failed("DHCP named no loader")
        began = node_done(node, stage, start, began, retries)
        stage = "loader"
        _, size, retries = await tftp(client, node, [reply["file"]])
        node.bytes["loader"] = size
        began = node_done(node, stage, start, began, retries)
        if args.boot == "tftp":
            stage = "script"
            config = "pxelinux.cfg/01-" + node.mac.replace(":", "-")
            _, size, retries = await tftp(client, node, [config])
            began = node_done(node, stage, start, began, retries)
            stage = "kernel"
            files = ["dim/images/storm/vmlinuz", "dim/images/storm/initrd.img"]
            _, size, retries = await tftp(client, node, files)
            node.bytes["kernel"] = size
            began = node_done(node, stage, start, began, retries)
        else:
            stage = "dhcp2"
            reply, retries, node.past_rom["dhcp2"] = await dhcp(relay, node, ipxe=True)
            if not reply["file"].endswith("boot.ipxe"):
                raise Failed(f"iPXE's DHCP named {reply['file']!r}, not boot.ipxe")
            began = node_done(node, stage, start, began, retries)
            stage = "script"
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60)
            connector = aiohttp.TCPConnector(local_addr=(node.address, 0), limit=1)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                entry, _ = await http_get(session, reply["file"])
                base = reply["file"].rsplit("/", 1)[0]
                own, _ = await http_get(
                    session, f"{base}/dim/nodes/{node.mac.replace(':', '-')}.ipxe"
                )
                urls = re.findall(r"^(?:kernel|initrd)(?: --name \S+)? (\S+)", own.decode(), re.M)
                if len(urls) != 2 or b"chain" not in entry:
                    raise Failed(f"unexpected iPXE scripts: {own[:200]!r}")
                began = node_done(node, stage, start, began, 0)
                stage = "kernel"
                sizes = [(await http_get(session, url))[0] for url in urls]
                node.bytes["kernel"] = sum(sizes)
                began = node_done(node, stage, start, began, 0)
        stage = "mount"
        mounted = client.expect("mount", node.name)
        read = client.expect("reads", node.name)
        own_export = args.node_export.format(node=node.name)
        client.send(f"nfs {node.name} {node.address} {args.image_export} {own_export}")
        status, moment, _, retries, error = await mounted
        if status != "ok":
            raise Failed(f"NFS mount: {''.join(error).strip()}")
        node.done(stage, start, began, moment, retries)
        began, stage = moment, "reads"
        status, moment, size, _, error = await read
        if status != "ok":
            raise Failed(f"NFS boot reads: {''.join(error).strip()}")
        node.bytes["reads"] = size
        node.done(stage, start, began, moment)
    except Failed as exc:
        node.failed_at, node.error = stage, str(exc)
    except (TimeoutError, OSError, aiohttp.ClientError) as exc:
        node.failed_at, node.error = stage, f"{type(exc).__name__}: {exc}"


def nfs_connections() -> int:
    """The nodes' TCP connections to ganesha (port 2049) open now, from /proc/net/tcp (this
    namespace's): one per mounted node, as a kernel client holds."""
    server = "{:08X}:0801".format(struct.unpack("<I", socket.inet_aton(SERVER))[0])
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[2] == server and line.split()[3] == "01")


async def foreign_export(client: Client, args) -> str:
    """What ganesha answers when node 2's address mounts node 1's read-write export (before
    the storm): the proof that the nodes' mounts exercise the per-node access rules. Its error,
    or "mounted" (a wrong rendering)."""
    if args.count < 2:
        return ""
    mounted = client.expect("mount", "probe")
    export = args.node_export.format(node=node_name(1))
    client.send(f"nfs probe {node_address(2)} {args.image_export} {export}")
    status, _, _, _, error = await mounted
    return "mounted" if status == "ok" else "".join(error).strip()


def node_done(node: Node, stage: str, start: float, began: float, retries: int) -> float:
    end = time.monotonic()
    node.done(stage, start, began, end, retries)
    return end


async def run_nodes(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: a burst of replies
    sock.bind((RELAY, 67))
    _, relay = await loop.create_datagram_endpoint(Relay, sock=sock)
    process = await asyncio.create_subprocess_exec(
        args.client, SERVER, args.reads_file,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20,
    )  # fmt: skip
    client = Client(process)
    reader = asyncio.create_task(client.read())
    nodes = [Node(n, node_name(n), node_mac(n), node_address(n)) for n in range(1, args.count + 1)]
    foreign = await foreign_export(client, args)
    cpu_before = os.times()
    start = time.monotonic()
    tasks = [asyncio.create_task(boot(n, start, args, relay, client)) for n in nodes]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for task in pending:
        task.cancel()
    for node in nodes:
        if not node.failed_at and "reads" not in node.ends:
            node.failed_at = next(s for s in STAGES[args.boot] if s not in node.ends)
            node.error = f"not through after {args.timeout:.0f} s"
    connections = nfs_connections()
    process.stdin.close()
    process.kill()
    await process.wait()
    reader.cancel()
    cpu_after = os.times()
    finished = [n for n in nodes if not n.failed_at]
    per_node = {}
    for key in ("loader", "kernel", "reads"):
        sizes = [n.bytes[key] for n in finished if key in n.bytes]
        per_node[key] = int(statistics.median(sizes)) if sizes else 0
    return {
        "nodes": [
            {
                "ends": n.ends,
                "latency": n.latency,
                "retries": n.retries,
                "past_rom": n.past_rom,
                "failed_at": n.failed_at,
                "error": n.error,
            }
            for n in nodes
        ],  # fmt: skip
        "bytes_per_node": per_node,
        "foreign_export": foreign,
        "nfs_connections": connections,
        "client_cpu_s": round(
            sum(cpu_after[:4]) - sum(cpu_before[:4]), 1
        ),  # this process and the C client (its child, waited for)
    }


def nodes_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    for option in ("--boot", "--image-export", "--node-export", "--client", "--reads-file"):
        parser.add_argument(option, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run_nodes(args))))


# -- the report ---------------------------------------------------------------------------------

GBE10 = 10e9 / 8  # bytes per second


def physical_bound(result: dict) -> float:
    """Seconds a 10 GbE link needs for the bytes of all nodes (DHCP's few hundred bytes
    aside): loader, kernel and initrd, boot reads."""
    per_node = sum(result["bytes_per_node"].values())
    return per_node * result["nodes"] / GBE10


def print_table(results: list[dict]) -> None:
    for result in results:
        head = f"{result['dhcp']:8} {result['boot']:5} {result['nodes']:6} nodes"
        print(
            f"{head}: failed {result['failed_nodes']}, daemons kept running "
            f"{result['daemons_kept_running']}, 10 GbE bound {physical_bound(result):.1f} s"
        )
        for stage, figures in result["stages"].items():
            print(
                f"    {stage:7} all through {figures['all_through_s']} s  median "
                f"{figures['median_s']}  p95 {figures['p95_s']}  p99 {figures['p99_s']}  max "
                f"{figures['max_s']}  failed {figures['failed']}  retries {figures['retries']}"
                + (f"  past the ROM's tries {figures['past_rom']}" if "past_rom" in figures else "")
            )
        print(f"    daemon CPU s {result['daemon_cpu_s']}  peak MB {result['daemon_peak_mb']}")
        print(f"    client CPU s {result['client_cpu_s']}  kernel drops {result['kernel_drops']}")
        print(f"    server receive buffer {result['receive_buffer'] or 'kernel default'}")
        print(f"    daemons listening after (s) {result['daemon_start_s']}")
        print(f"    node 2 mounting node 1's export: {result['foreign_export']}")
        print(f"    NFS connections open at the end: {result['nfs_connections']}")
        if result["errors"]:
            print(f"    errors {result['errors']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_nodes":
        nodes_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="500,2500")
    parser.add_argument("--dhcp", default="dnsmasq,kea,isc")
    parser.add_argument("--boot", default="http,tftp")
    parser.add_argument("--reads", type=Path, default=HERE / "data/boot-reads-debian12.txt")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/dst-storm"))
    parser.add_argument("--namespace", default="dststorm")
    parser.add_argument(
        "--tftp-max", type=int, default=0, help="dnsmasq's tftp-max (0: what dim renders)"
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--skip-reads",
        action="store_true",
        help="no boot reads (ganesha's part, the same for every DHCP flavour): the storm "
        "through DHCP, boot files and NFS mounts only",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="the set-up of an earlier run of as many nodes"
    )
    parser.add_argument(
        "--receive-buffer",
        choices=("dim", "kernel"),
        default="dim",
        help="the server's net.core.rmem_default/rmem_max: what dim renders for N nodes, or "
        "the kernel's default",
    )
    args = parser.parse_args()
    results = []
    for count in (int(n) for n in args.nodes.split(",")):
        with arp_room(count):
            layout = args.dir / "cluster.xml"
            if args.reuse and layout.exists() and f"n[00001-{count:05}]" in layout.read_text():
                setup = {"reused": True}
            else:
                setup = set_up(args.dir, count, args.reads)
            client_binary(args.dir)
            for flavour in args.dhcp.split(","):
                apply_flavour(args.dir, flavour, count, args.tftp_max)
                for boot_path in args.boot.split(","):
                    say(f"storm: {count} nodes, {flavour}, {boot_path}")
                    result = storm(
                        args.dir,
                        args.namespace,
                        flavour,
                        boot_path,
                        count,
                        args.timeout,
                        reads=not args.skip_reads,
                        buffer=limits.receive_buffer(count)
                        if args.receive_buffer == "dim"
                        else None,
                    )
                    result |= {"dhcp": flavour, "boot": boot_path, "setup_s": setup}
                    result["reads"] = not args.skip_reads
                    results.append(result)
                    print_table([result])
                    sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
