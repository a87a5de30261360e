"""dim's initramfs booting a QEMU node from dim's rendered DHCP and NFS configuration, no PXE.

The tiny lab image (busybox, Debian's kernel; `dim.lab.images`) is imported with
``dim image import``; ``dim apply --root R`` renders dnsmasq's and nfs-ganesha's configuration
and gives each node its replica; ``dim boot build`` makes kernel and initramfs. dnsmasq and
ganesha run on what dim rendered, in a server namespace whose bridge holds 10.77.0.1; QEMU (TCG)
boots kernel and initramfs directly (``-kernel``/``-initrd``) with the kernel arguments of the
image's rendered PXELINUX entry plus the node's own, on a tap device in the bridge::

    CI=true .venv/bin/pytest tests/integration/test_boot_initramfs.py

What the serial console and the server's disk show: the root is the image's live tree over
NFS, read-only; /etc comes read-write from the node's replica, and a file the node writes
there lands in the replica on the server; /tmp, /var/tmp and /run are tmpfs. A wrong
``dim.root`` stops the boot at the step that failed, with a message naming it, and leaves a
working shell on the console instead of a hang.

Needs root, qemu-system-x86, dnsmasq, nfs-ganesha(-vfs), kmod and busybox-static, and Debian's
kernel package (downloaded once into /var/cache/dim-lab): skips without them, fails under
``CI=true``. Every QEMU and daemon is stopped by its process id, the namespaces deleted.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dim import architectures
from dim.boot.arguments import node_arguments
from dim.cli import main
from dim.lab.images import MARKER, fetch_kernel, tiny_tree
from dim.lab.netns import Daemon, Segment, ip, segment
from dim.services.nfs import GANESHA_CONF
from tests.conftest import require, require_binary
from tests.doubles.dhcp import start_dhcp_server
from tests.integration.conftest import require_dhcp_server, require_lab
from tests.integration.test_dhcp_daemons import runnable_config
from tests.integration.test_nfs_ganesha import VFS_FSAL, privately, wait_for_nfs

pytestmark = pytest.mark.integration

SERVER = "10.77.0.1"
NODES = {"node01": "52:54:00:77:01:01", "node02": "52:54:00:77:01:02"}
BOOT_TIMEOUT = 60.0  # TCG: about 10 to 20 s to the marker

LAYOUT = """\
<?xml version="1.0"?>
<cluster name="boottest" domain="boottest.dim">
  <network name="boot" subnet="10.77.0.0/24" gateway="10.77.0.1"/>
  <server name="srv" address="10.77.0.1" dhcp="dnsmasq" nfs="ganesha" interface="br0"
          tftp-root="{folder}/tftp" http-root="{folder}/http"/>
  <image name="tiny">
    <persist path="/etc"/> <volatile path="/tmp"/> <volatile path="/var/tmp"/>
  </image>
  <group name="nodes" nodes="node[01-02]" image="tiny" arch="{arch}">
    <interface network="boot" ip="10.77.0.{{10+n1}}"/>
  </group>
</cluster>
"""

# Run by the node before its marker: a file under the persistent /etc, flushed to the server.
RC_LOCAL = """\
#!/bin/sh
echo "written by $(hostname)" > /etc/dim-test && sync && echo "DIM-WROTE /etc/dim-test"
echo "DIM-MODE /tmp $(stat -c %a /tmp)"
"""


@dataclass(slots=True)
class Site:
    """dim's configuration served by dnsmasq and ganesha, and where to boot nodes from."""

    folder: Path
    lab: Segment
    kernel: Path
    initrd: Path
    image_args: str  # the kernel arguments of the image's rendered PXELINUX entry
    taps: int = 0
    arch: str = "x86_64"  # the nodes' (dim.architectures): QEMU's system, machine, console

    @property
    def state(self) -> Path:
        return self.folder / "state"

    def boot(self, node: str, args: str | None = None, *, pxelinux: bool = False) -> Node:
        """Start QEMU for ``node`` on a new tap device in the bridge.

        The node's arguments are those dim's boot service adds (``dim.node=``, ``dim.mac=``),
        or with ``pxelinux`` only what PXELINUX adds: ``BOOTIF=01-<mac>``.
        """
        self.taps += 1
        tap = f"tap{self.taps}"
        ip("-n", self.lab.server, "tuntap", "add", "dev", tap, "mode", "tap")
        ip("-n", self.lab.server, "link", "set", tap, "master", self.lab.bridge)
        ip("-n", self.lab.server, "link", "set", tap, "up")
        facts = architectures.named(self.arch)
        cmdline = f"console={facts.console} {args if args is not None else self.image_args}"
        if pxelinux:
            cmdline += " BOOTIF=01-" + NODES[node].replace(":", "-")
        else:
            cmdline += " " + node_arguments(node, NODES[node])
        argv = [facts.qemu_system, "-M", facts.qemu_machine, "-cpu", facts.qemu_cpu]
        argv += ["-accel", "tcg", "-m", "512", "-nographic", "-no-reboot"]
        argv += ["-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", cmdline]
        argv += ["-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no"]
        argv += ["-device", f"virtio-net-pci,netdev=net0,mac={NODES[node]}"]
        log = self.folder / f"{node}-{tap}.console"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.server, *argv],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # stopped by its process id with the segment's daemons, whatever the test does
        self.lab.daemons.append(Daemon(self.lab.server, tuple(argv), log, process))
        return Node(node, log, process, time.monotonic())


