"""Benchmark: power status of thousands of BMCs, against shell loops run in the same run.

Run by hand, as root, never as a test (it binds 10,000 loopback addresses)::

    .venv/bin/python bench/power.py [--counts 1000,10000] [--dead 0.05] [--timeout 2]
                                    [--concurrency 200] [--latency 0] [--markdown]

1. **Redfish.** One fleet process (tests/doubles/redfish_fleet.py) answers for the largest
   count of BMCs, each on its own 127.120.x.y address, ``--dead`` of them dead (half accept
   connections and never answer, half refuse them). ``dim power status`` as a library call
   (the CLI's fan-out, without printing) on the first N of them, with session login (POST,
   GET Systems, GET system, DELETE) and with HTTP Basic (two GETs). Baseline: a loop of one
   ``curl --max-time TIMEOUT`` per BMC with Basic auth on the system's URI, the cheapest loop
   an administrator could write; run on a sample of live, silent and refusing BMCs and
   extrapolated per kind to N (said in the output).
2. **IPMI.** ``--ipmi-sims`` OpenIPMI ``ipmi_sim`` processes plus one dead port per 20:
   ``dim power status`` over them, and a loop of ``ipmitool -I lanplus -C 3 … chassis power
   status`` (password from the environment) on them, extrapolated to N the same way.

Each dim case runs ``--repeat`` times (default 2) and shows the best and every run: the
first run against addresses never contacted before is slower (measured: 17 s instead of
8.5 s for 10,000, the extra CPU on the client's side, not in the fleet; per-destination
kernel state is our guess, not verified), and a real cluster's BMCs are not new at every
run. Both sides run
on this machine: the BMC simulators take their share of its cores. The load
average before the run is printed; other work on the machine slows every figure.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.doubles.redfish_fleet import address, plan  # noqa: E402
from tests.integration.power_sims import (  # noqa: E402
    PASSWORD,
    USER,
    free_port,
    ipmi_sim,
    redfish_fleet,
)

from dim.power import fanout  # noqa: E402
from dim.power.credentials import Credential, Secret  # noqa: E402
from dim.power.fanout import FanoutOptions  # noqa: E402
from dim.power.interface import Target  # noqa: E402

FIRST = 120  # the fleet's addresses: 127.120.0.1 upwards


def dim_status(targets: list[Target], options: FanoutOptions) -> tuple[float, Counter]:
    start = time.monotonic()
    results = fanout.execute(targets, fanout.status, options)
    seconds = time.monotonic() - start
    unexpected = Counter(
        r.message
        for r in results
        if r.kind is not None and r.kind not in ("timeout", "unreachable")
    )
    for message, count in unexpected.most_common(3):
        print(f"  {count} x {message}", flush=True)
    return seconds, Counter(r.outcome for r in results)


def timed(argv: list[str], env: dict | None = None) -> float:
    start = time.monotonic()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.monotonic() - start


def curl_loop(port: int, indexes: list[int], timeout: float, netrc: Path) -> list[float]:
    return [
        timed(
            ["curl", "-s", "-o", "/dev/null", "--max-time", str(timeout), "--netrc-file"]
            + [str(netrc), f"http://{address(i, FIRST)}:{port}/redfish/v1/Systems/1"]
        )
        for i in indexes
    ]


def extrapolate(per_kind: dict[str, list[float]], modes: list[str], count: int) -> float:
    kinds = Counter(modes[:count])
    return sum(statistics.mean(per_kind[kind]) * n for kind, n in kinds.items())


def redfish(args, rows: list[list[str]]) -> None:
    largest = max(args.counts)
    modes = plan(largest, args.dead)
    fleet_args = ["--dead", str(args.dead), "--latency", str(args.latency)]
    with (
        tempfile.TemporaryDirectory() as folder,
        redfish_fleet(Path(folder), largest, *fleet_args, first=FIRST) as port,
    ):
        for auth in ("session", "basic"):
            credential = Credential("bench", USER, Secret(PASSWORD), auth=auth)
            for count in args.counts:
                targets = [
                    Target(f"n{i:05d}", "redfish", f"http://{address(i, FIRST)}:{port}", credential)
                    for i in range(count)
                ]
                options = FanoutOptions(args.concurrency, args.timeout, retries=1)
                runs = [dim_status(targets, options) for _ in range(args.repeat)]
                seconds, outcomes = runs[0]
                ok = sum(n for o, n in outcomes.items() if not o.startswith("error"))
                what = "session login" if auth == "session" else "HTTP Basic"
                times = ", ".join(f"{s:.1f}" for s, _ in runs)
                rows.append(
                    [
                        f"dim power status, Redfish, {what}",
                        f"{count:,}",
                        f"{min(s for s, _ in runs):.1f} s",
                        f"runs: {times} s; {ok:,} answered, {count - ok:,} failed: "
                        + ", ".join(
                            f"{n} {o}" for o, n in sorted(outcomes.items()) if "error" in o
                        ),
                    ]
                )
                print(rows[-1], flush=True)
        netrc = Path(folder) / "netrc"
        netrc.write_text(f"default login {USER} password {PASSWORD}\n")
        netrc.chmod(0o600)
        sample = {kind: [i for i, m in enumerate(modes) if m == kind] for kind in set(modes)}
        sizes = {"ok": args.curl_sample, "silent": 3, "closed": 3}
        per_kind = {
            kind: curl_loop(port, indexes[: sizes[kind]], args.timeout, netrc)
            for kind, indexes in sample.items()
        }
        measured = sum(len(v) for v in per_kind.values())
        for count in args.counts:
            estimate = extrapolate(per_kind, modes, count)
            rows.append(
                [
                    "loop of curl, Redfish, HTTP Basic, one GET",
                    f"{count:,}",
                    f"{estimate:.0f} s",
                    f"extrapolated from {measured} calls: "
                    + ", ".join(
                        f"{k} {statistics.mean(v) * 1000:.0f} ms" for k, v in per_kind.items()
                    ),
                ]
            )
            print(rows[-1], flush=True)


def ipmi(args, rows: list[list[str]]) -> None:
    dead_ports = [free_port(socket.SOCK_DGRAM) for _ in range(max(1, args.ipmi_sims // 20))]
    env = {**os.environ, "IPMI_PASSWORD": PASSWORD}
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        sims = [
            stack.enter_context(ipmi_sim(Path(folder) / f"sim{i}")) for i in range(args.ipmi_sims)
        ]
        credential = Credential("bench", USER, Secret(PASSWORD))
        addresses = [s.address for s in sims] + [f"127.0.0.1:{p}" for p in dead_ports]
        targets = [Target(f"i{i}", "ipmi", a, credential) for i, a in enumerate(addresses)]
        seconds, outcomes = dim_status(targets, FanoutOptions(args.concurrency, args.timeout))
        rows.append(
            [
                "dim power status, IPMI (pyghmi), ipmi_sim",
                f"{len(targets)}",
                f"{seconds:.1f} s",
                ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())),
            ]
        )
        print(rows[-1], flush=True)

        def ipmitool(where: str) -> float:
            host, port = where.rsplit(":", 1)
            argv = ["ipmitool", "-I", "lanplus", "-C", "3", "-H", host, "-p", port, "-U", USER]
            return timed(argv + ["-E", "chassis", "power", "status"], env)

        alive = [ipmitool(sims[i % len(sims)].address) for i in range(args.ipmitool_sample)]
        dead = [ipmitool(f"127.0.0.1:{dead_ports[0]}")]
        modes = plan(max(args.counts), args.dead)
        per_kind = {"ok": alive, "silent": dead, "closed": dead}
        for count in args.counts:
            estimate = extrapolate(per_kind, modes, count)
            rows.append(
                [
                    "loop of ipmitool -I lanplus -C 3, IPMI",
                    f"{count:,}",
                    f"{estimate:.0f} s",
                    f"extrapolated from {len(alive)} calls of "
                    f"{statistics.mean(alive) * 1000:.0f} ms "
                    f"and one dead BMC of {dead[0]:.1f} s ({args.dead:.0%} dead)",
                ]
            )
            print(rows[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--dead", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.0, help="fleet answer delay, s")
    parser.add_argument("--curl-sample", type=int, default=200)
    parser.add_argument("--ipmi-sims", type=int, default=20)
    parser.add_argument("--ipmitool-sample", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=2, help="dim runs per case; best shown")
    parser.add_argument("--skip-ipmi", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    args.counts = [int(c) for c in args.counts.split(",")]
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average before: {' '.join(load)}, {os.cpu_count()} cores", flush=True)
    rows: list[list[str]] = []
    redfish(args, rows)
    if not args.skip_ipmi:
        ipmi(args, rows)
    if args.markdown:
        print("\n| what | BMCs | time | detail |\n|---|---:|---:|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
