"""Which nodes hold a live NFS session right now, read from the NFS servers' TCP connections.

A node that runs from its NFS root keeps one TCP connection to its server's port 2049 for as
long as it runs, and its NFSv4 client sends on it at least once a lease (dim's leases are
5-15 s: :mod:`dim.services.nfs`), renewing its state even when idle. A node that died leaves
its connection established on the server (nothing tells the server), but silent. So the live
sessions are the established connections to port 2049 that received something in the last
:data:`SILENCE` seconds, whatever the server (ganesha or the kernel's nfsd), without an agent
on the nodes. ``ss`` reads them (``lastrcv``, from the kernel's ``tcp_info``), in the network
namespace of the server's process (``nsenter``; root's), named by its pid file, or ``self``
for this process's namespace (the kernel's nfsd, a server on the host)::

    >>> clients(["/run/ganesha/ganesha.pid"])      # client address -> server address
    {'10.0.1.12': '10.0.0.2', …}

None from :func:`clients` means no server could be read: the caller cannot tell up from down.

That reads the servers on this machine. Each image server's ``dim serve`` runs a
:class:`Sampler` that reads its own machine's every :data:`INTERVAL` seconds and writes what
it found to the shared state DB (:meth:`dim.state.StateDB.record_nfs_sessions`), so that
``dim node status`` run anywhere sees the nodes of every server; a server whose last reading
is older than :data:`FRESH` is not believed (its dim serve stopped, or its machine died).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from dim import processes

log = logging.getLogger("dim.serve")

NFS_PORT = 2049
SILENCE = 45.0  # seconds without a byte from the node: three leases of 15 s
DEFAULT_PID_FILES = ("/run/ganesha/ganesha.pid",)
PID_FILES_ENV = "DIM_NFS_PID_FILES"  # colon-separated; `dim lab env` sets it for a lab
INTERVAL = 5.0  # seconds between two readings of a server's sessions by its dim serve
FRESH = 20.0  # seconds within which a server's reading counts: four intervals
_LAST_RECEIVED = re.compile(r"\blastrcv:(\d+)")


def pid_files_from_env() -> list[str] | None:
    """The pid files named by ``$DIM_NFS_PID_FILES``, None when it is not set."""
    value = os.environ.get(PID_FILES_ENV)
    return None if value is None else [p for p in value.split(":") if p]


def namespaces(pid_files: Iterable[str]) -> list[int | None]:
    """The pids of the servers whose pid files name a running process (None: ``self``, this
    process's namespace); the others are left out."""
    found: list[int | None] = []
    for name in pid_files:
        if name == "self":
            found.append(None)
            continue
        try:
            pid = int(Path(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if Path(f"/proc/{pid}/ns/net").exists():
            found.append(pid)
    return found


def clients(
    pid_files: Iterable[str], port: int = NFS_PORT, silence: float = SILENCE
) -> dict[str, str] | None:
    """Client address -> the server address it is connected to, for every established TCP
    connection to ``port`` that received data in the last ``silence`` seconds, in the
    namespaces of the servers of ``pid_files``; None if none could be read."""
    found: dict[str, str] = {}
    read_any = False
    for pid in namespaces(pid_files):
        text = _ss(pid, port)
        if text is None:
            continue
        read_any = True
        found.update(parse_ss(text, silence))
    return found if read_any else None


def _ss(pid: int | None, port: int) -> str | None:
    enter = [] if _same_namespace(pid) else ["nsenter", f"--net=/proc/{pid}/ns/net"]
    command = [*enter, "ss", "-Htin", "state", "established", f"( sport = :{port} )"]
    try:
        done = processes.run(command, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _same_namespace(pid: int | None) -> bool:
    """Whether ``pid`` runs in this process's network namespace (then no ``nsenter``, which
    needs root's CAP_SYS_ADMIN: a ganesha on the host, read by a confined ``dim api``)."""
    if pid is None:
        return True
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def parse_ss(text: str, silence: float = SILENCE) -> dict[str, str]:
    """``ss -Htin state established``'s connections that received within ``silence`` s:
    each is a line ``Recv-Q Send-Q LOCAL:PORT PEER:PORT``, then an indented line of
    ``tcp_info`` (``… lastrcv:MS …``)."""
    found = {}
    local = peer = None
    for line in text.splitlines():
        if not line[:1].isspace():
            fields = line.split()
            local, peer = (fields[2], fields[3]) if len(fields) >= 4 else (None, None)
            continue
        last = _LAST_RECEIVED.search(line)
        if local is None or peer is None or last is None:
            continue
        if int(last.group(1)) <= silence * 1000:
            with contextlib.suppress(ValueError):
                found[_address(peer)] = _address(local)
        local = peer = None
    return found


def _address(endpoint: str) -> str:
    """``10.0.0.2:2049``, ``[::ffff:10.0.0.2]:2049`` -> ``10.0.0.2``; ``[fd00::2]:2049`` ->
    ``fd00::2``."""
    host = endpoint.rsplit(":", 1)[0].strip("[]").split("%")[0]
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


class Sampler:
    """Reads the sessions of the servers of ``pid_files`` every ``interval`` seconds, in a
    thread of its own, and hands each reading to ``write(clients, at)``: ``clients`` is None
    when nothing changed since the last reading written (so that a quiet cluster costs one
    small write per interval). A reading that fails (no server running) is not written: the
    last one goes stale. ``write`` raising is logged once per kind of failure, and the next
    reading is written whole."""

    def __init__(
        self,
        pid_files: Iterable[str],
        write: Callable[[Mapping[str, str] | None, float], None],
        interval: float = INTERVAL,
        port: int = NFS_PORT,
    ) -> None:
        self.pid_files = tuple(pid_files)
        self.port = port
        self.write = write
        self.interval = interval
        self._stop = threading.Event()
        self._written: Mapping[str, str] | None = None
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="dim-nfs-sessions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def sample(self) -> None:
        """One reading, written."""
        found = clients(self.pid_files, self.port)
        if found is None:
            self._failed(f"no NFS server's sessions readable ({', '.join(self.pid_files)})")
            return
        changed = found != self._written
        try:
            self.write(found if changed else None, time.time())
        except Exception as exc:  # the DB down: the sessions go stale, the boots go on
            self._written = None
            self._failed(f"NFS sessions not recorded: {exc}")
            return
        self._written = found
        if self._failure is not None:
            log.info("NFS sessions: recorded again (%d clients)", len(found))
            self._failure = None

    def _failed(self, message: str) -> None:
        if message != self._failure:
            log.error("%s", message)
            self._failure = message

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return
