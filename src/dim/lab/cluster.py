"""The virtual cluster on one machine: ``dim lab up|boot|status|down``.

One network namespace (``dimlab`` unless ``up`` is given another name) holds a bridge with
the image server's address, the real DHCP server and nfs-ganesha on dim's rendered
configuration, and ``dim serve``; QEMU nodes (TCG) on tap devices in the bridge PXE-boot from
it through iPXE. Everything the lab starts is
recorded in ``<lab>/lab.json`` by process id, so that ``down`` stops exactly that::

    <lab>/cluster.xml   examples/lab.xml with the chosen DHCP flavour
    <lab>/state/        dim's state: DB, images, replicas, boot builds
    <lab>/root/         what `dim apply --root` installed (configs, boot files)
    <lab>/logs/         daemon logs and one serial console per node
    <lab>/lab.json      namespace, daemons and nodes with their process ids

Daemons read dim's files at their usual paths (/etc/dim, /srv/dim, /etc/ganesha…): each runs
in a private mount namespace in which those folders are bind mounts of ``<lab>/root``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dim.lab.netns import LabError, ip, run, start, udp_listening

NAMESPACE = "dimlab"
BRIDGE = "br0"
SERVER = "10.77.0.1"
HTTP_PORT = 8080
MARKER = "DIM-NODE-UP"
OVMF = Path("/usr/share/ovmf/OVMF.fd")
BOUND = ("/etc/dim", "/etc/dnsmasq.d", "/etc/kea", "/etc/dhcp", "/etc/ganesha", "/srv/dim")

Say = Callable[[str], None]


@dataclass(slots=True)
class Process:
    name: str
    pid: int
    log: str
    tap: str = ""  # the tap device of a QEMU node


@dataclass(slots=True)
class LabState:
    """What ``lab.json`` records."""

    directory: str
    namespace: str = NAMESPACE
    flavour: str = "dnsmasq"
    daemons: list[Process] = field(default_factory=list)
    nodes: dict[str, Process] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.directory)

    def save(self) -> None:
        path = self.folder / "lab.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1))
        os.replace(temporary, path)

    @classmethod
    def load(cls, folder: Path) -> LabState | None:
        try:
            data = json.loads((folder / "lab.json").read_text())
        except FileNotFoundError:
            return None
        state = cls(data["directory"], data["namespace"], data["flavour"])
        state.daemons = [Process(**d) for d in data["daemons"]]
        state.nodes = {k: Process(**v) for k, v in data["nodes"].items()}
        return state


# -- processes --------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return False
    return fields[0] != "Z"


def stop(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``, to the process group the lab started."""
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
    namespace: str, name: str, command: list[str], log: Path, binds: dict[str, Path] | None = None
) -> Process:
    """Start ``command`` detached in the namespace, with private bind mounts."""
    for source in (binds or {}).values():
        source.mkdir(parents=True, exist_ok=True)
    lines = [
        f"mkdir -p {shlex.quote(t)} && mount --bind {shlex.quote(str(s))} {shlex.quote(t)}"
        for t, s in (binds or {}).items()
    ]
    script = " && ".join([*lines, f"exec {shlex.join(command)}"])
    daemon = start(
        namespace, ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], log=log
    )
    return Process(name, daemon.pid, str(log))


def dim_argv(folder: Path) -> list[str]:
    """This very dim, in a child process, on the lab's layout and state."""
    return [
        sys.executable,
        "-c",
        "import sys; from dim.cli import main; sys.exit(main())",
        "--config",
        str(folder / "cluster.xml"),
        "--state",
        str(folder / "state"),
    ]


