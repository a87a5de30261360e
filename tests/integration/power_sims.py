"""BMC and PDU simulators for the remote-control tests, started and stopped by process id.

::

    with ipmi_sim(tmp_path) as sim:                 # OpenIPMI's ipmi_sim on 127.0.0.1:<port>
        ...sim.address, sim.state("power")

Each simulator listens on loopback only. Whatever fails to start is a test failure naming the
simulator's log, never a hang: every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require, require_binary

# run as a script: it needs nothing but the standard library (and uvloop where installed)
FLEET = Path(__file__).resolve().parents[1] / "doubles" / "redfish_fleet.py"

VENV_BIN = Path(sys.executable).parent
SNMPSIM_VENV = Path("/var/cache/dim-tests/snmpsim-venv")
USER, PASSWORD = "admin", "sim-secret-4711"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def process(
    argv: list[str], log: Path, ready: Callable[[], bool], *, timeout: float = 20.0, **popen
) -> Iterator[subprocess.Popen]:
    """Run ``argv`` until the block ends; wait until ``ready()``; stop it by its pid."""
    with open(log, "wb") as out:
        child = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **popen
        )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{argv[0]} did not start; its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield child
    finally:
        child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _log_says(log: Path, words: str) -> Callable[[], bool]:
    return lambda: log.exists() and words in log.read_text(errors="replace")


def _tcp_open(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            return False

    return probe


# -- OpenIPMI ipmi_sim -------------------------------------------------------------------------

CHASSIS = """#!/bin/sh
# ipmi_sim's chassis_control program: "$0 DEVICE get PARM…" or "$0 DEVICE set PARM VALUE…".
dir=$(dirname "$0")
op=$2; shift 2
case $op in
  get) for p in "$@"; do
         case $p in
           power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)";;
           boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)";;
           *) echo "Invalid parameter: $p"; exit 1;;
         esac; done;;
  set) while [ $# -gt 1 ]; do
         case $1 in
           power) echo "$2" > "$dir/power";;
           shutdown) echo 0 > "$dir/power";;
           reset) echo x >> "$dir/resets";;
           boot) echo "$2" > "$dir/boot";;
         esac; shift 2; done;;
  *) exit 1;;
esac
"""

LAN_CONF = """name "dimsim"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{folder}/chassis.sh 0x20"
  user 2 true "{user}" "{password}" admin 10 none md2 md5 straight