@dataclass(slots=True)
class Node:
    name: str
    console: Path
    process: subprocess.Popen[bytes]
    started: float

    def text(self) -> str:
        return self.console.read_bytes().decode(errors="replace").replace("\r", "")

    def wait_for(self, pattern: str, timeout: float = BOOT_TIMEOUT) -> re.Match[str]:
        """Wait until the console shows ``pattern`` (a regular expression); the match."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.text(), re.MULTILINE)
            if match:
                return match
            if self.process.poll() is not None or time.monotonic() > deadline:
                why = "QEMU exited" if self.process.poll() is not None else f"{timeout} s passed"
                tail = "\n".join(self.text().splitlines()[-40:])
                pytest.fail(f"{self.name}: no {pattern!r} on the console ({why}):\n{tail}")
            time.sleep(0.1)

    def type(self, line: str) -> None:
        """Type a line on the serial console."""
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, 15)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait()


def dim(folder: Path, *args: str) -> None:
    argv = ["--config", str(folder / "cluster.xml"), "--state", str(folder / "state"), *args]
    assert main(argv) == 0, f"dim {' '.join(args)} failed"


def pxelinux_args(root: Path, folder: Path) -> str:
    """The APPEND line of the image's PXELINUX entry that `dim apply` rendered."""
    entry = root / str(folder / "tftp").lstrip("/") / "pxelinux.cfg" / "dim-tiny"
    for line in entry.read_text().splitlines():
        if line.strip().startswith("APPEND "):
            return line.strip()[len("APPEND ") :]
    raise AssertionError(f"no APPEND line in {entry}")


def require_boot_lab() -> None:
    require_lab()
    require_dhcp_server("dnsmasq")
    require_binary("qemu-system-x86_64", "qemu-system-x86")
    require_binary("depmod", "kmod")
    require_binary("ganesha.nfsd", "nfs-ganesha")
    require(
        VFS_FSAL.exists(), "ganesha's VFS FSAL is not installed (apt-get install nfs-ganesha-vfs)"
    )
    require(os.path.exists("/dev/net/tun"), "no /dev/net/tun for QEMU's tap devices")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_boot_lab()
    folder = tmp_path_factory.mktemp("boot")
    tiny_tree(folder / "tree", fetch_kernel(), rc_local=RC_LOCAL)
    with serving(folder, "x86_64") as site:
        yield site


@contextmanager
def serving(folder: Path, arch: str) -> Iterator[Site]:
    """The tiny image of ``folder/tree`` imported, applied and built for nodes of ``arch``,
    dnsmasq and ganesha serving it on the lab segment."""
    (folder / "tftp").mkdir()  # dnsmasq's enable-tftp wants it
    (folder / "cluster.xml").write_text(LAYOUT.format(folder=folder, arch=arch))
    (folder / "macs.csv").write_text("".join(f"{n},{m}\n" for n, m in NODES.items()))
    dim(folder, "node", "import-macs", str(folder / "macs.csv"))
    dim(folder, "image", "import", "tiny", "--from", str(folder / "tree"))
    root = folder / "root"
    dim(folder, "apply", "--root", str(root), "--no-reload")
    dim(folder, "boot", "build", "tiny")
    build = folder / "state" / "boot" / "tiny" / "1"
    with segment(f"{SERVER}/24", clients=0) as lab:
        start_dhcp_server(lab, "dnsmasq", runnable_config("dnsmasq", root, folder), folder)
        config = root / GANESHA_CONF.lstrip("/")
        log = folder / "ganesha.log"
        command = ["ganesha.nfsd", "-F", "-N", "NIV_EVENT", "-f", str(config), "-L", str(log)]
        command += ["-p", str(folder / "ganesha.pid")]
        ganesha = lab.start(privately(folder, command), log=folder / "ganesha.out")
        wait_for_nfs(ganesha, log)
        yield Site(
            folder,
            lab,
            build / "vmlinuz",
            build / "initrd.img",
            pxelinux_args(root, folder),
            arch=arch,
        )


