"""End-to-end fixtures: one `dim lab` for the whole session, its QEMU nodes booted by PXE.

The lab is the one ``dim lab up --debian 12,13`` builds (examples/lab.xml with seven nodes), in a
network namespace of its own (``dime2e<pid>``), so that a lab someone runs by hand in
``dimlab`` is left alone. Nodes PXE-boot for real: QEMU's iPXE ROM, dnsmasq on dim's rendered
configuration, ``dim serve``'s per-MAC script, kernel and initrd over HTTP, the root over NFS
from nfs-ganesha::

    def test_something(lab: Lab, fleet: Fleet) -> None:
        status, output = lab.run("node01", "cat /etc/hostname")
        assert (lab.replica("node01", "tiny") / "etc/x").exists()

``fleet`` boots node01–node03 (BIOS) and node04 (UEFI) at once, once per session; tests share
those boots. Who uses which node, so that tests do not disturb each other:

    node01  persistence and reboot (b), isolation (c), NFS server restart (faults)
    node02  isolation (c), live image changes (e)
    node03  switch to tiny2 and back (d)
    node04  UEFI (f), dim lab run (read-only commands)
    node05  the Debian 12 and 13 images with systemd (g); UEFI PXE and HTTP boot without ROM
    node06  powered on and off through its simulated IPMI BMC (issue 5)
    node07  never booted: node04 takes its address and mounts its export (security)

Everything the lab starts is stopped by its process id and the namespace deleted at the end
of the session, failed or not. Needs root, QEMU, dnsmasq, nfs-ganesha, OVMF, busybox-static,
kmod, debootstrap and the Debian mirror (kernel and minbase are cached in /var/cache): the
tests skip without them, and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dim.errors import LabError
from dim.lab import cluster, console, images, postgres
from dim.lab import store as lab_store
from dim.lab.daemons import HTTP_PORT, dim_argv
from dim.lab.images import MARKER
from dim.lab.network import SERVER
from dim.lab.qemu import OVMF
from dim.lab.state import LabState
from dim.lab.workload import ERRORS
from dim.paths import StatePaths
from tests.conftest import require, require_binary, require_root

NODES = 7
BOOT_TIMEOUT = 240.0  # TCG on 2 cores: 15 to 25 s for one node, up to a minute for four
IPXE_ROM = Path("/usr/lib/ipxe/qemu/pxe-virtio.rom")
GANESHA_VFS = Path("/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so")


def require_e2e() -> None:
    """Skip (fail under CI) unless a lab can run: root, the daemons, QEMU and its firmware."""
    require_root()
    for program, package in (
        ("ip", "iproute2"),
        ("busybox", "busybox-static"),
        ("depmod", "kmod"),
        ("dnsmasq", "dnsmasq"),
        ("ganesha.nfsd", "nfs-ganesha"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("debootstrap", "debootstrap"),
        ("curl", "curl"),
    ):
        require_binary(program, package)
    require(GANESHA_VFS.exists(), "ganesha's VFS FSAL is missing (apt-get install nfs-ganesha-vfs)")
    require(IPXE_ROM.exists(), "QEMU's iPXE ROMs are missing (apt-get install ipxe-qemu)")
    require(OVMF.exists(), f"{OVMF} is missing (apt-get install ovmf)")
    require(os.path.exists("/dev/net/tun"), "no /dev/net/tun for QEMU's tap devices")


def require_ceph_lab() -> None:
    """`require_e2e`, and what a lab of two servers on CephFS needs (``dim lab up --servers 2
    --store ceph``): keepalived, PostgreSQL, Ceph and ganesha's CephFS back end."""
    require_e2e()
    require_binary("keepalived", "keepalived")
    require(postgres.available(), "PostgreSQL 15 is missing (apt-get install postgresql-15)")
    try:
        lab_store.check_available()
    except LabError as missing:
        require(False, f"{missing.message} ({missing.hint})")


