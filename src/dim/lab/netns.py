"""Network namespaces for the lab and its tests: a bridge, clients on it, daemons in it.

A `Segment` is one broadcast domain made of network namespaces that this module creates and
deletes by name, and nothing else: a server namespace holding a bridge with an IPv4 address,
kept up by a veth pair (Kea and ISC dhcpd refuse a bridge without carrier), and client
namespaces, each joined to the bridge by a veth pair whose client end is ``eth0``; further
server namespaces (`Segment.add_host`, a failover set's servers) are joined the same way, their
``eth0`` with addresses of their own. No packet leaves these namespaces::

    with segment("10.77.0.1/24", clients=2) as seg:
        daemon = seg.start(["dnsmasq", "--keep-in-foreground", "--conf-file=/tmp/d.conf"],
                           log=Path("/tmp/dnsmasq.log"))
        daemon.wait_udp(67)
        run(seg.clients[0].namespace, ["ip", "addr"])

Names hold the process id, a counter and a random part (``dim4242-0a1b2-srv``,
``dim4242-0a1b2-c0``, ``dim4242-0a1b2-srv1`` for ``add_host("srv1", …)``), so parallel runs
never collide. On leaving the block every daemon started
through the segment is stopped by its process id (SIGTERM, then SIGKILL) and every namespace the
segment created is deleted, also when the block raised. tests/doubles/dhcp.py asks for leases
on it.

The lab (`dim.lab.network`) builds its namespace with the same `add_bridged_namespace` that
`Segment.build` uses: the mechanism is one, the lifetimes differ. A segment's namespaces live as
long as the ``with`` block of the process that made them; the lab's namespace has a fixed name,
outlives ``dim lab up`` and is deleted by ``dim lab down`` (`delete_namespace`), which finds it
by name in ``lab.json``. In both cases a namespace is a file under /run/netns: it stays until
someone deletes it, whoever made it::

    add_bridged_namespace("dimlab", "br0", "10.77.0.1/24")   # namespace, bridge, veth keeper
    attach("dimlab", "br0", "tap0")                          # a port into the bridge, up
    delete_namespace("dimlab")
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from pathlib import Path

from dim.errors import LabError

_counter = itertools.count()
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class Client:
    """A client namespace and the name of its interface on the segment."""

    namespace: str
    iface: str = "eth0"


@dataclass(slots=True)
class Daemon:
    """A background process in a namespace, stopped by its process id."""

    namespace: str
    argv: tuple[str, ...]
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """What the daemon wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, signum: int) -> None:
        """Send a signal (SIGHUP makes dnsmasq reread its hosts files)."""
        os.kill(self.pid, signum)

    def wait_udp(self, port: int = 67, timeout: float = 5.0) -> None:
        """Wait until the namespace has a socket bound to UDP ``port``, or fail with the log."""
        deadline = time.monotonic() + timeout
        while not udp_listening(self.namespace, port):
            if not self.running:
                raise LabError(
                    f"{self.argv[0]} exited with status {self.process.returncode}",
                    hint=_tail(self.output()),
                )
            if time.monotonic() > deadline:
                raise LabError(
                    f"{self.argv[0]} did not bind UDP port {port} in {timeout} s",
                    hint=_tail(self.output()),
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL if the process still runs after ``timeout``; its exit status."""
        if self.running:
            _kill(self.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill(self.pid, signal.SIGKILL)
        return self.process.wait()


@dataclass(slots=True)
class Segment:
    """A bridge in a server namespace, client namespaces on it, and the daemons started here."""

    prefix: str
    address: IPv4Interface
    bridge: str = "br0"
    namespaces: list[str] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    hosts: list[Client] = field(default_factory=list)  # servers beside the bridge's (add_host)
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def server(self) -> str:
        """The server namespace, which holds the bridge."""
        return f"{self.prefix}-srv"

    @property
    def server_ip(self) -> str:
        return str(self.address.ip)

    def build(self, clients: int) -> None:
        """Create the server namespace, the bridge and ``clients`` client namespaces."""
        add_bridged_namespace(self.server, self.bridge, self.address)
        self.namespaces.append(self.server)
        for _ in range(clients):
            self.add_client()

    def add_client(self) -> Client:
        """A new client namespace joined to the bridge; its interface is ``eth0``."""
        client = self._join(f"{self.prefix}-c{len(self.clients)}", f"port{len(self.clients)}")
        self.clients.append(client)
        return client

    def add_host(self, name: str, *addresses: str) -> Client:
        """A further server beside the bridge's: a namespace joined to the bridge whose
        ``eth0`` has ``addresses`` (``"10.77.0.2/24"``), e.g. one per server of a failover
        set, each running its own daemons (`start` with ``namespace=``)."""
        if f"{self.prefix}-{name}" in self.namespaces:
            raise LabError(f"the segment has a namespace {self.prefix}-{name} already")
        host = self._join(f"{self.prefix}-{name}", f"host{len(self.hosts)}")
        self.hosts.append(host)
        for address in addresses:
            ip("-n", host.namespace, "addr", "add", address, "dev", host.iface)
        return host

    def _join(self, namespace: str, port: str) -> Client:
        """A new namespace whose ``eth0`` is joined to the bridge by a veth pair, up."""
        joined = Client(namespace)
        self._add_namespace(namespace)
        join_bridge(self.server, self.bridge, port, namespace, joined.iface)
        return joined

    def start(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> Daemon:
        """Start a daemon (in the server namespace unless told); stopped when the segment is."""
        daemon = start(namespace or self.server, argv, log=log, env=env)
        self.daemons.append(daemon)
        return daemon

    def close(self) -> None:
        """Stop this segment's daemons, then delete the namespaces it created."""
        failures: list[str] = []
        for daemon in reversed(self.daemons):
            try:
                daemon.stop()
            except OSError as exc:
                failures.append(f"stopping {daemon.argv[0]} (pid {daemon.pid}): {exc}")
        self.daemons.clear()
        for name in reversed(self.namespaces):
            try:
                delete_namespace(name)
            except LabError as exc:
                failures.append(exc.message)
        self.namespaces.clear()
        if failures:
            raise LabError("the lab was not fully torn down: " + "; ".join(failures))

    def _add_namespace(self, name: str) -> None:
        add_namespace(name)
        self.namespaces.append(name)


@contextmanager
def segment(
    address: str = "10.77.0.1/24", *, clients: int = 1, bridge: str = "br0"
) -> Iterator[Segment]:
    """Build a `Segment` whose names are unique to this process and call; tear it down after."""
    prefix = f"dim{os.getpid()}-{next(_counter)}{secrets.token_hex(2)}"
    seg = Segment(prefix=prefix, address=IPv4Interface(address), bridge=bridge)
    try:
        seg.build(clients)
        yield seg
    finally:
        seg.close()


def add_namespace(name: str) -> None:
    """Create the network namespace ``name`` with its loopback up."""
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
    except LabError:
        _ip_result("netns", "delete", name)
        raise


def add_bridged_namespace(name: str, bridge: str, address: IPv4Interface | str) -> None:
    """Create ``name`` holding ``bridge`` with ``address``, kept up by a veth pair.

    The keeper: Kea and ISC dhcpd refuse a bridge without carrier, and a bridge has carrier
    only while one of its ports does; ``keep0`` is on the bridge, its peer ``keep1`` up beside
    it. All or nothing: if a step fails, the namespace is deleted again and `LabError` raised.
    """
    add_namespace(name)
    try:
        ip("-n", name, "link", "add", bridge, "type", "bridge")
        ip("-n", name, "addr", "add", str(address), "dev", bridge)
        ip("-n", name, "link", "set", bridge, "up")
        ip("-n", name, "link", "add", "keep0", "type", "veth", "peer", "name", "keep1")
        ip("-n", name, "link", "set", "keep1", "up")
        attach(name, bridge, "keep0")
    except LabError:
        _ip_result("netns", "delete", name)
        raise


def join_bridge(bridge_namespace: str, bridge: str, port: str, namespace: str, iface: str) -> None:
    """Join ``namespace`` to ``bridge`` by a veth pair: ``port`` on the bridge, ``iface`` in
    the namespace, both up (a segment's clients and hosts, the lab's servers)."""
    peer = ["peer", "name", iface, "netns", namespace]
    ip("-n", bridge_namespace, "link", "add", port, "type", "veth", *peer)
    attach(bridge_namespace, bridge, port)
    ip("-n", namespace, "link", "set", iface, "up")


def attach(namespace: str, bridge: str, port: str) -> None:
    """Make the link ``port`` a port of ``bridge`` and bring it up."""
    ip("-n", namespace, "link", "set", port, "master", bridge)
    ip("-n", namespace, "link", "set", port, "up")


def namespace_exists(name: str) -> bool:
    """Whether the named network namespace exists (``ip netns add`` made /run/netns/NAME)."""
    return Path(f"/run/netns/{name}").exists()


def delete_namespace(name: str) -> None:
    """Delete a named namespace; its links go with it. Processes in it must be stopped first."""
    result = _ip_result("netns", "delete", name)
    if result.returncode != 0:
        raise LabError(f"deleting namespace {name}: {result.stderr.strip()}")


def ip(*args: str) -> None:
    """Run ``ip ARGS`` in the caller's namespace; a failure raises `LabError`."""
    result = _ip_result(*args)
    if result.returncode != 0:
        raise LabError(
            f"ip {' '.join(args)} failed: {result.stderr.strip()}",
            hint="the lab needs root and the iproute2 tools",
        )


def run(
    namespace: str,
    argv: Sequence[str],
    *,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end inside a namespace and capture its output."""
    try:
        result = subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{argv[0]} in {namespace} did not finish in {timeout} s") from exc
    if check and result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        last = output.splitlines()[-1] if output else "no output"
        raise LabError(
            f"{' '.join(argv)} in {namespace} exited with {result.returncode}: {last}",
            hint=_tail(output),
        )
    return result


def start(
    namespace: str,
    argv: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    append: bool = False,
) -> Daemon:
    """Start a long-running command in a namespace, its output going to ``log`` (after what
    it holds with ``append``: a restarted daemon keeps its earlier lines).

    ``ip netns exec`` execs the command itself, so the process id is the daemon's own and the
    caller must `Daemon.stop` it: a namespace is not gone while a process still runs in it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab" if append else "wb") as out:
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return Daemon(namespace=namespace, argv=tuple(argv), log=log, process=process)


def udp_listening(namespace: str, port: int) -> bool:
    """Whether a socket in the namespace is bound to UDP ``port`` (read from /proc/net/udp)."""
    table = run(namespace, ["cat", "/proc/net/udp"], timeout=5.0).stdout.splitlines()[1:]
    return any(int(row.split()[1].rsplit(":", 1)[1], 16) == port for row in table if row.strip())


def tcp_listening(namespace: str, port: int) -> bool:
    """Whether a socket listens on TCP ``port`` (IPv4, or IPv6 as ganesha binds v4 too)."""
    text = run(namespace, ["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeout=5.0).stdout
    rows = [r.split() for r in text.splitlines() if r.strip() and not r.lstrip().startswith("sl")]
    return any(r[1].endswith(f":{port:04X}") and r[3] == "0A" for r in rows)


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now (the kernel's pick), for a daemon started on loopback
    beside others of its kind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def set_mac(namespace: str, iface: str, mac: str) -> None:
    """Give an interface a MAC address (veth accepts the change while up)."""
    ip("-n", namespace, "link", "set", "dev", iface, "address", mac)


def _ip_result(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)


def _kill(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