"""

EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""


@dataclass
class Sim:
    address: str
    folder: Path

    def state(self, name: str) -> str:
        path = self.folder / name
        return path.read_text().strip() if path.exists() else ""


def _ipmitool(port: int, *args: str) -> subprocess.CompletedProcess:
    # -E: the password comes from $IPMI_PASSWORD, never from the command line.
    return subprocess.run(
        ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(port)]
        + ["-U", USER, "-E", *args],
        env={**os.environ, "IPMI_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=15,
    )


@contextmanager
def ipmi_sim(folder: Path) -> Iterator[Sim]:
    require_binary("ipmi_sim", "openipmi")
    require_binary("ipmitool", "ipmitool")
    port = free_port(socket.SOCK_DGRAM)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state").mkdir(exist_ok=True)
    script = folder / "chassis.sh"
    script.write_text(CHASSIS)
    script.chmod(0o755)
    (folder / "lan.conf").write_text(
        LAN_CONF.format(port=port, folder=folder, user=USER, password=PASSWORD)
    )
    (folder / "sim.emu").write_text(EMU)
    argv = ["ipmi_sim", "-c", str(folder / "lan.conf"), "-f", str(folder / "sim.emu")]
    argv += ["-s", str(folder / "state"), "-n"]

    def ready() -> bool:
        return _ipmitool(port, "chassis", "power", "status").returncode == 0

    with process(argv, folder / "ipmi_sim.log", ready):
        yield Sim(f"127.0.0.1:{port}", folder)


# -- dim's pyghmi-based BMC (dim.lab.bmcsim) ---------------------------------------------------


@contextmanager
def bmcsim(folder: Path, command: list[str]) -> Iterator[Sim]:
    port = free_port(socket.SOCK_DGRAM)
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    argv = [sys.executable, "-m", "dim.lab.bmcsim", "--port", str(port), "--user", USER]
    argv += ["--password-file", str(secret), "--", *command]
    log = folder / "bmcsim.log"
    with process(argv, log, _log_says(log, "listening")):
        yield Sim(f"127.0.0.1:{port}", folder)


# -- sushy-tools' Redfish emulator, fake driver --------------------------------------------------

SUSHY_SYSTEMS = [
    {
        "uuid": "27946b59-9e44-4fa7-8e91-f3527a1ef094",
        "name": "fake1",
        "power_state": "Off",
        "nics": [{"mac": "00:5c:52:31:3a:9c", "ip": "172.22.0.100"}],
    },
    {
        "uuid": "48295434-a8c9-4ee6-9f7f-3a45bd4ea6fa",
        "name": "fake2",
        "power_state": "On",
        "nics": [
            {"mac": "00:5c:52:31:3a:ad", "ip": "172.22.0.101"},
            {"mac": "00:5c:52:31:3a:ae", "ip": "172.22.0.102"},
        ],
    },
]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, made with openssl."""
    require_binary("openssl", "openssl")
    cert, key = folder / "bmc.pem", folder / "bmc.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def sushy(folder: Path, *, auth: bool = False, tls: bool = False) -> Iterator[str]:
    """sushy-emulator with its fake driver; yields ``http[s]://127.0.0.1:PORT``."""
    emulator = VENV_BIN / "sushy-emulator"
    require(emulator.exists(), "sushy-tools is not installed (pip install -e '.[test]')")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = [
        "SUSHY_EMULATOR_FAKE_DRIVER = True",
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {SUSHY_SYSTEMS!r}",
        "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
        f"SUSHY_EMULATOR_LISTEN_PORT = {port}",
        f"SUSHY_EMULATOR_STATE_DIR = {str(folder / 'state')!r}",
    ]
    if auth:
        import bcrypt

        digest = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (folder / "htpasswd").write_text(f"{USER}:{digest}\n")
        config.append(f"SUSHY_EMULATOR_AUTH_FILE = {str(folder / 'htpasswd')!r}")
    if tls:
        cert, key = self_signed(folder)
        config.append(f"SUSHY_EMULATOR_SSL_CERT = {str(cert)!r}")
        config.append(f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}")
    (folder / "emulator.conf").write_text("\n".join(config) + "\n")
    argv = [str(emulator), "--config", str(folder / "emulator.conf")]
    with process(argv, folder / "sushy.log", _tcp_open("127.0.0.1", port)):
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"


# -- dim's Redfish fleet ------------------------------------------------------------------------


