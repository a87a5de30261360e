"""A real Debian image: debootstrap's minbase, imported, then changed by apt-get in ``exec``.

The minbase tree is made once with ``debootstrap --variant=minbase bookworm DIR MIRROR`` (the
mirror this machine's apt uses) and kept as /var/cache/dim-tests/minbase-bookworm.tar across
test runs: about 40 s the first time, nothing after. Delete the file to rebuild it. Needs root,
debootstrap and the mirror; skips without them, fails under ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dim.lab import images
from tests.conftest import require, require_binary, require_root
from tests.image_trees import Dim, inode, version_tree

pytestmark = pytest.mark.integration

CACHE = images.BOOKWORM.minbase  # shared with the lab's debian12 image
PACKAGE = "hello"

LAYOUT = """<?xml version="1.0"?>
<cluster name="debtest" domain="debtest.dim">
  <network name="boot" subnet="10.79.0.0/24" gateway="10.79.0.1"/>
  <server name="srv" address="10.79.0.1" dhcp="none" nfs="ganesha"/>
  <image name="debian">
    <persist path="/etc"/> <persist path="/var"/> <persist path="/root"/>
    <volatile path="/tmp"/> <volatile path="/var/tmp"/>
    <keepout path="/etc/hostname"/> <keepout path="/etc/machine-id"/> <keepout path="/var/log"/>
  </image>
  <group name="nodes" nodes="d[1-2]">
    <interface network="boot" ip="10.79.0.{10+n1}"/>
  </group>
</cluster>
"""


@pytest.fixture(scope="session")
def minbase() -> Path:
    """The cached minbase tarball, made by debootstrap if it is missing."""
    require_root()
    if CACHE.exists():
        return CACHE
    require_binary("debootstrap", "debootstrap")
    mirror = images.debian_mirror()
    require(mirror is not None, "no Debian mirror in /etc/apt/sources.list[.d]")
    return images.minbase_tarball(images.BOOKWORM, CACHE, mirror=mirror)


@pytest.fixture
def dim(tmp_path, capsys) -> Dim:
    return Dim(tmp_path, capsys, LAYOUT)


def _tree_bytes(root: Path) -> int:
    seen, total = set(), 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def test_apt_get_install_in_exec_makes_a_small_version_with_the_package(dim, minbase):
    out = dim.ok("image", "import", "debian", "--from", str(minbase))
    assert out.startswith("debian: version 1: ")
    dim.ok("node", "switch", "d[1-2]", "debian")
    v1 = version_tree(dim.store, "debian", 1)
    assert not (v1 / f"usr/bin/{PACKAGE}").exists()

    command = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
    run = dim("image", "exec", "debian", "--", *command)
    assert run.status == 0, run.err
    assert run.out.startswith("debian: version 2: ")
    assert "2 replicas updated; 0 conflicts" in run.out
    live, v2 = dim.store.paths.live("debian"), version_tree(dim.store, "debian", 2)
    program = live / f"usr/bin/{PACKAGE}"
    assert program.is_file() and os.access(program, os.X_OK)
    said = subprocess.run(["chroot", str(live), f"/usr/bin/{PACKAGE}"], capture_output=True)
    assert said.stdout == b"Hello, world!\n"
    assert inode(program) == inode(v2 / f"usr/bin/{PACKAGE}")

    # the version costs what apt wrote: the package, its .deb, apt's binary caches (rewritten
    # on every install) and a little bookkeeping; everything else is version 1's inodes
    meta = dim.store.version("debian", 2).meta
    package = {
        line.strip().lstrip("/")
        for line in (v2 / f"var/lib/dpkg/info/{PACKAGE}.list").read_text().splitlines()
    }
    expected_new = {p for p in package if (v2 / p).is_file() and not (v2 / p).is_symlink()}
    expected_new |= {str(p.relative_to(v2)) for p in (v2 / "var/cache/apt").glob("*.bin")}
    expected_new |= {
        str(p.relative_to(v2)) for p in (v2 / "var/cache/apt/archives").glob(f"{PACKAGE}_*.deb")
    }
    other = 0
    for folder, _dirs, files in os.walk(v2):
        for name in files:
            where = Path(folder, name)
            relative = str(where.relative_to(v2))
            if relative in expected_new:
                continue
            before = v1 / relative
            if not before.exists() or inode(before) != inode(where):
                other += os.lstat(where).st_size
    total = _tree_bytes(v2)
    assert other < 0.01 * total, f"{other} bytes besides the package, of {total}"
    assert meta["bytes_added"] < 0.5 * total
    assert inode(v2 / "usr/bin/dpkg") == inode(v1 / "usr/bin/dpkg")
    assert inode(v2 / "usr/lib/x86_64-linux-gnu/libc.so.6") == inode(
        v1 / "usr/lib/x86_64-linux-gnu/libc.so.6"
    )

    # the nodes' replicas know the package is installed; the program itself stays shared
    for node in ("d1", "d2"):
        replica = dim.store.paths.replica(node, "debian")
        status = (replica / "var/lib/dpkg/status").read_text()
        assert f"Package: {PACKAGE}\nStatus: install ok installed" in status
        assert not (replica / "usr").exists()
        assert not (replica / "var/log").exists() and not (replica / "etc/hostname").exists()
    assert dim.ok("node", "diff", "d1") == ""
