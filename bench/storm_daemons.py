"""The boot storm's daemons (bench/storm.py): started as the lab starts them, their CPU time
and peak memory from /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

from storm_ganesha import chrooted

from dim.lab.daemons import RUN_FOLDERS, daemon_specs, log_path
from dim.lab.processes import spawn, wait_listening
from dim.lab.state import LabState


def start_daemons(
    state: LabState, without: frozenset = frozenset(), ganesha_root: Path | None = None
) -> tuple[LabState, dict]:
    """The lab's daemons (`dim.lab.daemons`), started as ``dim lab up`` starts them, but given
    minutes rather than seconds to listen: ganesha reads one export per node first (more
    than the lab's 15 s for 2,500 exports on a busy machine). Seconds each took to listen.
    ``without``: daemons not started (ganesha, when the storm ends before the mounts);
    ``ganesha_root``: ganesha run from that tree (`storm_ganesha.chrooted`)."""
    for sub in RUN_FOLDERS:
        (state.folder / "run" / sub).mkdir(parents=True, exist_ok=True)
    (state.folder / "run/dhcpd.leases").touch()  # dhcpd refuses to start without it
    started = {}
    for spec in daemon_specs(state.folder, state.flavour):
        if spec.name in without:
            continue
        if spec.name == "ganesha" and ganesha_root:
            shared = [state.folder / sub for sub in ("state", "logs", "run")]
            spec = chrooted(spec, ganesha_root, shared)
        began = time.monotonic()
        # the lab's dnsmasq logs every DHCP packet (--log-dhcp, for debugging): dim's does not,
        # and at 2,500 nodes that is 90 MB of log written by its one thread during the storm
        command = tuple(word for word in spec.command if word != "--log-dhcp")
        process = spawn(state.namespace, spec.name, command, log_path(state.folder, spec.name),
                        spec.binds)  # fmt: skip
        state = state.with_daemon(process)
        state.save()
        if spec.port:
            wait_listening(state.namespace, process, spec.port, udp=spec.udp, timeout=600)
        started[spec.name] = round(time.monotonic() - began, 2)
    return state, started


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