@contextmanager
def redfish_fleet(folder: Path, count: int, *extra: str, first: int = 101) -> Iterator[int]:
    """The fleet on 127.<first>.x.y; yields its port."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(FLEET), "--count", str(count)]
    argv += ["--port", str(port), "--first", str(first), "--user", USER, "--password", PASSWORD]
    argv += list(extra)
    log = folder / "fleet.log"
    with process(argv, log, _log_says(log, "ready")):
        yield port


# -- snmpsim, in a virtual environment that nobody can read -------------------------------------


def snmpsim_venv() -> Path:
    """snmpsim refuses to run as root and drops to nobody, who must be able to read its venv."""
    responder = SNMPSIM_VENV / "bin" / "snmpsim-command-responder"
    if not responder.exists():
        require(Path("/usr/bin/python3").exists(), "/usr/bin/python3 is missing")
        shutil.rmtree(SNMPSIM_VENV, ignore_errors=True)
        SNMPSIM_VENV.parent.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["/usr/bin/python3", "-m", "venv", str(SNMPSIM_VENV)], check=True)
            subprocess.run(
                [str(SNMPSIM_VENV / "bin" / "pip"), "install", "-q", "snmpsim", "pysmi"],
                check=True,
                timeout=600,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(SNMPSIM_VENV, ignore_errors=True)
            require(False, f"cannot build snmpsim's virtual environment ({exc})")
    subprocess.run(["chmod", "-R", "a+rX", str(SNMPSIM_VENV)], check=True)
    for parent in SNMPSIM_VENV.parents:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    return responder


@contextmanager
def snmpsim(records: str, community: str) -> Iterator[int]:
    """snmpsim serving ``records`` (snmprec lines) under ``community``; yields its UDP port."""
    responder = snmpsim_venv()
    port = free_port(socket.SOCK_DGRAM)
    folder = Path(tempfile.mkdtemp(prefix="dim-snmpsim-"))
    try:
        folder.chmod(0o755)
        (folder / "data").mkdir(mode=0o755)
        (folder / "data" / f"{community}.snmprec").write_text(records)
        (folder / "cache").mkdir(mode=0o777)
        for path in folder.rglob("*"):
            path.chmod(0o777 if path.name == "cache" else (0o755 if path.is_dir() else 0o644))
        argv = [str(responder), f"--data-dir={folder / 'data'}", f"--cache-dir={folder / 'cache'}"]
        argv += [f"--agent-udpv4-endpoint=127.0.0.1:{port}"]
        argv += ["--process-user=nobody", "--process-group=nogroup"]
        log = folder / "snmpsim.log"
        with process(argv, log, _log_says(log, "Listening at UDP/IPv4 endpoint"), timeout=60):
            yield port
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- a layout, a credentials file and the dim command --------------------------------------------

CLUSTER_HEAD = """<?xml version="1.0"?>
<cluster name="p" domain="p.example">
  <network name="boot" subnet="10.20.0.0/16"/>
  <server name="srv" address="10.20.0.2" dhcp="dnsmasq" nfs="ganesha"/>
"""


@dataclass
class Lab:
    """A cluster.xml whose nodes have the given BMCs, a credentials file, and ``dim``."""

    folder: Path
    capsys: pytest.CaptureFixture

    def layout(self, bmcs: dict[str, tuple[str, str, str]]) -> None:
        """``{node: (driver, address, credentials entry)}``, one group per node."""
        groups = [
            f'  <group name="g{i}" nodes="{node}">\n'
            f'    <interface network="boot" ip="10.20.{i // 250}.{10 + i % 250}"/>\n'
            f'    <bmc driver="{driver}" address="{address}" credentials="{entry}"/>\n'
            f"  </group>\n"
            for i, (node, (driver, address, entry)) in enumerate(bmcs.items())
        ]
        (self.folder / "cluster.xml").write_text(CLUSTER_HEAD + "".join(groups) + "</cluster>\n")

    def credentials(self, text: str, mode: int = 0o600) -> None:
        path = self.folder / "credentials"
        path.write_text(text)
        path.chmod(mode)

    def dim(self, *args: str) -> tuple[int, str, str]:
        from dim.cli import main

        self.capsys.readouterr()
        status = main(
            ["--config", str(self.folder / "cluster.xml"), "--state", str(self.folder / "state")]
            + list(args)
            + ["--credentials", str(self.folder / "credentials")] * (args[0] != "node")
        )
        out, err = self.capsys.readouterr()
        return status, out, err


def fanout_seconds(err: str) -> float:
    """The seconds the fan-out itself took, from ``dim power``'s summary line on stderr
    (``8 nodes: 3 ok, 5 failed (1.6 s)``): the run without dim's start and imports."""
    found = re.search(r"^\d+ nodes?: \d+ ok, \d+ failed \((\d+\.\d) s\)$", err, re.M)
    assert found, err
    return float(found.group(1))


def entry(name: str, password: str = PASSWORD, **extra: str) -> str:
    lines = [f"[{name}]", f'username = "{USER}"', f'password = "{password}"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"