@pytest.fixture(scope="module")
def node01(site: Site) -> Iterator[Node]:
    """node01 booted to its marker (one boot shared by the tests that read its console)."""
    node = site.boot("node01")
    try:
        node.wait_for(rf"^{MARKER} ")
        print(f"node01: marker after {time.monotonic() - node.started:.1f} s")
        yield node
    finally:
        node.stop()


def mounts(node: Node) -> dict[str, tuple[str, str]]:
    """What the node's rcS printed of /proc/mounts: path -> (type, options)."""
    found = {}
    for path, kind, options in re.findall(r"^DIM-MOUNT (\S+) (\S+) (\S+)$", node.text(), re.M):
        found[path] = (kind, options)
    return found


def test_node_boots_with_the_live_tree_read_only_over_nfs_as_root(node01: Node) -> None:
    marker = node01.wait_for(rf"^{MARKER} (\S+) (\S+) root=(\S+)$")
    assert marker.groups() == ("node01", "tiny", "ro")
    kind, options = mounts(node01)["/"]
    assert kind == "nfs4"
    assert "ro" in options.split(",")
    assert "vers=4.1" in options.split(",")  # dim's default (READ_PLUS: docs/cluster.xml.md)
    assert "actimeo=1" in options.split(",") or "acregmin=1" in options.split(",")


def test_every_step_of_init_reported_on_the_console(node01: Node) -> None:
    steps = re.findall(r"^dim: step (\d)/9 ", node01.text(), re.M)
    assert steps == [str(n) for n in range(1, 10)]
    assert "failed" not in "\n".join(re.findall(r"^dim: .*$", node01.text(), re.M))


def test_a_file_written_under_a_persistent_path_lands_in_the_node_replica(
    node01: Node, site: Site
) -> None:
    node01.wait_for(r"^DIM-WROTE /etc/dim-test")
    written = site.state / "nodes" / "node01" / "tiny" / "etc" / "dim-test"
    assert written.read_text() == "written by node01\n"
    assert not (site.state / "images" / "tiny" / "live" / "etc" / "dim-test").exists()
    kind, options = mounts(node01)["/etc"]
    assert kind == "nfs4" and "rw" in options.split(",")


def test_volatile_paths_and_run_are_tmpfs(node01: Node) -> None:
    found = mounts(node01)
    for path in ("/tmp", "/var/tmp", "/run"):
        assert found[path][0] == "tmpfs", f"{path}: {found.get(path)}"
    assert "mode=755" in found["/run"][1].split(",")
    # tmpfs takes the mode of the folder it covers in the image
    assert re.search(r"^DIM-MODE /tmp 1777$", node01.text(), re.M)


def test_a_wrong_root_stops_at_its_step_and_leaves_a_shell(site: Site) -> None:
    wrong = re.sub(r"dim\.root=\S+", f"dim.root={SERVER}:/no/such/export", site.image_args)
    node = site.boot("node02", wrong, pxelinux=True)
    try:
        # as under PXELINUX: the NIC named by BOOTIF, the node named by DHCP
        node.wait_for(r"^dim:   eth0: 10\.77\.0\.12/24, host name node02$")
        failed = node.wait_for(r"^dim: step 5/9 mount root (\S+) failed: (.*)$")
        assert failed.group(1) == f"{SERVER}:/no/such/export"
        node.wait_for(r"dim-rescue# ", timeout=15)
        node.type("echo DIM-RESCUE-$((6 * 7))")
        node.wait_for(r"^DIM-RESCUE-42", timeout=15)
    finally:
        node.stop()
