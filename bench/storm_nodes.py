"""The boot storm's nodes (bench/storm.py runs this inside the nodes' namespace): every node
started at once, each through the stages of its boot; JSON of what each did on stdout::

    python bench/storm_nodes.py --count N --boot http|tftp --timeout S --image-export PATH \\
        --node-export PATH --client BINARY --reads-file FILE [--http-workers K] \\
        [--tftp-nfs-workers K]

This process runs each node's stages and records them; the work is elsewhere: DHCP in a
process of its own (`storm_dhcp`), TFTP and NFS in K processes of the C client, HTTP in K
worker processes (`storm_http`), node N given to process N mod K of each pool
(`storm_workers`). Each of these reports its CPU seconds and how late its loop ran at worst:
a simulator that cannot keep up shows there, not as the server's fault.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

from storm_cluster import SERVER, Failed, Node, node_address, node_mac, node_name, stages
from storm_http import Fetched, watch_lag
from storm_workers import WorkerPool


def client_answer(line: str) -> tuple[tuple[str, str], tuple]:
    """A line of the C client: ``STAGE ID ok|fail T COUNT RETRIES [error]``, keyed by stage
    and node."""
    stage, ident, status, moment, count, retries, *error = line.split(" ", 6)
    return (stage, ident), (status, float(moment), int(count), int(retries), error)


def dhcp_answer(line: str) -> tuple[tuple[str, str], tuple[str, int, bool]]:
    """A line of the DHCP process: ``NAME pxe|ipxe ok RETRIES PAST_ROM FILE`` or ``NAME
    pxe|ipxe fail RETRIES ERROR``, keyed by node and kind; its value is the loader named
    (``-`` for none), the retries and whether the ROM's own tries were not enough."""
    name, kind, status, retries, rest = line.split(" ", 4)
    if status != "ok":
        return (name, kind), (Failed(rest), int(retries), False)
    past_rom, loader = rest.split(" ", 1)
    return (name, kind), ("" if loader == "-" else loader, int(retries), past_rom == "1")


async def dhcp(dhcps: WorkerPool, node: Node, ipxe: bool) -> tuple[str, int, bool]:
    """The loader a node's DHCP names (`storm_dhcp.dhcp`, in the DHCP process), its retries
    and whether it needed the BIOS's second round."""
    kind = "ipxe" if ipxe else "pxe"
    answer = dhcps.expect(node.number, (node.name, kind))
    dhcps.send(node.number, f"{node.name} {node.mac} {node.address} {kind}")
    loader, retries, past_rom = await answer
    if isinstance(loader, Failed):
        raise loader
    return loader, retries, past_rom


def http_answer(line: str) -> tuple[str, Fetched]:
    """A line of an HTTP worker: ``NAME SCRIPT_END KERNEL_END BYTES ERROR``, keyed by node."""
    name, *fields = line.split(" ", 4)
    return name, Fetched.parse(fields)


async def tftp(client: WorkerPool, node: Node, files: list[str]) -> tuple[float, int, int]:
    result = client.expect(node.number, ("tftp", node.name))
    client.send(node.number, f"tftp {node.name} {node.address} {' '.join(files)}")
    status, moment, count, retries, error = await result
    if status != "ok":
        raise Failed(f"TFTP {' '.join(files)}: {''.join(error).strip()}")
    return moment, count, retries


async def fetch(http: WorkerPool, node: Node, url: str, last: str) -> Fetched:
    """iPXE's fetches for one node (`storm_http.fetch`), by its HTTP worker."""
    fetched = http.expect(node.number, node.name)
    http.send(node.number, f"{node.name} {node.address} {node.mac} {url} {last}")
    return await fetched


async def boot(
    node: Node, start: float, args, dhcps: WorkerPool, client: WorkerPool, http: WorkerPool
) -> None:
    def passed(stage: str, began: float, retries: int, end: float | None = None) -> float:
        end = time.monotonic() if end is None else end
        node.done(stage, start, began, end, retries)
        if stage == args.until:
            raise Through
        return end

    stage, began = "dhcp", start
    try:
        loader, retries, node.past_rom["dhcp"] = await dhcp(dhcps, node, ipxe=False)
        if not loader:
            raise Failed("DHCP named no loader")
        began = passed(stage, began, retries)
        stage = "loader"
        _, size, retries = await tftp(client, node, [loader])
        node.bytes["loader"] = size
        began = passed(stage, began, retries)
        if args.boot == "tftp":
            stage = "script"
            config = "pxelinux.cfg/01-" + node.mac.replace(":", "-")
            _, size, retries = await tftp(client, node, [config])
            began = passed(stage, began, retries)
            stage = "kernel"
            files = ["dim/images/storm/vmlinuz", "dim/images/storm/initrd.img"]
            _, size, retries = await tftp(client, node, files)
            node.bytes["kernel"] = size
            began = passed(stage, began, retries)
        else:
            stage = "dhcp2"
            script, retries, node.past_rom["dhcp2"] = await dhcp(dhcps, node, ipxe=True)
            if not script.endswith("boot.ipxe"):
                raise Failed(f"iPXE's DHCP named {script!r}, not boot.ipxe")
            began = passed(stage, began, retries)
            stage = "script"
            last = "script" if args.until == "script" else "kernel"
            fetched = await fetch(http, node, script, last)
            if fetched.script_end is None:
                raise Failed(fetched.error)
            began = passed(stage, began, 0, fetched.script_end)
            stage = "kernel"
            if fetched.kernel_end is None:
                raise Failed(fetched.error)
            node.bytes["kernel"] = fetched.size
            began = passed(stage, began, 0, fetched.kernel_end)
        stage = "mount"
        mounted = client.expect(node.number, ("mount", node.name))
        read = client.expect(node.number, ("reads", node.name))
        own_export = args.node_export.format(node=node.name)
        client.send(node.number, f"nfs {node.name} {node.address} {args.image_export} {own_export}")
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
    except Through:
        pass
    except Failed as exc:
        node.failed_at, node.error = stage, str(exc)
    except (TimeoutError, OSError) as exc:
        node.failed_at, node.error = stage, f"{type(exc).__name__}: {exc}"


