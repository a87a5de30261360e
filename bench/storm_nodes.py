"""The boot storm's nodes (bench/storm.py runs this inside the nodes' namespace): every node
started at once, each through the stages of its boot; JSON of what each did on stdout::

    python bench/storm_nodes.py --count N --boot http|tftp --timeout S --image-export PATH \\
        --node-export PATH --client BINARY --reads-file FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

from storm_cluster import SERVER, Failed, Node, node_address, node_mac, node_name, stages
from storm_dhcp import DhcpThread


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


async def boot(node: Node, start: float, args, dhcps: DhcpThread, client: Client) -> None:
    import aiohttp

    def passed(stage: str, began: float, retries: int) -> float:
        end = node_done(node, stage, start, began, retries)
        if stage == args.until:
            raise Through
        return end

    stage, began = "dhcp", start
    try:
        reply, retries, node.past_rom["dhcp"] = await dhcps.dhcp(node, ipxe=False)
        if not reply["file"]:
            raise Failed("DHCP named no loader")
        began = passed(stage, began, retries)
        stage = "loader"
        _, size, retries = await tftp(client, node, [reply["file"]])
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
            reply, retries, node.past_rom["dhcp2"] = await dhcps.dhcp(node, ipxe=True)
            if not reply["file"].endswith("boot.ipxe"):
                raise Failed(f"iPXE's DHCP named {reply['file']!r}, not boot.ipxe")
            began = passed(stage, began, retries)
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
                began = passed(stage, began, 0)
                stage = "kernel"
                sizes = [(await http_get(session, url))[0] for url in urls]
                node.bytes["kernel"] = sum(sizes)
                began = passed(stage, began, 0)
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
    except Through:
        pass
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


class Through(Exception):
    """The node is through the last stage asked for (``--until``)."""


def node_done(node: Node, stage: str, start: float, began: float, retries: int) -> float:
    end = time.monotonic()
    node.done(stage, start, began, end, retries)
    return end


async def run_nodes(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    dhcps = DhcpThread()
    process = await asyncio.create_subprocess_exec(
        args.client, SERVER, args.reads_file,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20,
    )  # fmt: skip
    client = Client(process)
    reader = asyncio.create_task(client.read())
    nodes = [Node(n, node_name(n), node_mac(n), node_address(n)) for n in range(1, args.count + 1)]
    nfs = "mount" in stages(args.boot, args.until)
    foreign = await foreign_export(client, args) if nfs else "not asked (no NFS)"
    cpu_before = os.times()
    start = time.monotonic()
    tasks = [asyncio.create_task(boot(n, start, args, dhcps, client)) for n in nodes]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for task in pending:
        task.cancel()
    for node in nodes:
        if not node.failed_at and args.until not in node.ends:
            node.failed_at = next(s for s in stages(args.boot, args.until) if s not in node.ends)
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
    parser.add_argument("--until", default="reads")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run_nodes(args))))


if __name__ == "__main__":
    nodes_main(sys.argv[1:])
