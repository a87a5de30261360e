"""Benchmark: ``dim serve`` delivering kernel and initrd to many HTTP clients at once, against
``busybox httpd`` and nginx serving the same files, side by side in the same run.

Run by hand, as root, never as a test::

    .venv/bin/python bench/serve.py [--clients 200] [--seconds 10] [--repeat 3] [--nodes 200]
                                    [--kernel-mb 8] [--initrd-mb 4] [--servers busybox httpd,nginx]
                                    [--nginx-workers auto] [--client wrk|aiohttp] [--pin]
                                    [--baseline SRC]

One boot build (``vmlinuz`` of ``--kernel-mb``, ``initrd.img`` of ``--initrd-mb``, random
bytes) is made in a temporary state folder and hard-linked under a temporary http-root at the
same paths, so that every server answers the same URLs with the same files. Two parts:

1. kernel and initrd: ``/dim/images/bench/1/vmlinuz`` and ``…/initrd.img``, requested in turn;
2. node scripts: ``/dim/nodes/<mac>.ipxe`` of ``--nodes`` nodes in turn. dim serve answers them
   from the state DB and records each as a boot; the others serve static copies of what dim
   answered (what ``dim apply`` would have rendered), so this part shows what answering at
   boot time costs.

Servers, each on a free port of 127.0.0.1, one at a time:

- ``dim serve`` with its default workers (one per core), its request log to a file;
- with ``--baseline SRC``, the same from the dim source tree in SRC (before/after a change);
- ``busybox httpd -f`` (a process per connection);
- nginx (``apt-get install nginx-light``; a temporary config, ``sendfile on``, access log to a
  file, ``worker_processes`` = ``--nginx-workers``, default ``auto``: one per core).

The load generator is ``wrk`` (Debian package wrk) with ``--clients`` connections on 2 threads;
without wrk, ``--client aiohttp`` runs aiohttp clients in 2 separate processes. Each measurement
runs ``--seconds``; the servers take turns (dim, busybox, nginx, dim, …) ``--repeat`` times.
Reported: medians of MB/s (10^6 bytes of responses) and requests/s; CPU seconds per second of
run used by the server, the load generator and the whole machine (the rest is the kernel's
loopback work and other processes: on a shared machine, a sign of how noisy the run was); and
dim serve's ratio to each other server, as the median of the ratios within each round (robust
to a background load that drifts) and as the ratio of the medians. Processes are stopped by
their process id.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dim.state import StateDB

BOOT_FILES = ["/dim/images/bench/1/vmlinuz", "/dim/images/bench/1/initrd.img"]
OTHERS = {"busybox httpd": "busybox", "nginx": "nginx"}
BASELINE = "dim serve (baseline)"
LAYOUT = """<?xml version="1.0"?>
<cluster name="bench">
  <network name="boot" subnet="127.0.0.0/8"/>
  <server name="srv" address="127.0.0.1" dhcp="none" nfs="none" http-root="{http_root}"/>
  <image name="bench"/>
  <group name="nodes" nodes="n[1-{nodes}]" image="bench">
    <interface network="boot" ip="127.0.1.{{n1}}"/>
  </group>
