"""The lab's processes: started detached in its namespace, known by process id only.

A lab outlives the ``dim lab`` command that started it, so its processes are not children
that a later command could wait for: each is a `Process` record (name, process id, log) saved
in ``lab.json``, and a later ``dim lab down`` stops it by that id. Every process is started in
a session of its own (its id is its process group's), so that `stop` reaches what it forked,
and never by name: another lab, or the host's own dnsmasq, may run the same program::

    daemon = spawn("dimlab", "ganesha", ["ganesha.nfsd", "-F", …], Path("logs/ganesha.log"),
                   binds={"/etc/ganesha": Path("root/etc/ganesha")})
    wait_listening("dimlab", daemon, 2049, udp=False)
    stop(daemon.pid)

``binds`` gives the process a private mount namespace in which each target folder is a bind
mount of a lab folder: daemons read dim's files at their usual paths (/etc/dim, /etc/ganesha…)
while the host's own folders stay untouched.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dim.errors import LabError
from dim.lab.netns import start, tcp_listening, udp_listening


@dataclass(frozen=True, slots=True)
class Process:
    """A process the lab started: what ``lab.json`` keeps of it."""

    name: str
    pid: int
    log: str
    tap: str = ""  # the tap device of a QEMU node (or of a BMC's node), removed with it


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return False
    return fields[0] != "Z"


def stop(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``, to the process group the lab started.

    A process id of 0 or less is a process known to be gone (`dim.lab.cluster.fail` records
    its killed daemons so): nothing is signalled, least of all this process's own group.
    """
    if pid <= 0:
        return
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.05)


def spawn(
    namespace: str,
    name: str,
    command: list[str] | tuple[str, ...],
    log: Path,
    binds: Mapping[str, Path] | None = None,
    *,
    tap: str = "",
    hostname: str = "",
) -> Process:
    """Start ``command`` detached in the namespace, with private bind mounts (target: source),
    and with ``hostname`` in a UTS namespace of its own (a lab server is a machine of its own:
    ganesha and keepalived take their default identities from the host name)."""
    for source in (binds or {}).values():
        source.mkdir(parents=True, exist_ok=True)
    lines = [
        f"mkdir -p {shlex.quote(t)} && mount --bind {shlex.quote(str(s))} {shlex.quote(t)}"
        for t, s in (binds or {}).items()
    ]
    if hostname:
        lines.append(f"hostname {shlex.quote(hostname)}")
    script = " && ".join([*lines, f"exec {shlex.join(command)}"])
    # appended: a daemon restarted by the lab (lab reload, an outage) keeps its earlier lines
    uts = ["--uts"] if hostname else []
    argv = ["unshare", "--mount", *uts, "--propagation", "private", "sh", "-c", script]
    daemon = start(namespace, argv, log=log, append=True)
    return Process(name, daemon.pid, str(log), tap)


def wait_listening(
    namespace: str, process: Process, port: int, *, udp: bool, timeout: float = 15.0
) -> None:
    """Wait until ``port`` listens in the namespace; `LabError` with the log's tail if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_listening(namespace, port) if udp else tcp_listening(namespace, port):
            return
        if not alive(process.pid):
            break
        time.sleep(0.1)
    tail = Path(process.log).read_text(errors="replace").strip().splitlines()[-3:]
    raise LabError(
        f"{process.name} did not start (port {port}): {' | '.join(tail) or 'no output'}",
        hint=f"its log: {process.log}",
    )


def sleep_until(predicate: Callable[[], object], timeout: float, step: float = 0.2) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds passed; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
