"""The lab's daemons, declared: what each runs, with which bind mounts, and where it listens.

`daemon_specs` is the whole table, a pure function of the lab's folder and DHCP flavour;
`start_daemons` starts every spec in order, `restart_daemon` one of them by name::

    for spec in daemon_specs(Path("/var/tmp/dim-lab"), "kea"):
        print(spec.name, spec.port, "udp" if spec.udp else "tcp")
    # kea 67 udp / ra 0 udp / ganesha 2049 tcp / serve 8080 tcp

Each daemon runs the real program on dim's rendered files at their usual paths: ``binds``
maps those paths (/etc/dim, /etc/kea, /srv/dim…) to the lab's ``root/`` folder, in a mount
namespace private to the daemon. What a daemon writes at run time (leases, pid and lock
files, ganesha's recovery folder) goes under the lab's ``run/`` folder.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dim.errors import LabError
from dim.lab.network import BRIDGE, SERVER
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


def daemon_specs(folder: Path, flavour: str) -> list[DaemonSpec]:
    """Every daemon of a lab in ``folder`` with DHCP ``flavour``, in the order to start them."""
    root, run_dir = folder / "root", folder / "run"
    binds = {path: root / path.lstrip("/") for path in BOUND}
    # Kea and dhcpd serve no TFTP: dnsmasq does, from the TFTP-only file dim apply renders
    tftp = DaemonSpec(
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
    return [
        _dhcp_spec(flavour, binds, run_dir),
        *([tftp] if flavour != "dnsmasq" else []),
        # router advertisements: without them iPXE waits 16 s for IPv6 autoconfiguration
        DaemonSpec(
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
        ),
        DaemonSpec(
            "ganesha",
            (
                "ganesha.nfsd",
                "-F",
                "-f",
                "/etc/ganesha/ganesha.conf",
                "-L",
                str(folder / "logs" / "ganesha.log"),
                "-p",
                f"{run_dir}/ganesha.pid",
            ),
            binds | {"/var/lib/nfs": run_dir / "nfs-lib", "/run": run_dir / "nfs-run"},
            2049,
            False,
        ),
        DaemonSpec(
            "serve",
            (*dim_argv(folder), "serve", "--listen", SERVER, "--port", str(HTTP_PORT)),
            binds,
            HTTP_PORT,
            False,
        ),
    ]


def _dhcp_spec(flavour: str, binds: dict[str, Path], run_dir: Path) -> DaemonSpec:
    if flavour == "dnsmasq":
        command = (
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/etc/dnsmasq.d/dim.conf",
            "--pid-file=",
            f"--dhcp-leasefile={run_dir}/dnsmasq.leases",
            "--user=root",
            "--log-facility=-",
            "--log-dhcp",
        )
        return DaemonSpec("dnsmasq", command, binds, 67, True)
    if flavour == "kea":
        command = (
            "env",
            f"KEA_PIDFILE_DIR={run_dir}",
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
        BRIDGE,
    )
    return DaemonSpec("isc", command, binds, 67, True)


def start_daemons(state: LabState, say: Say) -> LabState:
    """Start every daemon of the lab, saving the state after each (``down`` must see it)."""
    run_dir = state.folder / "run"
    for sub in RUN_FOLDERS:
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    (run_dir / "dhcpd.leases").touch()  # dhcpd refuses to start without it
    for spec in daemon_specs(state.folder, state.flavour):
        log = state.folder / "logs" / f"{spec.name}.log"
        process = spawn(state.namespace, spec.name, spec.command, log, spec.binds)
        state = state.with_daemon(process)
        state.save()
        if spec.port:
            wait_listening(state.namespace, process, spec.port, udp=spec.udp)
        say(f"{spec.name}: running (pid {process.pid})")
    return state


def restart_daemon(
    state: LabState, name: str, *, down_for: float = 0.0, say: Say | None = None
) -> tuple[LabState, Process]:
    """Stop the daemon ``name`` by its process id and start its spec again ``down_for`` s later.

    Saves the new process id before waiting for its port, as `start_daemons` does.
    """
    old = state.daemon(name)
    specs = {s.name: s for s in daemon_specs(state.folder, state.flavour)}
    if old is None or name not in specs:
        raise LabError(f"the lab runs no daemon {name!r}", hint="dim lab status lists them")
    stop(old.pid)
    if say:
        say(f"{name}: stopped (pid {old.pid})")
    time.sleep(down_for)
    spec = specs[name]
    process = spawn(state.namespace, name, spec.command, Path(old.log), spec.binds)
    with locked(state.folder):  # the state as saved now: a BMC may have powered a node since
        state = (LabState.load(state.folder) or state).with_daemon(process)
        state.save()
    if spec.port:
        wait_listening(state.namespace, process, spec.port, udp=spec.udp)
    if say:
        say(f"{name}: restarted (pid {process.pid})")
    return state, process
