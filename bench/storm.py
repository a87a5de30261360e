"""Benchmark: a boot storm. N virtual nodes power on at the same moment against one image
server's real daemons, each doing what a network-booting node does (issue 14).

Run by hand, as root, never as a test (minutes at 2,500 nodes)::

    .venv/bin/python bench/storm.py [--nodes 500,2500] [--dhcp dnsmasq,kea,isc]
                                    [--boot http,tftp] [--reads bench/data/boot-reads-debian12.txt]
                                    [--dir /var/tmp/dst-storm] [--namespace dststorm]
                                    [--tftp-max N] [--json FILE] [--reuse] [--skip-reads]
                                    [--receive-buffer dim|kernel] [--timeout S]
                                    [--http-workers K] [--tftp-nfs-workers K]
                                    [--ganesha-root TREE] [--ganesha-option BLOCK.Name=Value]

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
   answers relayed requests); the ACK must give the node's address and a loader. Sent again
   after 4, 8, 16, 32 s as the PXE specification times it (iPXE below: 1, 2, 4, 8 s), with
   one transaction id per exchange as ROMs keep it (a late answer counts), in a process
   of its own; then a second round, as a BIOS that tries its boot order again: the nodes
   that needed it (a ROM alone gives up after 60 s) are counted, ``past the ROM's tries``;
2. ``loader``: that loader (``undionly.kpxe``) over TFTP, as the ROM fetches it;
3. boot path ``http`` (iPXE): ``dhcp2``, the iPXE DHCP (user class iPXE, option 175), which must
   name dim serve's ``boot.ipxe``; ``script``: ``boot.ipxe`` and the node's own script over
   HTTP (aiohttp, one keep-alive connection per node from its own address, as iPXE; the
   nodes spread over ``--http-workers`` processes, node N to worker N mod K);
   ``kernel``: kernel and initrd named by that script, from ``dim serve``;
   boot path ``tftp`` (PXELINUX): ``script``: ``pxelinux.cfg/01-<mac>`` over TFTP;
   ``kernel``: kernel and initrd over TFTP (``<tftp-root>/dim/images/storm/…``);
4. ``mount``: the image's read-only export and the node's own read-write export, NFSv4 (libnfs:
   one TCP connection per node from its own address, as a kernel client holds one per server;
   ganesha's pseudo-root mounted, each export's root looked up, ganesha admitting a node to
   its own export only: before the storm, node 2's address is shown to be refused node 1's;
   a mount refused ``NFS4ERR_STALE_CLIENTID`` starts again on a new connection, a retry, as
   a kernel client establishes its client ID again; so does one failed with no error text,
   as dim's init.sh tries a mount again; a node renews its NFSv4.0 lease by an OPEN and
   CLOSE of an image file when it sent nothing stateful for 2.5 s, libnfs sending no RENEW);
5. ``reads``: the files a booting Debian 12 reads (``--reads``, recorded from a lab boot),
   replayed: READ of the bytes recorded, READDIR, READLINK, one after the other.

TFTP and NFS run in `bench/storm_client.c` (compiled here with cc and libnfs-dev: Python's
per-packet cost would make the client the bottleneck), ``--tftp-nfs-workers`` processes of it
(node N to process N mod K, as the HTTP workers: one process for 10,000 nodes' NFS did not
renew their leases in time on a loaded machine), DHCP and HTTP in Python. The modules
beside this one: ``storm_setup`` (the server, by dim), ``storm_network`` (namespaces, kernel
settings and drops), ``storm_daemons`` (started, CPU, memory), ``storm_nodes`` (run inside the
nodes' namespace), ``storm_dhcp`` (a ROM's and iPXE's DHCP), ``storm_http`` (the HTTP worker
processes), ``storm_workers`` (a pool of client processes), ``storm_report`` (the figures),
``storm_cluster`` (addresses, names, stages). Reported per storm and stage: seconds until
all N nodes are through (from the common start), per-node latency of the stage (median, p95,
p99, max), failures and retries; per daemon, CPU seconds used during the storm and peak
memory (VmHWM summed over its processes, from /proc); whether every daemon still runs with
the process id it started with (no restart); the simulator's CPU seconds per process (its
nodes' process, its DHCP, each C client, each HTTP worker) and how late each one's loop ran at
worst, to tell a starved simulator from a server at fault. The physical bound of a 10 GbE
server, from the bytes per node, is printed next to it.

Limits: dnsmasq's ``dhcp-lease-max`` and ``tftp-max`` are what ``dim apply`` renders for N
nodes (2N each, tftp-max up to 20,000; ``--tftp-max`` overrides it). Bench-only: the host's ARP
table thresholds are raised to hold every node's entry when the storm needs it, and restored
(the namespaces share the host's table; ``dim apply`` writes a sysctl.d file for the server's
own machine). ganesha's ``RPC_Max_Connections`` is dim's (2N, at most 10,000): the simulator
holds one connection per node, so 10,000 nodes fit. ``net.core.rmem_default`` is what dim
renders for N nodes (``--receive-buffer kernel``: left as it is, to compare), set on the host
for the storm (namespaces read the host's) and restored. dnsmasq runs without the lab's
``--log-dhcp`` (a log line per packet option), as dim's configuration runs it.
Bench-only, to measure ganesha itself (`storm_ganesha`): ``--ganesha-root`` runs another
release of ganesha from a Debian tree (chroot) on dim's rendered configuration unchanged;
``--ganesha-option`` (repeated) changes one setting of that configuration, to measure it.
``--reuse`` skips the set-up when the folder holds one for as many nodes. Everything started
is stopped by process id and both namespaces are deleted at the end; the C client dies with
the bench.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from storm_cluster import say, stages  # noqa: E402
from storm_daemons import cpu_seconds, peak_memory_mb, start_daemons  # noqa: E402
from storm_ganesha import set_options  # noqa: E402
from storm_network import (  # noqa: E402
    arp_room,
    delete_network,
    kernel_drops,
    make_network,
    receive_buffer,
    softnet_drops,
)
from storm_report import print_table, summarise  # noqa: E402
from storm_setup import apply_flavour, client_binary, export_paths, reads_file, set_up  # noqa: E402

from dim.lab import netns  # noqa: E402
from dim.lab.processes import stop  # noqa: E402
from dim.lab.state import LabState  # noqa: E402
from dim.services import limits  # noqa: E402


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
    until: str = "reads",
    ganesha_root: Path | None = None,
    http_workers: int = 4,
    tftp_nfs_workers: int = 4,
):
    """Fresh daemons, the N nodes started at once from the nodes' namespace, the figures."""
    shutil.rmtree(folder / "run", ignore_errors=True)
    (folder / "lab.json").unlink(missing_ok=True)
    clients = make_network(namespace, count)
    state = LabState(str(folder), namespace, flavour)
    state.save()
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(receive_buffer(buffer))
        # what the server's sockets get by default, read where they live
        rmem = netns.run(namespace, ["cat", "/proc/sys/net/core/rmem_default"]).stdout.strip()
        backlog_before = softnet_drops()
        nfs = "mount" in stages(boot, until)
        without = frozenset() if nfs else frozenset({"ganesha"})
        state, started = start_daemons(state, without, ganesha_root)
        daemons = {d.name: d.pid for d in state.daemons if d.name != "ra"}
        time.sleep(1.0)
        cpu_before = {name: cpu_seconds(pid) for name, pid in daemons.items()}
        image_export, node_export = export_paths(folder)
        command = [
            "ip", "netns", "exec", clients, sys.executable, str(HERE / "storm_nodes.py"),
            "--count", str(count), "--boot", boot, "--timeout", str(timeout),
            "--image-export", image_export, "--node-export", node_export,
            "--client", str(client_binary(folder)), "--reads-file", str(reads_file(folder, reads)),
            "--until", until, "--http-workers", str(http_workers),
            "--tftp-nfs-workers", str(tftp_nfs_workers),
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
    return summarise(nodes, boot, count, until) | {
        "daemon_start_s": started,
        "daemon_cpu_s": cpu,
        "daemon_peak_mb": memory,
        "daemons_kept_running": all(alive.values()),
        "kernel_drops": drops,
        "receive_buffer": int(rmem),
    }


def main() -> None:
    # stopped by its process id (a background job ignores SIGINT): daemons, namespaces and
    # the machine's settings are put back by the finally clauses all the same
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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
    parser.add_argument(
        "--http-workers",
        type=int,
        default=4,
        help="processes of the nodes' HTTP clients (one could not read 10,000 nodes' files)",
    )
    parser.add_argument(
        "--tftp-nfs-workers",
        type=int,
        default=4,
        help="processes of the nodes' TFTP and NFS clients (one could not renew 10,000 "
        "nodes' NFS leases in time)",
    )
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
        "--until",
        default="reads",
        help="the last stage of each node (e.g. script: no kernel, no NFS, ganesha not started)",
    )
    parser.add_argument(
        "--receive-buffer",
        choices=("dim", "kernel"),
        default="dim",
        help="the server's net.core.rmem_default: what dim renders for N nodes, or "
        "the kernel's default",
    )
    parser.add_argument(
        "--ganesha-root",
        type=Path,
        help="run ganesha.nfsd from this tree (chroot), e.g. Debian 13's ganesha 6",
    )
    parser.add_argument(
        "--ganesha-option",
        action="append",
        default=[],
        help="BLOCK.Name=Value set in the rendered ganesha.conf (repeatable), to measure it",
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
                for boot_path in args.boot.split(","):
                    apply_flavour(args.dir, flavour, count, args.tftp_max, boot_path)
                    conf = args.dir / "root/etc/ganesha/ganesha.conf"
                    conf.write_text(set_options(conf.read_text(), args.ganesha_option))
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
                        until=args.until,
                        ganesha_root=args.ganesha_root,
                        http_workers=args.http_workers,
                        tftp_nfs_workers=args.tftp_nfs_workers,
                    )
                    result |= {"dhcp": flavour, "boot": boot_path, "setup_s": setup}
                    result["ganesha"] = {
                        "root": str(args.ganesha_root or "/"),
                        "options": args.ganesha_option,
                    }
                    result["reads"] = not args.skip_reads
                    results.append(result)
                    print_table([result])
                    sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