def wait_listening(
    namespace: str, process: Process, port: int, *, udp: bool, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_listening(namespace, port) if udp else _tcp_listening(namespace, port):
            return
        if not alive(process.pid):
            break
        time.sleep(0.1)
    tail = Path(process.log).read_text(errors="replace").strip().splitlines()[-3:]
    raise LabError(
        f"{process.name} did not start (port {port}): {' | '.join(tail) or 'no output'}",
        hint=f"its log: {process.log}",
    )


def _tcp_listening(namespace: str, port: int) -> bool:
    """Whether a socket listens on TCP ``port`` (IPv4, or IPv6 as ganesha binds v4 too)."""
    text = run(namespace, ["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeout=5.0).stdout
    rows = [r.split() for r in text.splitlines() if r.strip() and not r.lstrip().startswith("sl")]
    return any(r[1].endswith(f":{port:04X}") and r[3] == "0A" for r in rows)


# -- the network -----------------------------------------------------------------------------


def make_network(namespace: str) -> None:
    """The namespace, its bridge with the server's address, and a veth pair keeping it up."""
    ip("netns", "add", namespace)
    ip("-n", namespace, "link", "set", "lo", "up")
    ip("-n", namespace, "link", "add", BRIDGE, "type", "bridge")
    ip("-n", namespace, "addr", "add", f"{SERVER}/24", "dev", BRIDGE)
    # Kea and ISC dhcpd refuse a bridge without carrier: a veth end in it keeps it up
    ip("-n", namespace, "link", "add", "keep0", "type", "veth", "peer", "name", "keep1")
    ip("-n", namespace, "link", "set", "keep0", "master", BRIDGE)
    for link in ("keep0", "keep1", BRIDGE):
        ip("-n", namespace, "link", "set", link, "up")


def namespace_exists(namespace: str) -> bool:
    return Path(f"/run/netns/{namespace}").exists()


def add_tap(namespace: str) -> str:
    links = run(namespace, ["ip", "-o", "link"]).stdout
    used = set(re.findall(r"\d+: (tap\d+)", links))
    tap = next(f"tap{i}" for i in range(4096) if f"tap{i}" not in used)
    ip("-n", namespace, "tuntap", "add", "dev", tap, "mode", "tap")
    ip("-n", namespace, "link", "set", tap, "master", BRIDGE)
    ip("-n", namespace, "link", "set", tap, "up")
    return tap


def remove_tap(namespace: str, tap: str) -> None:
    run(namespace, ["ip", "link", "del", tap], check=False)


# -- up, boot, status, down -------------------------------------------------------------------


def layout_text(flavour: str, nodes: int, examples: Path) -> str:
    """examples/lab.xml with the DHCP flavour and node count asked for."""
    text = (examples / "lab.xml").read_text()
    text = re.sub(r'dhcp="\w+"', f'dhcp="{flavour}"', text, count=1)
    return re.sub(r'nodes="node\[01-\d+\]"', f'nodes="node[01-{nodes:02}]"', text, count=1)


def daemon_commands(state: LabState) -> list[tuple[str, list[str], dict[str, Path], int, bool]]:
    """(name, command, bind mounts, port, udp) of every daemon the lab runs."""
    folder = state.folder
    root = folder / "root"
    binds = {path: root / path.lstrip("/") for path in BOUND}
    run_dir = folder / "run"
    commands: list[tuple[str, list[str], dict[str, Path], int, bool]] = []
    if state.flavour == "dnsmasq":
        commands.append(
            (
                "dnsmasq",
                [
                    "dnsmasq",
                    "--keep-in-foreground",
                    "--conf-file=/etc/dnsmasq.d/dim.conf",
                    "--pid-file=",
                    f"--dhcp-leasefile={run_dir}/dnsmasq.leases",
                    "--user=root",
                    "--log-facility=-",
                    "--log-dhcp",
                ],
                binds,
                67,
                True,
            )
        )
    elif state.flavour == "kea":
        commands.append(
            (
                "kea",
                [
                    "env",
                    f"KEA_PIDFILE_DIR={run_dir}",
                    f"KEA_LOCKFILE_DIR={run_dir}",
                    "kea-dhcp4",
                    "-c",
                    "/etc/kea/kea-dhcp4.conf",
                ],
                binds | {"/var/lib/kea": run_dir / "kea", "/run/kea": run_dir / "kea"},
                67,
                True,
            )
        )
    else:
        commands.append(
            (
                "isc",
                [
                    "dhcpd",
                    "-f",
                    "-4",
                    "-cf",
                    "/etc/dhcp/dhcpd.conf",
                    "-lf",
                    f"{run_dir}/dhcpd.leases",
                    "-pf",
                    f"{run_dir}/dhcpd.pid",
                    BRIDGE,
                ],
                binds,
                67,
                True,
            )
        )
    # router advertisements: without them iPXE waits 16 s for IPv6 autoconfiguration
    commands.append(
        (
            "ra",
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--pid-file=",
                "--enable-ra",
                f"--dhcp-range=::,constructor:{BRIDGE},ra-only",
                "--user=root",
                "--log-facility=-",
            ],
            {},
            0,
            True,
        )
    )
    commands.append(
        (
            "ganesha",
            [
                "ganesha.nfsd",
                "-F",
                "-f",
                "/etc/ganesha/ganesha.conf",
                "-L",
                str(folder / "logs" / "ganesha.log"),
                "-p",
                f"{run_dir}/ganesha.pid",
            ],
            binds | {"/var/lib/nfs": run_dir / "nfs-lib", "/run": run_dir / "nfs-run"},
            2049,
            False,
        )
    )
    commands.append(
        (
            "serve",
            [*dim_argv(folder), "serve", "--listen", SERVER, "--port", str(HTTP_PORT)],
            binds,
            HTTP_PORT,
            False,
        )
    )
    return commands


def start_daemons(state: LabState, say: Say) -> None:
    (state.folder / "run").mkdir(exist_ok=True)
    for sub in ("kea", "nfs-lib", "nfs-run"):
        (state.folder / "run" / sub).mkdir(exist_ok=True)
    (state.folder / "run" / "dhcpd.leases").touch()
    for name, command, binds, port, udp in daemon_commands(state):
        process = spawn(
            state.namespace, name, command, state.folder / "logs" / f"{name}.log", binds
        )
        state.daemons.append(process)
        state.save()
        if port:
            wait_listening(state.namespace, process, port, udp=udp)
        say(f"{name}: running (pid {process.pid})")


def restart(folder: Path, name: str, *, down_for: float = 0.0, say: Say | None = None) -> Process:
    """Stop the lab's daemon ``name`` by its process id and start it again, as ``up`` did,
    ``down_for`` seconds later (a server outage, for the tests).

    The nodes keep running: an NFS client retries until ganesha answers again.
    """
    state = _running(folder)
    found = [i for i, d in enumerate(state.daemons) if d.name == name]
    commands = {c[0]: c[1:] for c in daemon_commands(state)}
    if not found or name not in commands:
        raise LabError(f"the lab runs no daemon {name!r}", hint="dim lab status lists them")
    stop(state.daemons[found[0]].pid)
    if say:
        say(f"{name}: stopped (pid {state.daemons[found[0]].pid})")
    time.sleep(down_for)
    command, binds, port, udp = commands[name]
    process = spawn(state.namespace, name, command, Path(state.daemons[found[0]].log), binds)
    state.daemons[found[0]] = process
    state.save()
    if port:
        wait_listening(state.namespace, process, port, udp=udp)
    if say:
        say(f"{name}: restarted (pid {process.pid})")
    return process


def reload(folder: Path, *, say: Say | None = None) -> None:
    """``dim apply`` into the lab's root, then the daemons take it: after ``dim node switch``.

    ganesha is restarted rather than sent SIGHUP: a switch changes the path of a node's
    export under the same export id, which a reload does not apply. dnsmasq rereads its
    hosts files on SIGHUP.
    """
    state = _running(folder)
    dim(folder, "apply", "--root", str(folder / "root"), "--no-reload")
    for daemon in state.daemons:
        if daemon.name == "dnsmasq" and alive(daemon.pid):
            os.kill(daemon.pid, signal.SIGHUP)
    restart(folder, "ganesha", say=say)


def qemu_command(mac: str, tap: str, console: Path, *, uefi: bool, memory: int) -> list[str]:
    command = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-m",
        str(memory),
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        # the console: a socket to type into (tests, `dim lab run`), logged to a file
        "-chardev",
        f"socket,id=console,path={console.with_suffix('.sock')},server=on,wait=off,"
        f"logfile={console},logappend=on",
        "-serial",
        "chardev:console",
        "-netdev",
        f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={mac},bootindex=1",
        "-boot",
        "n",
        "-no-reboot",
    ]
    if uefi:
        command += ["-bios", str(OVMF)]
    return command


def stop_all(state: LabState) -> None:
    for process in [*state.nodes.values(), *reversed(state.daemons)]:
        stop(process.pid)
    state.nodes.clear()
    state.daemons.clear()


def node_macs(count: int) -> dict[str, str]:
    return {f"node{n:02}": f"52:54:00:77:00:{n:02x}" for n in range(1, count + 1)}


def dim(folder: Path, *args: str) -> None:
    """Run a dim command on the lab's layout and state, in this process."""
    from dim.cli import main

    status = main(
        ["--config", str(folder / "cluster.xml"), "--state", str(folder / "state"), *args]
    )
    if status != 0:
        raise LabError(f"dim {' '.join(args)} failed (exit status {status})")


def up(
    folder: Path,
    *,
    flavour: str = "dnsmasq",
    nodes: int = 2,
    debian: bool = False,
    examples: Path,
    say: Say,
    namespace: str = NAMESPACE,
) -> LabState:
    """Build the lab's network, image and configuration, and start its daemons.

    ``namespace`` names the lab's network namespace: two labs (a hand-run one and a test's)
    can be up at once when their namespaces differ.
    """
    from dim.lab import images

    existing = LabState.load(folder)
    if existing is not None and namespace_exists(existing.namespace):
        raise LabError(
            f"the lab in {folder} is up already",
            hint="dim lab status shows it; dim lab down stops it",
        )
    for sub in ("logs", "state", "root"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "cluster.xml").write_text(layout_text(flavour, nodes, examples))
    macs = folder / "macs.csv"
    macs.write_text("".join(f"{n},{m}\n" for n, m in node_macs(nodes).items()))
    if namespace_exists(namespace):
        raise LabError(
            f"the network namespace {namespace} exists already (another lab?)",
            hint="dim lab down --dir FOLDER stops the lab that made it; or pick another name",
        )
    state = LabState(str(folder), namespace, flavour)
    make_network(namespace)
    ip("-n", namespace, "-6", "addr", "add", "fd77::1/64", "dev", BRIDGE, "nodad")
    state.save()
    try:
        say("image: tiny (busybox and the Debian kernel)")
        kernel = images.fetch_kernel()
        shutil.rmtree(folder / "trees" / "tiny", ignore_errors=True)
        tree = images.tiny_tree(folder / "trees" / "tiny", kernel)
        _import(folder, "tiny", tree)
        _import(folder, "tiny2", tree)  # another image to switch to
        built = ["tiny", "tiny2"]
        if debian:
            say("image: debian (minbase with systemd)")
            shutil.rmtree(folder / "trees" / "debian", ignore_errors=True)
            tree = images.debian_tree(folder / "trees" / "debian", kernel, progress=say)
            _import(folder, "debian", tree)
            built.append("debian")
        for image in built:
            dim(folder, "boot", "build", image)
        dim(folder, "node", "import-macs", str(macs))
        dim(folder, "apply", "--root", str(folder / "root"), "--no-reload")
        start_daemons(state, say)
    except BaseException:
        down(folder)
        raise
    return state


def _import(folder: Path, image: str, tree: Path) -> None:
    from dim.images.store import Store

    verb = "sync" if Store(folder / "state").exists(image) else "import"
    dim(folder, "image", verb, image, "--from", str(tree))


def boot(
    folder: Path, names: list[str], *, uefi: bool = False, memory: int = 384, say: Say
) -> LabState:
    """Start (or restart) QEMU nodes; each one PXE-boots through iPXE."""
    state = _running(folder)
    macs = node_macs(99)
    for name in names:
        if name not in macs:
            raise LabError(f"unknown lab node {name!r}")
        previous = state.nodes.pop(name, None)
        if previous is not None:
            stop(previous.pid)
            remove_tap(state.namespace, previous.tap)
        console = folder / "logs" / f"{name}.console"
        if console.exists():
            console.replace(console.with_suffix(".console.1"))
        console.touch()
        tap = add_tap(state.namespace)
        process = spawn(
            state.namespace,
            name,
            qemu_command(macs[name], tap, console, uefi=uefi, memory=memory),
            folder / "logs" / f"{name}.qemu.log",
        )
        process.tap = tap
        state.nodes[name] = process
        state.save()
        say(f"{name}: powered on ({'UEFI' if uefi else 'BIOS'}, pid {process.pid})")
    return state


def power_off(folder: Path, names: list[str], *, say: Say | None = None) -> None:
    """Stop the QEMU of each node by its process id (a pulled plug) and remove its tap."""
    state = _running(folder)
    for name in names:
        process = state.nodes.pop(name, None)
        if process is None:
            continue
        stop(process.pid)
        remove_tap(state.namespace, process.tap)
        state.save()
        if say:
            say(f"{name}: powered off")


def console(folder: Path, name: str) -> str:
    path = folder / "logs" / f"{name}.console"
    return path.read_text(errors="replace") if path.exists() else ""


STAGES = (
    ("Linux version", "kernel started"),
    ("dim: step", "initramfs running"),
    ("dim: switching root", "switching to the image"),
    (MARKER, "up"),
)


def watch(
    folder: Path, names: list[str], *, timeout: float, say: Say, until: str = MARKER
) -> dict[str, float | None]:
    """Follow the nodes' consoles; say each stage as it is reached. Seconds to ``until``."""
    started = time.monotonic()
    reached: dict[str, set[str]] = {n: set() for n in names}
    done: dict[str, float | None] = {n: None for n in names}
    while time.monotonic() - started < timeout and any(v is None for v in done.values()):
        state = LabState.load(folder)
        for name in names:
            if done[name] is not None:
                continue
            text = console(folder, name)
            elapsed = time.monotonic() - started
            for needle, label in STAGES:
                if needle in text and label not in reached[name]:
                    reached[name].add(label)
                    say(f"{name}  {elapsed:5.1f} s  {label}")
            for line in text.splitlines():
                if "dim: step" in line and line not in reached[name]:
                    reached[name].add(line)
                    say(f"{name}  {elapsed:5.1f} s    {line.strip()}")
            if until in text:
                done[name] = elapsed
            elif state is not None and name in state.nodes and not alive(state.nodes[name].pid):
                say(f"{name}  {elapsed:5.1f} s  powered off")
                done[name] = -1.0
        time.sleep(0.25)
    return done


def status(folder: Path) -> dict:
    state = LabState.load(folder)
    if state is None:
        return {"up": False, "folder": str(folder)}
    nodes = {}
    for name, process in state.nodes.items():
        text = console(folder, name)
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
        nodes[name] = {
            "pid": process.pid,
            "running": alive(process.pid),
            "up": MARKER in text,
            "console": last[-100:],
        }
    return {
        "up": namespace_exists(state.namespace),
        "folder": str(folder),
        "flavour": state.flavour,
        "daemons": {
            d.name: {"pid": d.pid, "running": alive(d.pid), "log": d.log} for d in state.daemons
        },
        "nodes": nodes,
    }


def down(folder: Path) -> list[str]:
    """Stop every process the lab started and delete its namespace; files stay."""
    state = LabState.load(folder)
    stopped = []
    if state is not None:
        stopped = [p.name for p in [*state.nodes.values(), *state.daemons]]
        stop_all(state)
        state.save()
        namespace = state.namespace
    else:
        namespace = NAMESPACE
    if namespace_exists(namespace):
        ip("netns", "del", namespace)
    return stopped


def _running(folder: Path) -> LabState:
    state = LabState.load(folder)
    if state is None or not namespace_exists(state.namespace):
        raise LabError(f"no lab is up in {folder}", hint="dim lab up starts one")
    return state


def sleep_until(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def console_run(folder: Path, name: str, command: str, *, timeout: float = 30.0) -> tuple[int, str]:
    """Run a shell command on a lab node through its serial console: (status, output).

    The lab image keeps a root shell on the console; the output is found between two markers
    that only the execution of the line can print, never its echo: the echoed line holds
    ``@@BEGIN-ab''cd1234@@`` and ``$?``, the output ``@@BEGIN-abcd1234@@`` and a number. The
    echo itself cannot be relied on: the shell wraps it at 80 columns, anywhere.
    """
    import secrets
    import socket

    token = secrets.token_hex(4)
    begin = f"@@BEGIN-{token}@@\n"
    marker = re.compile(rf"@@END-{token}-(\d+)@@")
    line = f"echo @@BEGIN-{token[:2]}''{token[2:]}@@; {command}; echo @@END-{token}-$?@@\n"
    path = folder / "logs" / f"{name}.sock"
    received = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.settimeout(1.0)
        try:
            channel.connect(str(path))
        except OSError as exc:
            raise LabError(
                f"cannot reach the console of {name}: {exc.strerror}",
                hint="is the node running? dim lab status",
            ) from None
        channel.sendall(line.encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = channel.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
            text = received.decode(errors="replace").replace("\r", "")
            found = marker.search(text)
            if found:
                start = text.find(begin)
                body = text[start + len(begin) : found.start()] if start >= 0 else ""
                return int(found.group(1)), body
    raise LabError(f"{name} did not finish {command!r} within {timeout} s")


# -- BMCs: dim power drives the lab's nodes through simulated IPMI BMCs ----------------------

BMC_USER = "admin"


def bmc_address(name: str) -> str:
    """The address examples/lab.xml gives a node's BMC: 127.0.10.N for nodeNN."""
    return f"127.0.10.{int(name.removeprefix('node'))}"


def start_bmcs(folder: Path, names: list[str], *, say: Say | None = None) -> Path:
    """A simulated IPMI BMC per node, on its loopback address: ``dim power on`` starts its
    QEMU node (which PXE-boots), ``off`` stops it, ``reset`` restarts it. Returns the
    credentials file for ``DIM_CREDENTIALS``."""
    import secrets

    state = _running(folder)
    password = folder / "bmc-password"
    credentials = folder / "credentials"
    if not password.exists():
        secret = secrets.token_hex(8)
        for path, text in (
            (password, f"{secret}\n"),
            (credentials, f'[lab]\nusername = "{BMC_USER}"\npassword = "{secret}"\n'),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
    macs = node_macs(99)
    for name in names:
        tap = add_tap(state.namespace)
        console = folder / "logs" / f"{name}.console"
        console.touch()
        qemu = [
            "ip",
            "netns",
            "exec",
            state.namespace,
            *qemu_command(macs[name], tap, console, uefi=False, memory=384),
        ]
        log = folder / "logs" / f"bmc-{name}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dim.lab.bmcsim",
                    "--address",
                    bmc_address(name),
                    "--user",
                    BMC_USER,
                    "--password-file",
                    str(password),
                    "--",
                    *qemu,
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        state.daemons.append(Process(f"bmc-{name}", process.pid, str(log), tap))
        state.save()
        if not sleep_until(lambda log=log: "listening" in log.read_text(errors="replace"), 15):
            raise LabError(f"the BMC of {name} did not start", hint=f"its log: {log}")
        if say:
            say(f"{name}: BMC on {bmc_address(name)} (ipmi, credentials 'lab' in {credentials})")
    return credentials
