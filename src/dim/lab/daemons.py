"""The lab's daemons, declared: what each runs, with which bind mounts, and where it listens.

`daemon_specs` is the whole table, a pure function of the lab's folder and DHCP flavour;
`start_daemons` starts every spec in order, `restart_daemon` one of them by name::

    for spec in daemon_specs(Path("/var/tmp/dim-lab"), "kea"):
        print(spec.name, spec.port, "udp" if spec.udp else "tcp")
    # kea 67 udp / tftp 69 udp / ra 0 udp / ganesha 2049 tcp / serve 8080 tcp

Each daemon runs the real program on dim's rendered files at their usual paths: ``binds``
maps those paths (/etc/dim, /etc/kea, /srv/dim…) to the lab's ``root/`` folder, in a mount
namespace private to the daemon. What a daemon writes at run time (leases, pid and lock
files, ganesha's recovery folder) goes under the lab's ``run/`` folder.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dim.errors import LabError
from dim.lab.network import BRIDGE, SERVER, SERVER_IFACE, server_namespace
from dim.lab.processes import Process, spawn, stop, wait_listening
from dim.lab.state import LabState, database, locked

HTTP_PORT = 8080
BOUND = ("/etc/dim", "/etc/dnsmasq.d", "/etc/kea", "/etc/dhcp", "/etc/ganesha", "/srv/dim")
RUN_FOLDERS = ("kea", "nfs-lib", "nfs-run")

Say = Callable[[str], None]


def dim_argv(folder: Path) -> list[str]:
    """This very dim (``python -m dim`` of this interpreter), on the lab's layout and state,
    and its state DB when the lab has a database server: in the environment, through ``env``,
    so that the URL's password is not in the command line of a process that lasts."""
    config, state = folder / "cluster.xml", folder / "state"
    url = database(folder)
    prefix = ["env", f"DIM_DATABASE={url}"] if url else []
    return [*prefix, sys.executable, "-m", "dim", "--config", str(config), "--state", str(state)]


@dataclass(frozen=True, slots=True)
class DaemonSpec:
    """One daemon of the lab: ``port`` 0 when it listens on none that tells it is ready."""

    name: str
    command: tuple[str, ...]
    binds: Mapping[str, Path]  # target path in the daemon's mount namespace: lab folder
    port: int
    udp: bool
    namespace: str = ""  # a lab server's own namespace; "" for the lab's (the bridge's)
    hostname: str = ""  # the server's, in a UTS namespace of the daemon's own
    address: str = ""  # where ``port`` listens, when not on every address


def daemon_specs(folder: Path, flavour: str) -> list[DaemonSpec]:
    """Every daemon of a lab in ``folder`` with DHCP ``flavour``, in the order to start them."""
    root, run_dir = folder / "root", folder / "run"
    binds = {path: root / path.lstrip("/") for path in BOUND}
    # Kea and dhcpd serve no TFTP: dnsmasq does, from the TFTP-only file dim apply renders;
    # dnsmasq's DHCP serves no DNS: a dnsmasq of its own does, from the DNS-only file
    beside = _dns_spec(binds) if flavour == "dnsmasq" else _tftp_spec(binds)
    return [
        _dhcp_spec(flavour, binds, run_dir),
        beside,
        _ra_spec(),
        _ganesha_spec(binds, run_dir, folder / "logs"),
        DaemonSpec(
            "serve",
            (*dim_argv(folder), "serve", "--listen", SERVER, "--port", str(HTTP_PORT)),
            binds,
            HTTP_PORT,
            False,
        ),
    ]


# Where Debian's units put each DHCP daemon's pid file, which keepalived's check reads
# (dim.services.vrrp): bound to the server's run folder in its daemons' mount namespaces.
SERVER_RUN = ("/run/dnsmasq", "/run/kea", "/run/dhcp-server", "/run/keepalived")