</cluster>
"""
WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("DIMBENCH %%d %%d %%d %%d\\n", summary.duration, summary.requests,
    summary.bytes, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Run:
    server: str
    seconds: float
    requests: int
    bytes: int
    errors: int
    server_cpu: float  # CPU seconds of the server (and its children) per second of run
    client_cpu: float  # the same for the load generator
    machine_cpu: float  # the same for the whole machine: other processes and softirqs too

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen, name: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(
                f"bench: {name} exited with status {process.returncode}: " + " / ".join(tail)
            )
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"bench: {name} did not listen on port {port}")


@contextmanager
def started(name: str, command: list[str], port: int, log: Path, env: dict | None = None):
    with open(log, "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output, env=env)
    try:
        wait_for(port, process, name, log)
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def dim_command(work: Path, port: int) -> tuple[list[str], dict]:
    dim = str(Path(sys.executable).with_name("dim"))
    env = {**os.environ, "DIM_CONFIG": str(work / "cluster.xml"), "DIM_STATE": str(work / "state")}
    return [dim, "serve", "--listen", "127.0.0.1", "--port", str(port)], env


def busybox_command(work: Path, port: int) -> list[str]:
    return ["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(work / "http")]


def nginx_command(work: Path, port: int, workers: str) -> list[str]:
    prefix = work / "nginx"
    prefix.mkdir(exist_ok=True)
    (prefix / "nginx.conf").write_text(
        f"""user root;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    server {{
        listen 127.0.0.1:{port};
        root {work / "http"};
    }}
}}
"""
    )
    return ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, its reaped children, and its live children (nginx workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid] + children(pid)
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # exited meanwhile (busybox's per-connection children)
            continue
        total += sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (every core), from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


# -- load generators -------------------------------------------------------------------------


def wrk_load(port: int, args, work: Path, paths: list[str]) -> tuple[dict, float]:
    script = work / "paths.lua"
    script.write_text(WRK_SCRIPT % ", ".join(f'"{p}"' for p in paths))
    command = ["wrk", "-t", "2", "-c", str(args.clients), "-d", f"{args.seconds:g}s"]
    command += ["--timeout", "60s", "-s", str(script), f"http://127.0.0.1:{port}"]
    before = os.times()
    done = subprocess.run(
        pinned(command, 1 if args.pin else None), capture_output=True, text=True, check=True
    )
    used = children_cpu(before)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("DIMBENCH "))
    micros, requests, size, errors = (int(x) for x in line.split()[1:])
    return {"seconds": micros / 1e6, "requests": requests, "bytes": size, "errors": errors}, used


def aiohttp_load(port: int, args, work: Path, paths: list[str]) -> tuple[dict, float]:
    (work / "paths.json").write_text(json.dumps(paths))
    command = [sys.executable, __file__, "--client-worker", str(port), str(args.clients // 2)]
    command += [str(work / "paths.json"), str(args.seconds)]
    before = os.times()
    procs = [
        subprocess.Popen(pinned(command, 1 if args.pin else None), stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [json.loads(p.communicate()[0]) for p in procs]
    used = children_cpu(before)
    total = {k: sum(r[k] for r in results) for k in ("requests", "bytes", "errors")}
    total["seconds"] = max(r["seconds"] for r in results)
    return total, used


def children_cpu(before: os.times_result) -> float:
    after = os.times()
    return (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def client_worker(port: int, clients: int, paths_file: str, seconds: float) -> None:
    """One load process: ``clients`` aiohttp connections fetching the paths in turn."""
    import asyncio

    import aiohttp

    paths = json.loads(Path(paths_file).read_text())

    async def client(session, deadline, counts, offset):
        i = offset
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}{paths[i % len(paths)]}") as r:
                    while chunk := await r.content.read(1 << 20):
                        counts["bytes"] += len(chunk)
                    counts["requests" if r.status == 200 else "errors"] += 1
            except aiohttp.ClientError:
                counts["errors"] += 1
            i += 1

    async def main():
        counts = {"requests": 0, "bytes": 0, "errors": 0}
        connector = aiohttp.TCPConnector(limit=clients)
        started = time.monotonic()
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = started + seconds
            await asyncio.gather(*(client(session, deadline, counts, n) for n in range(clients)))
        counts["seconds"] = time.monotonic() - started
        print(json.dumps(counts))

    asyncio.run(main())


# -- the bench -------------------------------------------------------------------------------


def prepare(work: Path, args) -> None:
    """Layout, boot build (hard-linked into http-root), MACs, and static copies of the node
    scripts that dim serve answers (what busybox and nginx serve in the node-scripts part)."""
    (work / "cluster.xml").write_text(
        LAYOUT.format(http_root=work / "http", nodes=max(args.nodes, 1))
    )
    build = work / "state" / "boot" / "bench" / "1"
    build.mkdir(parents=True)
    (build / "vmlinuz").write_bytes(os.urandom(int(args.kernel_mb * 1024 * 1024)))
    (build / "initrd.img").write_bytes(os.urandom(int(args.initrd_mb * 1024 * 1024)))
    (build / "build.json").write_text("{}")
    static = work / "http" / "dim" / "images" / "bench" / "1"
    static.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        os.link(build / name, static / name)
    macs = work / "macs.csv"
    macs.write_text("".join(f"n{i},{mac(i)}\n" for i in range(1, args.nodes + 1)))
    command, env = dim_command(work, 0)
    subprocess.run([command[0], "node", "import-macs", str(macs)], env=env, check=True)
    (work / "http" / "dim" / "nodes").mkdir(parents=True)
    port = free_port()
    command, env = dim_command(work, port)
    with started("dim serve", command, port, work / "prepare.log", env):
        for path in script_paths(args.nodes):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as response:
                (work / "http" / path.lstrip("/")).write_bytes(response.read())


def mac(i: int) -> str:
    return f"52:54:00:00:{i >> 8:02x}:{i & 0xFF:02x}"


def script_paths(nodes: int) -> list[str]:
    return [f"/dim/nodes/{mac(i).replace(':', '-')}.ipxe" for i in range(1, nodes + 1)]


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def measure(name: str, args, work: Path, load, paths: list[str]) -> Run:
    port = free_port()
    if name == "dim serve":
        command, env = dim_command(work, port)
    elif name == BASELINE:
        command, env = dim_command(work, port)
        env["PYTHONPATH"] = str(args.baseline / "src")
    elif name == "busybox httpd":
        command, env = busybox_command(work, port), None
    else:
        command, env = nginx_command(work, port, args.nginx_workers), None
    log = work / f"{name}.log"
    with started(name, pinned(command, 0 if args.pin else None), port, log, env) as process:
        cpu_before, busy_before = cpu_seconds(process.pid), machine_busy()
        result, client_cpu = load(port, args, work, paths)
        server_cpu = cpu_seconds(process.pid) - cpu_before
        machine_cpu = machine_busy() - busy_before
    seconds = result["seconds"]
    return Run(
        name,
        seconds,
        result["requests"],
        result["bytes"],
        result["errors"],
        server_cpu / seconds,
        client_cpu / seconds,
        machine_cpu / seconds,
    )


def run_part(title: str, paths: list[str], servers: list[str], args, work: Path, load) -> dict:
    """Each server in turn, ``--repeat`` times: {server: [Run, …]}."""
    runs: dict[str, list[Run]] = {name: [] for name in servers}
    for turn in range(args.repeat):
        for name in servers:
            run = measure(name, args, work, load, paths)
            runs[name].append(run)
            print(
                f"  {title}, run {turn + 1}: {name:<14} {run.mb_per_s:7.0f} MB/s "
                f"{run.requests_per_s:8.1f} req/s  errors {run.errors}  CPU s/s: server "
                f"{run.server_cpu:.2f} client {run.client_cpu:.2f} machine {run.machine_cpu:.2f}",
                file=sys.stderr,
            )
    return runs


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2]


def report(title: str, runs: dict[str, list[Run]], args) -> str:
    """Medians per server, and dim serve's ratio to each: the median of the ratios of runs in
    the same round (side by side in time), which cancels most of a background load that drifts
    during the bench; the ratio of the medians beside it."""
    medians = {name: median_run(each) for name, each in runs.items()}
    dim_runs = runs["dim serve"]
    lines = [
        f"{title}:",
        "",
        "| server | MB/s | requests/s | errors | CPU s/s: server, client, machine "
        "| dim serve vs this: per round, of medians | all runs, requests/s |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, run in medians.items():
        paired = statistics.median(
            d.requests_per_s / o.requests_per_s for d, o in zip(dim_runs, runs[name], strict=True)
        )
        ratio = medians["dim serve"].requests_per_s / run.requests_per_s
        every = ", ".join(f"{r.requests_per_s:.0f}" for r in runs[name])
        lines.append(
            f"| {name} | {run.mb_per_s:.0f} | {run.requests_per_s:.0f} | {run.errors} "
            f"| {run.server_cpu:.2f}, {run.client_cpu:.2f}, {run.machine_cpu:.2f} "
            f"| {paired:.2f}×, {ratio:.2f}× | {every} |"
        )
    return "\n".join(lines)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kernel-mb", type=float, default=8.0)
    parser.add_argument("--initrd-mb", type=float, default=4.0)
    parser.add_argument("--nodes", type=int, default=200, help="Node scripts part (0: skip).")
    parser.add_argument("--nginx-workers", default="auto")
    parser.add_argument(
        "--servers",
        default=",".join(OTHERS),
        help="Which others to run beside dim serve (default: %(default)s).",
    )
    parser.add_argument("--client", choices=("wrk", "aiohttp"), default=None)
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="Also run the dim serve of another source tree (e.g. `git archive` of an older "
        "commit unpacked in SRC: SRC/src/dim), in the same rounds: a before/after comparison.",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="Server on CPU 0, load generator on CPU 1 (nginx then gets one worker).",
    )
    args = parser.parse_args()
    if args.pin and args.nginx_workers == "auto":
        args.nginx_workers = "1"
    args.client = args.client or ("wrk" if shutil.which("wrk") else "aiohttp")
    return args


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client-worker":
        client_worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
        return
    args = arguments()
    load = wrk_load if args.client == "wrk" else aiohttp_load
    wanted = [name.strip() for name in args.servers.split(",") if name.strip()]
    servers = ["dim serve"] + [n for n in wanted if shutil.which(OTHERS[n]) is not None]
    if args.baseline:
        servers.insert(1, BASELINE)
    left_out = sorted(set(wanted) - set(servers))
    if left_out:
        print(f"bench: not installed, left out: {', '.join(left_out)}", file=sys.stderr)
    parts = [(f"kernel ({args.kernel_mb:g} MiB) and initrd ({args.initrd_mb:g} MiB)", BOOT_FILES)]
    if args.nodes:
        parts.append((f"node scripts of {args.nodes} nodes", script_paths(args.nodes)))
    work = Path(tempfile.mkdtemp(prefix="dim-bench-serve-"))
    try:
        prepare(work, args)
        print(
            f"bench/serve.py, {time.strftime('%Y-%m-%d')}: {args.clients} clients, "
            f"{args.seconds:g} s per run, median of {args.repeat} (by requests/s), servers in "
            f"turn; load generator {args.client}; {os.cpu_count()} cores"
            + ("; server pinned to CPU 0, load generator to CPU 1" if args.pin else "")
        )
        for title, paths in parts:
            print("\n" + report(title, run_part(title, paths, servers, args, work, load), args))
        boots = StateDB.open(work / "state").last_boots()
        print(f"\nnodes with a boot recorded by dim serve: {len(boots)} of {args.nodes}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
