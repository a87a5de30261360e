"""An aarch64 node boots dim's initramfs for an arm64 image, from the same dnsmasq and
ganesha as an x86-64 one (tests/integration/test_boot_initramfs.py), without PXE.

The tiny lab image made of Debian's arm64 packages (busybox-static:arm64, linux-image-arm64)
on this x86-64 machine: ``dim image import`` reads its architecture from its binaries,
``dim boot build`` takes the arm64 busybox (fetched from Debian once into the state's cache;
its applets listed through qemu-user) and the image's own arm64 kernel and modules, and the
same ``/init``. QEMU ``-M virt`` (TCG) boots that kernel and initramfs directly, on a tap of
the lab's bridge: the node mounts the image's live tree over NFS as its root, /etc from its
replica, and prints the marker on its PL011 console (ttyAMA0)::

    CI=true .venv/bin/pytest tests/integration/test_boot_initramfs_aarch64.py
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dim import architectures
from dim.lab.images import MARKER, foreign_tiny_tree
from tests.conftest import require, require_binary
from tests.integration.test_boot_initramfs import (
    RC_LOCAL,
    Node,
    Site,
    mounts,
    require_boot_lab,
    serving,
)
from tests.unit.boot.test_initramfs import read_newc

pytestmark = pytest.mark.integration

BOOT_TIMEOUT = 240.0  # TCG emulating another architecture: about 4 times x86-64's


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_boot_lab()
    require_binary("qemu-system-aarch64", "qemu-system-arm")
    require(
        Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
        "qemu-user-static's qemu-aarch64 is not registered with binfmt_misc",
    )
    folder = tmp_path_factory.mktemp("boot-aarch64")
    foreign_tiny_tree(folder / "tree", "aarch64", rc_local=RC_LOCAL)
    with serving(folder, "aarch64") as site:
        yield site


@pytest.fixture(scope="module")
def node01(site: Site) -> Iterator[Node]:
    node = site.boot("node01")
    try:
        node.wait_for(rf"^{MARKER} ", BOOT_TIMEOUT)
        print(f"aarch64 node01: marker after {time.monotonic() - node.started:.1f} s")
        yield node
    finally:
        node.stop()


def test_the_boot_build_carries_the_images_arm64_kernel_and_busybox(site: Site) -> None:
    manifest = json.loads((site.initrd.parent / "build.json").read_text())
    assert manifest["kernel_version"].endswith("-arm64"), manifest["kernel_version"]
    assert architectures.elf_machine(site.kernel) is None  # an arm64 Image is no ELF file…
    assert site.kernel.read_bytes()[0x38:0x3C] == b"ARM\x64"  # …but says so at 0x38
    members = read_newc(gzip.decompress(site.initrd.read_bytes()))
    busybox = members["bin/busybox"].data
    assert busybox[:4] == b"\x7fELF" and int.from_bytes(busybox[18:20], "little") == 183
    modules = [name for name in members if name.endswith("/virtio_net.ko")]
    assert modules and f"/{manifest['kernel_version']}/" in modules[0], modules


def test_an_aarch64_node_boots_the_live_tree_over_nfs_as_root(node01: Node) -> None:
    text = node01.text()
    assert "Machine model: linux,dummy-virt" in text or "aarch64" in text.lower()
    root_type, root_options = mounts(node01)["/"]
    assert root_type == "nfs4" and root_options.startswith("ro,"), (root_type, root_options)
    node01.wait_for(r"^DIM-WROTE /etc/dim-test$", 60)


def test_its_write_under_a_persistent_path_lands_in_its_replica(site: Site, node01: Node) -> None:
    node01.wait_for(r"^DIM-WROTE /etc/dim-test$", 60)
    written = site.state / "nodes" / "node01" / "tiny" / "etc" / "dim-test"
    assert written.read_text() == "written by node01\n"