def server_daemon_specs(
    folder: Path, flavour: str, namespace: str, server: str
) -> list[DaemonSpec]:
    """The daemons of one image server of a lab with several, named ``<server>/<daemon>``,
    each in the server's namespace under its host name, on its own root and run folders
    (``<lab>/servers/<server>/``); keepalived last, once what it checks answers."""
    base = folder / "servers" / server
    root, run_dir = base / "root", base / "run"
    binds = {path: root / path.lstrip("/") for path in (*BOUND, "/etc/keepalived")}
    binds |= {path: run_dir / path.rsplit("/", 1)[1] for path in SERVER_RUN}
    dhcp = _dhcp_spec(flavour, binds, run_dir, iface=SERVER_IFACE, pid_files=True)
    specs = [dhcp, _dns_spec(binds) if flavour == "dnsmasq" else _tftp_spec(binds)]
    specs += [
        _ganesha_spec(binds, run_dir, base / "logs"),
        DaemonSpec(
            "serve",
            (*dim_argv(folder), "serve", "--server", server, "--port", str(HTTP_PORT)),
            binds,
            HTTP_PORT,
            False,
        ),
        DaemonSpec(
            "keepalived",
            (
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "-f",
                "/etc/keepalived/keepalived.conf",
                "-p",
                "/run/keepalived/keepalived.pid",
                "-r",
                "/run/keepalived/vrrp.pid",
                "-c",
                "/run/keepalived/checkers.pid",
            ),
            binds,
            0,
            False,
        ),
    ]
    return [
        replace(spec, name=f"{server}/{spec.name}", namespace=namespace, hostname=server)
        for spec in specs
    ]


# Before ganesha, as a site's systemd runs them (dim.services.nfs): a CephFS head's fence
# lifted and its grace database membership (ExecStartPre; ganesha exits unless a member),
# and a failover set server's epoch (EPOCH_EXEC). Each runs only where dim apply rendered it.
GANESHA_START = (
    "u=/etc/ganesha/dim-unfence; if [ -x $u ]; then $u || exit 1; fi; "
    "g=/etc/ganesha/dim-grace; if [ -x $g ]; then $g || exit 1; fi; "
    'e=/etc/ganesha/dim-epoch; [ -x $e ] && set -- "$@" -E "$($e)"; exec "$@"'
)


def ganesha_pid_files(folder: Path) -> list[Path]:
    """The pid files of the lab's ganeshas (one per server), whose network namespaces hold
    the nodes' NFS sessions (:mod:`dim.services.sessions`)."""
    found = sorted(folder.glob("servers/*/run/ganesha.pid"))
    return found or [folder / "run" / "ganesha.pid"]


def _ganesha_spec(binds: Mapping[str, Path], run_dir: Path, logs: Path) -> DaemonSpec:
    """nfs-ganesha in the foreground, its state (/var/lib/nfs, /run) in ``run_dir``, after
    the scripts of :data:`GANESHA_START`."""
    command = (
        "ganesha.nfsd",
        "-F",
        "-f",
        "/etc/ganesha/ganesha.conf",
        "-L",
        str(logs / "ganesha.log"),
        "-p",
        f"{run_dir}/ganesha.pid",
    )
    command = ("sh", "-c", GANESHA_START, "sh", *command)
    return DaemonSpec(
        "ganesha",
        command,
        {**binds, "/var/lib/nfs": run_dir / "nfs-lib", "/run": run_dir / "nfs-run"},
        2049,
        False,
    )


def _ra_spec() -> DaemonSpec:
    """Router advertisements on the bridge: without them iPXE waits 16 s for IPv6
    autoconfiguration."""
    return DaemonSpec(
        "ra",
        (
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--pid-file=",
            "--enable-ra",
            f"--dhcp-range=::,constructor:{BRIDGE},ra-only",
            "--user=root",
            "--log-facility=-",
        ),
        {},
        0,
        True,
    )


def lab_specs(state: LabState) -> list[DaemonSpec]:
    """Every daemon of the lab in start order: the one server's, or with several servers the
    bridge's router advertisements, each server's daemons, then every server's keepalived at
    once (so that each takes its own address: a peer's lower priority waits longer)."""
    if not state.servers:
        return daemon_specs(state.folder, state.flavour)
    specs = [_ra_spec()]
    for server in state.servers:
        namespace = server_namespace(state.namespace, server)
        specs += server_daemon_specs(state.folder, state.flavour, namespace, server)
    return sorted(specs, key=lambda spec: spec.name.endswith("/keepalived"))


def _tftp_spec(binds: Mapping[str, Path]) -> DaemonSpec:
    return DaemonSpec(
        "tftp",
        (
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/etc/dnsmasq.d/dim-tftp.conf",
            "--pid-file=",
            "--user=root",
            "--log-facility=-",
        ),
        binds,
        69,
        True,
    )


def _dns_spec(binds: Mapping[str, Path]) -> DaemonSpec:
    """The DNS-only dnsmasq beside dnsmasq's DHCP (which runs with port=0), as
    contrib/dim-dns.service runs it on a site."""
    return DaemonSpec(
        "dns",
        (
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/etc/dim/dnsmasq-dns.conf",
            "--pid-file=",
            "--user=root",
            "--log-facility=-",
        ),
        binds,
        53,
        True,
    )