def nfs_connections() -> int:
    """The nodes' TCP connections to ganesha (port 2049) open now, from /proc/net/tcp (this
    namespace's): one per mounted node, as a kernel client holds."""
    server = "{:08X}:0801".format(struct.unpack("<I", socket.inet_aton(SERVER))[0])
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[2] == server and line.split()[3] == "01")


async def foreign_export(client: WorkerPool, args) -> str:
    """What ganesha answers when node 2's address mounts node 1's read-write export (before
    the storm): the proof that the nodes' mounts exercise the per-node access rules. Its error,
    or "mounted" (a wrong rendering)."""
    if args.count < 2:
        return ""
    mounted = client.expect(2, ("mount", "probe"))
    export = args.node_export.format(node=node_name(1))
    client.send(2, f"nfs probe {node_address(2)} {args.image_export} {export}")
    status, _, _, _, error = await mounted
    return "mounted" if status == "ok" else "".join(error).strip()


class Through(Exception):
    """The node is through the last stage asked for (``--until``)."""


DHCP_NICE = -10
# The TFTP, NFS and HTTP clients, ahead of the daemons too but behind DHCP: their loops ran
# 10 to 15 s late in that storm, and 1,067 nodes' NFS leases (15 s) expired during the reads.
CLIENT_NICE = -5


async def run_nodes(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A real node's firmware and iPXE answer DHCP on a CPU of their own; here one process
    # does for every node, and on a machine saturated by the daemons and the other clients it
    # read its socket seconds late (9,990 nodes on a quiet machine: 59,223 replies dropped
    # on its full receive buffer, 5,818 nodes failed iPXE's DHCP while Kea dropped none).
    dhcps = await WorkerPool.start(
        [sys.executable, str(Path(__file__).with_name("storm_dhcp.py"))], 1, dhcp_answer, "DHCP",
        nice=DHCP_NICE,
    )  # fmt: skip
    client = await WorkerPool.start(
        [args.client, SERVER, args.reads_file], args.tftp_nfs_workers, client_answer,
        "TFTP and NFS client", nice=CLIENT_NICE,
    )  # fmt: skip
    nodes = [Node(n, node_name(n), node_mac(n), node_address(n)) for n in range(1, args.count + 1)]
    nfs = "mount" in stages(args.boot, args.until)
    foreign = await foreign_export(client, args) if nfs else "not asked (no NFS)"
    http = await WorkerPool.start(
        [sys.executable, str(Path(__file__).with_name("storm_http.py"))],
        args.http_workers if args.boot == "http" else 0, http_answer, "HTTP worker",
        nice=CLIENT_NICE,
    )  # fmt: skip
    longest_lag = [0.0]
    watcher = asyncio.create_task(watch_lag(longest_lag))
    cpu_before = os.times()
    start = time.monotonic()
    tasks = [asyncio.create_task(boot(n, start, args, dhcps, client, http)) for n in nodes]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for task in pending:
        task.cancel()
    for node in nodes:
        if not node.failed_at and args.until not in node.ends:
            node.failed_at = next(s for s in stages(args.boot, args.until) if s not in node.ends)
            node.error = f"not through after {args.timeout:.0f} s"
    connections = nfs_connections()
    watcher.cancel()
    dhcp_figures = await dhcps.stop()
    client_figures = await client.stop()
    http_figures = await http.stop()
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
        # this process, the C clients and the HTTP workers (its children, waited for)
        "client_cpu_s": round(sum(cpu_after[:4]) - sum(cpu_before[:4]), 1),
        "client_processes": {
            "nodes": {
                "cpu_s": round(sum(cpu_after[:2]) - sum(cpu_before[:2]), 1),
                "loop_lag_max_s": round(longest_lag[0], 3),
            },
            "dhcp": dhcp_figures,
            "tftp_nfs": client_figures,
            "http": http_figures,
        },
    }


def nodes_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    for option in ("--boot", "--image-export", "--node-export", "--client", "--reads-file"):
        parser.add_argument(option, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--until", default="reads")
    parser.add_argument("--http-workers", type=int, default=4)
    parser.add_argument("--tftp-nfs-workers", type=int, default=4)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run_nodes(args))))


if __name__ == "__main__":
    nodes_main(sys.argv[1:])
