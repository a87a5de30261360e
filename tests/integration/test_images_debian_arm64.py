"""A Debian arm64 image made on this x86-64 machine, imported, changed and built for boot.

``debootstrap --variant=minbase --arch=arm64 bookworm`` runs its second stage in the new tree,
whose arm64 binaries this machine runs through qemu-user-static (binfmt_misc); then the lab's
recipe adds systemd, udev, kmod and linux-image-arm64 with apt-get inside ``dim image exec``,
through qemu-user again (`dim.lab.images.debian_tree` with ``arch="aarch64"``). The minbase
and the finished tree are kept in /var/cache (``minbase-bookworm-arm64.tar``, ``debian/
bookworm-arm64-<recipe>.tar``): about 3 minutes the first time on 2 cores, seconds after.

Then, as an administrator would: ``dim image import`` reads aarch64 from its binaries, ``dim
image exec`` runs its commands (dpkg, systemd) through qemu-user into a new version, and ``dim
boot build`` makes its initramfs from the image's own arm64 kernel and modules with Debian's
arm64 busybox::

    CI=true .venv/bin/pytest tests/integration/test_images_debian_arm64.py
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from dim import architectures
from dim.lab import images
from dim.paths import StatePaths
from tests.conftest import require, require_binary, require_root
from tests.image_trees import Dim
from tests.unit.boot.test_initramfs import read_newc

pytestmark = pytest.mark.integration

LAYOUT = """<?xml version="1.0"?>
<cluster name="armdeb" domain="armdeb.dim">
  <network name="boot" subnet="10.79.0.0/24" gateway="10.79.0.1"/>
  <server name="srv" address="10.79.0.1" dhcp="none" nfs="ganesha"/>
  <image name="debian-arm64">
    <persist path="/etc"/> <persist path="/var"/>
    <volatile path="/tmp"/>
    <keepout path="/etc/hostname"/> <keepout path="/etc/machine-id"/>
  </image>
  <group name="grace" nodes="g[1-2]" arch="aarch64">
    <interface network="boot" ip="10.79.0.{10+n1}"/>
  </group>
</cluster>
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's Debian 12 tree for arm64 (made once, then from the cache)."""
    require_root()
    require_binary("debootstrap", "debootstrap")
    require(
        os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"),
        "qemu-user-static's qemu-aarch64 is not registered with binfmt_misc",
    )
    require(images.debian_mirror() is not None, "no Debian mirror in /etc/apt/sources.list[.d]")
    folder = tmp_path_factory.mktemp("armdeb") / "tree"
    return images.debian_tree(folder, images.BOOKWORM, arch="aarch64", progress=print)


@pytest.fixture
def dim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Dim:
    return Dim(tmp_path, capsys, LAYOUT)


def test_a_debian_arm64_image_is_imported_changed_through_qemu_user_and_built_for_boot(
    dim: Dim, tree: Path
) -> None:
    # debootstrap's second stage and apt ran arm64 binaries: the tree is arm64 throughout
    assert architectures.elf_machine(tree / "usr/lib/systemd/systemd") == (183, True)
    assert dim.ok("image", "import", "debian-arm64", "--from", str(tree)).startswith(
        "debian-arm64: version 1: "
    )
    shown = json.loads(dim.ok("image", "show", "debian-arm64", "--json"))
    assert shown["arch"] == "aarch64"
    dim.ok("node", "set", "g[1-2]", "--image", "debian-arm64")

    # its own dpkg and systemd run here through qemu-user, and the change is a new version
    probe = "dpkg --print-architecture > /etc/dim-arch && systemctl --version | head -1"
    run = dim("image", "exec", "debian-arm64", "--", "sh", "-c", probe)
    assert run.status == 0, run.err
    assert run.out.startswith("debian-arm64: version 2: "), run.out
    assert (StatePaths(dim.state).live("debian-arm64") / "etc/dim-arch").read_text() == "arm64\n"

    dim.ok("boot", "build", "debian-arm64")
    build = next((dim.state / "boot" / "debian-arm64").glob("*/build.json"))
    manifest = json.loads(build.read_text())
    assert manifest["kernel_version"].endswith("-arm64"), manifest["kernel_version"]
    assert (build.parent / "vmlinuz").read_bytes()[0x38:0x3C] == b"ARM\x64"
    members = read_newc(gzip.decompress((build.parent / "initrd.img").read_bytes()))
    assert architectures.machine_name(183, True) == "aarch64"
    busybox = members["bin/busybox"].data
    assert int.from_bytes(busybox[18:20], "little") == 183  # Debian's arm64 busybox
    assert any(f"/{manifest['kernel_version']}/" in name for name in members), "no modules"