def _dhcp_spec(
    flavour: str,
    binds: Mapping[str, Path],
    run_dir: Path,
    *,
    iface: str = BRIDGE,
    pid_files: bool = False,
) -> DaemonSpec:
    if flavour == "dnsmasq":
        command = (
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/etc/dnsmasq.d/dim.conf",
            "--pid-file=/run/dnsmasq/dnsmasq.pid" if pid_files else "--pid-file=",
            f"--dhcp-leasefile={run_dir}/dnsmasq.leases",
            "--user=root",
            "--log-facility=-",
            "--log-dhcp",
        )
        return DaemonSpec("dnsmasq", command, binds, 67, True)
    if flavour == "kea":
        command = (
            "env",
            f"KEA_PIDFILE_DIR={'/run/kea' if pid_files else run_dir}",
            f"KEA_LOCKFILE_DIR={run_dir}",
            "kea-dhcp4",
            "-c",
            "/etc/kea/kea-dhcp4.conf",
        )
        kea = {"/var/lib/kea": run_dir / "kea", "/run/kea": run_dir / "kea"}
        return DaemonSpec("kea", command, binds | kea, 67, True)
    command = (
        "dhcpd",
        "-f",
        "-4",
        "-cf",
        "/etc/dhcp/dhcpd.conf",
        "-lf",
        f"{run_dir}/dhcpd.leases",
        # no pid file: a restarted dhcpd read its predecessor's and refused to start ("There's
        # already a DHCP server running"); the lab knows its daemons by the pid it spawned
        "--no-pid",
        iface,
    )
    if pid_files:
        # a failover server's keepalived checks dhcpd by Debian's pid file, which dhcpd -f
        # does not write: the shell that becomes dhcpd (exec: the same pid) writes it
        pid_file = "/run/dhcp-server/dhcpd.pid"
        command = ("sh", "-c", f'echo $$ > {pid_file} && exec "$@"', "dhcpd", *command)
    return DaemonSpec("isc", command, binds, 67, True)


def _prepare_run(folder: Path, servers: tuple[str, ...]) -> None:
    for run_dir in [folder / "run", *(folder / "servers" / s / "run" for s in servers)]:
        for sub in (*RUN_FOLDERS, *(p.rsplit("/", 1)[1] for p in SERVER_RUN)):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        (run_dir / "dhcpd.leases").touch()  # dhcpd refuses to start without it
        (run_dir.parent / "logs").mkdir(exist_ok=True)


def _start(state: LabState, spec: DaemonSpec, log: Path) -> Process:
    """Spawn ``spec`` in its namespace, under its server's host name."""
    namespace = spec.namespace or state.namespace
    return spawn(namespace, spec.name, spec.command, log, spec.binds, hostname=spec.hostname)


def log_path(folder: Path, name: str) -> Path:
    """``<lab>/logs/<daemon>.log``; a server's daemon: ``<lab>/servers/<server>/logs/…``."""
    server, _, daemon = name.rpartition("/")
    base = folder / "servers" / server if server else folder
    return base / "logs" / f"{daemon}.log"


def start_daemons(state: LabState, say: Say) -> LabState:
    """Start every daemon of the lab, saving the state after each (``down`` must see it)."""
    _prepare_run(state.folder, state.servers)
    for spec in lab_specs(state):
        process = _start(state, spec, log_path(state.folder, spec.name))
        state = state.with_daemon(process)
        state.save()
        if spec.port:
            namespace = spec.namespace or state.namespace
            wait_listening(namespace, process, spec.port, udp=spec.udp)
        say(f"{spec.name}: running (pid {process.pid})")
    return state


def restart_daemon(
    state: LabState, name: str, *, down_for: float = 0.0, say: Say | None = None
) -> tuple[LabState, Process]:
    """Stop the daemon ``name`` by its process id and start its spec again ``down_for`` s later.

    Saves the new process id before waiting for its port, as `start_daemons` does.
    """
    old = state.daemon(name)
    specs = {s.name: s for s in lab_specs(state)}
    if old is None or name not in specs:
        raise LabError(f"the lab runs no daemon {name!r}", hint="dim lab status lists them")
    stop(old.pid)
    if say:
        say(f"{name}: stopped (pid {old.pid})")
    time.sleep(down_for)
    spec = specs[name]
    process = _start(state, spec, Path(old.log))
    with locked(state.folder):  # the state as saved now: a BMC may have powered a node since
        state = (LabState.load(state.folder) or state).with_daemon(process)
        state.save()
    if spec.port:
        wait_listening(spec.namespace or state.namespace, process, spec.port, udp=spec.udp)
    if say:
        say(f"{name}: restarted (pid {process.pid})")
    return state, process