@dataclass(slots=True)
class Lab:
    """A running `dim lab` and what the tests do with it."""

    folder: Path
    namespace: str
    said: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.folder / "state"

    def say(self, message: str) -> None:
        self.said.append(message)

    # -- nodes -------------------------------------------------------------------------------

    def boot(
        self,
        names: list[str],
        *,
        uefi: bool = False,
        firmware: str | None = None,
        timeout: float = BOOT_TIMEOUT,
    ) -> dict[str, float]:
        """Power on (or reset) ``names`` and wait for each one's marker: seconds to it."""
        self.power_on(names, uefi=uefi, firmware=firmware)
        return self.wait(names, timeout=timeout)

    def power_on(
        self, names: list[str], *, uefi: bool = False, firmware: str | None = None
    ) -> None:
        """Power on (or reset) ``names`` without waiting: for boots that must not succeed."""
        cluster.boot(self.folder, names, uefi=uefi, firmware=firmware, say=self.say)

    def wait(self, names: list[str], *, timeout: float = BOOT_TIMEOUT) -> dict[str, float]:
        done = cluster.watch(self.folder, names, timeout=timeout, say=self.say)
        late = [n for n, t in done.items() if t is None or t < 0]
        if late:
            tails = "\n".join(f"--- {n}:\n{self.tail(n)}" for n in late)
            pytest.fail(f"{', '.join(late)}: no {MARKER} within {timeout} s\n{tails}")
        return {n: float(t) for n, t in done.items() if t is not None}

    def power_off(self, names: list[str]) -> None:
        cluster.power_off(self.folder, names, say=self.say)

    def console(self, name: str) -> str:
        """The node's serial console since its last power-on, carriage returns dropped."""
        return console.read(self.folder, name).replace("\r", "")

    def tail(self, name: str, lines: int = 40) -> str:
        return "\n".join(self.console(name).splitlines()[-lines:])

    def marker(self, name: str) -> re.Match[str]:
        found = re.search(rf"^{MARKER} (\S+) (\S+) root=(\S+)$", self.console(name), re.M)
        assert found, f"{name}: no marker line on the console:\n{self.tail(name)}"
        return found

    def run(self, name: str, command: str, *, timeout: float = 30.0) -> tuple[int, str]:
        """A shell command on the node's serial console: (exit status, output).

        The kernel prints on the same console: its messages (``[  112.49] kvm_amd: …``, when
        udev loads a module late), at the start of a line or inside one, are left out of the
        output. A command that reports the kernel's log must print it in another form (as
        `dim.lab.workload.ERRORS` does).
        """
        status, output = console.console_run(self.folder, name, command, timeout=timeout)
        return status, console.without_kernel_messages(output)

    def wait_for(self, name: str, command: str, expected: str, *, timeout: float) -> float:
        """``run`` ``command`` on the node until it prints ``expected``: seconds it took."""
        started = time.monotonic()
        while True:
            status, output = self.run(name, command, timeout=10)
            if status == 0 and output == expected:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                pytest.fail(
                    f"{name}: {command!r} said {output!r} (status {status}) after {timeout} s"
                )
            time.sleep(0.2)

    def ok(self, name: str, command: str, *, timeout: float = 30.0) -> str:
        """``run``, asserting exit status 0; the output."""
        status, output = self.run(name, command, timeout=timeout)
        assert status == 0, f"{name}: {command!r} exited with {status}:\n{output}" + (
            self.why(name)
        )
        return output

    def why(self, name: str) -> str:
        """What a failed command leaves to read: the node's NFS client's kernel messages and
        the end of each ganesha log of the lab (an Input/output error on a node, CI
        2026-12-02, came with nothing else to go on)."""
        parts = []
        try:
            parts.append(f"{name}'s NFS messages:\n{self.run(name, ERRORS, timeout=10)[1]}")
        except Exception as error:  # noqa: BLE001 - a node in trouble may not answer
            parts.append(f"{name}'s shell did not answer: {error}")
        logs = [self.folder / "logs/ganesha.log", *self.folder.glob("servers/*/logs/ganesha.log")]
        for log in filter(Path.exists, logs):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"{log.relative_to(self.folder)}:\n" + "\n".join(tail))
        return "\n" + "\n".join(parts)

    def shell(self, name: str, *, timeout: float = 90.0) -> None:
        """Wait until the node's console shell answers (a getty flushes what came before)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.run(name, "true", timeout=3.0)[0] == 0:
                    return
            except LabError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name}: no shell on the console after {timeout} s\n{self.tail(name)}")

    # -- the server --------------------------------------------------------------------------

    def dim(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A dim command on the lab's layout, state and root (``dim lab env``), in a child
        process."""
        result = subprocess.run(
            [*dim_argv(self.folder), *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "DIM_ROOT": str(self.folder / "root")},
        )
        if check:
            assert result.returncode == 0, f"dim {' '.join(args)}: {result.stderr}"
        return result

    def reload(self) -> None:
        """``dim apply`` into the lab and the daemons take it (after a layout change)."""
        cluster.reload(self.folder, say=self.say)

    @contextmanager
    def layout_changed(self, old: str, new: str) -> Iterator[None]:
        """The lab's cluster.xml with ``old`` replaced by ``new`` (once) and reloaded; as it
        was, reloaded again, afterwards."""
        config = self.folder / "cluster.xml"
        layout = config.read_text()
        assert old in layout, f"{old!r} not in the lab's layout"
        config.write_text(layout.replace(old, new, 1))
        try:
            self.reload()
            yield
        finally:
            config.write_text(layout)
            self.reload()

    def http(self, path: str) -> tuple[int, str]:
        """GET a path of dim serve from inside the lab's namespace: (status, body)."""
        url = f"http://{SERVER}:{HTTP_PORT}{path}"
        result = subprocess.run(
            ["ip", "netns", "exec", self.namespace, "curl", "-s", "-w", "\n%{http_code}", url],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        body, _, status = result.stdout.rpartition("\n")
        return int(status), body

    def daemon_pid(self, name: str) -> int:
        """The process id of the lab's daemon ``name`` now."""
        found = LabState.running(self.folder).daemon(name)
        assert found is not None, f"the lab runs no {name}"
        return found.pid

    def log(self, daemon: str) -> str:
        return (self.folder / "logs" / f"{daemon}.log").read_text(errors="replace")

    def replica(self, node: str, image: str) -> Path:
        return StatePaths(self.state).replica(node, image)

    def live(self, image: str) -> Path:
        return StatePaths(self.state).live(image)


@contextmanager
def lab_up(folder: Path, namespace: str, **options: object) -> Iterator[Lab]:
    """A lab of its own in ``folder`` (``cluster.up`` with ``options``), down and its outside
    files discarded afterwards, what it measured kept in ``said.txt``."""
    lab = Lab(folder, namespace)
    try:
        cluster.up(folder, say=lab.say, namespace=namespace, **options)  # type: ignore[arg-type]
        yield lab
    finally:
        cluster.down(folder)
        cluster.discard_outside(folder)
        (folder / "said.txt").write_text("\n".join(lab.said) + "\n")


@dataclass(frozen=True, slots=True)
class Fleet:
    """The session's first boots: seconds to the marker and each console as it was then."""

    seconds: dict[str, float]
    consoles: dict[str, str]
    uefi: tuple[str, ...]


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_e2e()
    folder = tmp_path_factory.mktemp("lab")
    handle = Lab(folder, f"dime2e{os.getpid()}")
    try:
        cluster.up(
            folder,
            nodes=NODES,
            debian=tuple(images.RELEASES),
            say=handle.say,
            namespace=handle.namespace,
        )
        yield handle
    finally:
        cluster.down(folder)
        cluster.discard_outside(folder)


@pytest.fixture(scope="session")
def fleet(lab: Lab) -> Fleet:
    """node01–node03 by BIOS and node04 by UEFI, powered on together, all at their marker."""
    bios, uefi = ["node01", "node02", "node03"], ["node04"]
    cluster.boot(lab.folder, bios, uefi=False, say=lab.say)
    cluster.boot(lab.folder, uefi, uefi=True, say=lab.say)
    seconds = lab.wait(bios + uefi)
    return Fleet(seconds, {n: lab.console(n) for n in bios + uefi}, tuple(uefi))
