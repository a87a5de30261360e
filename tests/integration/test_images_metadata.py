"""Deltas with full metadata, as root: owners nobody has, ``trusted.*`` attributes, devices.

Every kind of entry (regular file, directory, symbolic link, hard link, character and block
device, fifo, socket) is added, changed and removed once between version 1 and version 2,
under the persistent paths (so replicas get them too) and under /usr (shared), together with
changes of mode, owner, group, time and of ``user.*`` and ``trusted.*`` attributes. The
versions, live, the replicas and a rollback are compared with the source by
:func:`tests.image_trees.snapshot`, which sees all of that.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.image_trees import (
    T1,
    Dim,
    base_tree,
    digest,
    inode,
    snapshot,
    touch_tree,
    version_tree,
    write,
)

pytestmark = pytest.mark.integration

OWNER, GROUP = 1234, 4321  # in no passwd or group file
OTHER = 2345


@pytest.fixture
def dim(tmp_path, capsys) -> Dim:
    require_root()
    return Dim(tmp_path, capsys)


def _node(path: Path, kind: int, mode: int, device: tuple[int, int] = (0, 0)) -> None:
    os.mknod(path, kind | mode, os.makedev(*device))


def full_tree(root: Path) -> Path:
    """The base tree plus what only root can make, under /etc, /var and /usr."""
    base_tree(root)
    for folder in ("etc/devices", "var/lib/olddir", "usr/share/devices"):
        (root / folder).mkdir(parents=True)
    write(root, "etc/owned", "owned by nobody we know\n", 0o640)
    os.chown(root / "etc/owned", OWNER, GROUP)
    os.chown(root / "etc/app", OWNER, GROUP)
    os.lchown(root / "etc/motd.link", OWNER, GROUP)
    write(root, "etc/pair/one", "one inode, two names\n")
    os.link(root / "etc/pair/one", root / "etc/pair/two")
    write(root, "etc/pair/three", "a pair that loses a name\n")
    os.link(root / "etc/pair/three", root / "etc/pair/four")
    write(root, "var/lib/olddir/file", "in a directory that goes away\n")
    write(root, "etc/secure", "labelled\n")
    os.setxattr(root / "etc/secure", "trusted.dim.label", b"v1")
    os.setxattr(root / "etc/secure", "trusted.dim.gone", b"bye")
    os.setxattr(root / "etc/app", "trusted.dim.dir", b"d1")
    for where in ("etc/devices", "usr/share/devices"):
        _node(root / where / "console", stat.S_IFCHR, 0o600, (5, 1))
        _node(root / where / "null", stat.S_IFCHR, 0o666, (1, 3))
        _node(root / where / "loop0", stat.S_IFBLK, 0o660, (7, 0))
        _node(root / where / "loop9", stat.S_IFBLK, 0o660, (7, 9))
        _node(root / where / "sda", stat.S_IFBLK, 0o660, (8, 0))
        os.chown(root / where / "sda", 0, 6)
    os.setxattr(root / "etc/devices/sda", "trusted.dim.dev", b"unchanged")
    os.mkfifo(root / "var/lib/app/fifo2", 0o600)
    os.setxattr(root / "var/lib/app/fifo2", "trusted.dim.fifo", b"unchanged")
    os.mkfifo(root / "var/lib/app/oldfifo", 0o600)
    _node(root / "var/lib/app/oldsocket", stat.S_IFSOCK, 0o600)
    os.chown(root / "var/lib/app/socket", OWNER, GROUP)
    touch_tree(root)
    return root


# what version 2 adds, changes and removes, relative paths
ADDED = {
    "etc/new.conf",
    "etc/newdir",
    "etc/newdir/inside",
    "etc/link2",
    "etc/pair/five",  # a new name for etc/pair/one's inode
    "etc/devices/tty",
    "etc/devices/loop1",
    "var/lib/app/newfifo",
    "var/lib/app/newsocket",
}
CHANGED = {
    "etc/motd",  # content (and its user.* attribute)
    "etc/app",  # directory: mode, owner, trusted.* attribute
    "usr/bin/alias",  # link target
    "etc/pair/one",  # content of a hard-linked file: all three names
    "etc/pair/two",
    "etc/devices/null",  # device number
    "etc/devices/loop0",  # device number (block)
    "var/lib/app/fifo",  # mode
    "var/lib/app/socket",  # owner
    "etc/owned",  # owner and group only
    "etc/secure",  # trusted.* attributes only
    "etc/app/keep.conf",  # modification time only
    "usr/share/devices/sda",  # group only
}
REMOVED = {
    "etc/app/app.conf",
    "var/lib/olddir",
    "var/lib/olddir/file",
    "etc/motd.link",
    "etc/pair/four",  # one name of a pair
    "etc/devices/console",
    "etc/devices/loop9",
    "var/lib/app/oldfifo",
    "var/lib/app/oldsocket",
}


def change_tree(root: Path) -> None:
    write(root, "etc/new.conf", "new\n", mtime=T1)
    (root / "etc/newdir").mkdir(mode=0o700)
    write(root, "etc/newdir/inside", "inside\n", mtime=T1)
    os.chown(root / "etc/newdir", OWNER, GROUP)
    os.symlink("new.conf", root / "etc/link2")
    write(root, "etc/pair/one", "changed through one of its names\n", mtime=T1)
    os.link(root / "etc/pair/one", root / "etc/pair/five")
    _node(root / "etc/devices/tty", stat.S_IFCHR, 0o666, (5, 0))
    _node(root / "etc/devices/loop1", stat.S_IFBLK, 0o660, (7, 1))
    os.setxattr(root / "etc/devices/loop1", "trusted.dim.dev", b"new")
    os.mkfifo(root / "var/lib/app/newfifo", 0o644)
    _node(root / "var/lib/app/newsocket", stat.S_IFSOCK, 0o666)
    os.chown(root / "var/lib/app/newsocket", OWNER, GROUP)

    write(root, "etc/motd", "welcome to version 2\n", mtime=T1)
    os.setxattr(root / "etc/motd", "user.dim.test", b"v2")
    os.chmod(root / "etc/app", 0o750)
    os.chown(root / "etc/app", OTHER, OTHER)
    os.setxattr(root / "etc/app", "trusted.dim.dir", b"d2")
    os.unlink(root / "usr/bin/alias")
    os.symlink("/usr/lib/libbig.so", root / "usr/bin/alias")
    for where, device in (("etc/devices/null", (1, 5)), ("etc/devices/loop0", (7, 8))):
        _renumber(root / where, device)
    os.chmod(root / "var/lib/app/fifo", 0o604)
    os.chown(root / "var/lib/app/socket", OTHER, OTHER)
    os.chown(root / "etc/owned", OTHER, OTHER)
    os.setxattr(root / "etc/secure", "trusted.dim.label", b"v2")
    os.removexattr(root / "etc/secure", "trusted.dim.gone")
    os.setxattr(root / "etc/secure", "trusted.dim.added", b"new")
    os.utime(root / "etc/app/keep.conf", ns=(T1, T1))
    os.chown(root / "usr/share/devices/sda", 0, 26)

    os.unlink(root / "etc/app/app.conf")
    (root / "var/lib/olddir/file").unlink()
    (root / "var/lib/olddir").rmdir()
    os.unlink(root / "etc/motd.link")
    os.unlink(root / "etc/pair/four")
    os.unlink(root / "etc/devices/console")
    os.unlink(root / "etc/devices/loop9")
    os.unlink(root / "var/lib/app/oldfifo")
    os.unlink(root / "var/lib/app/oldsocket")
    touch_tree(root)


def _renumber(where: Path, device: tuple[int, int]) -> None:
    """Give a device node other numbers, keeping its mode, owner and attributes."""
    st = os.lstat(where)
    xattrs = {n: os.getxattr(where, n) for n in os.listxattr(where)}
    os.unlink(where)
    _node(where, stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), device)
    os.chown(where, st.st_uid, st.st_gid)
    for name, value in xattrs.items():
        os.setxattr(where, name, value)


def _persistent(tree: dict[str, tuple], hard_links: bool = True) -> dict[str, tuple]:
    """The part of a snapshot a replica holds: /etc and /var, keep-outs left out."""
    keepouts = ("etc/hostname", "etc/ssh/ssh_host_ed25519_key")
    result = {
        p: e
        for p, e in tree.items()
        if p.startswith(("etc", "var")) and p not in keepouts and not p.startswith("var/log")
    }
    if not hard_links:
        result = {p: e[:-1] for p, e in result.items()}
    # the directories that held keep-outs differ in their entries, not in their metadata
    return result


def _replica_snapshot(replica: Path, hard_links: bool = True) -> dict[str, tuple]:
    tree = snapshot(replica, dir_times=False)
    del tree["."]
    return tree if hard_links else {p: e[:-1] for p, e in tree.items()}


def test_every_kind_added_changed_and_removed_reaches_versions_live_and_replicas(dim, tmp_path):
    src = full_tree(tmp_path / "src")
    dim.ok("image", "import", "alpha", "--from", str(src))
    dim.ok("node", "switch", "n1", "alpha")
    v1 = version_tree(dim.store, "alpha", 1)
    assert snapshot(v1) == snapshot(src)
    assert os.lstat(v1 / "etc/owned").st_uid == OWNER
    assert os.getxattr(v1 / "etc/secure", "trusted.dim.label") == b"v1"
    replica = dim.store.paths.replica("n1", "alpha")
    # the first copy keeps everything, hard links within the replica included
    assert _replica_snapshot(replica) == _persistent(snapshot(v1, dir_times=False))
    first = snapshot(src)

    change_tree(src)
    out = dim.ok("image", "sync", "alpha", "--from", str(src))
    assert f"{len(ADDED)} added, {len(CHANGED)} changed, {len(REMOVED)} removed" in out
    assert "1 replicas updated; 0 conflicts" in out
    lines = dim.ok("image", "diff", "alpha", "1", "2").splitlines()
    assert {ln[3:] for ln in lines if ln[0] == "+"} == ADDED
    assert {ln[3:] for ln in lines if ln[0] == "~"} == CHANGED
    assert {ln[3:] for ln in lines if ln[0] == "-"} == REMOVED
    v2, live = version_tree(dim.store, "alpha", 2), dim.store.paths.live("alpha")
    assert snapshot(v2) == snapshot(src)
    assert snapshot(live) == snapshot(v2)
    assert snapshot(v1) == first  # versions are immutable
    # hard links inside the tree: three names, one inode, in the version and in live
    assert inode(v2 / "etc/pair/one") == inode(v2 / "etc/pair/two") == inode(v2 / "etc/pair/five")
    assert inode(live / "etc/pair/five") == inode(v2 / "etc/pair/one")
    assert inode(v2 / "etc/pair/three") == inode(v1 / "etc/pair/three")  # content unchanged
    for path in ("etc/devices/sda", "usr/share/devices/null", "var/lib/app/fifo2"):
        assert inode(v2 / path) == inode(v1 / path) == inode(live / path), path
    # the replica: every change under /etc and /var, real copies, keep-outs left out
    # (its sync copies path by path: names of one inode become separate copies, see below)
    assert _replica_snapshot(replica, hard_links=False) == _persistent(
        snapshot(v2, dir_times=False), hard_links=False
    )
    for path in ("etc/motd", "etc/devices/null", "var/lib/app/newsocket", "etc/secure"):
        assert inode(replica / path) != inode(v2 / path), path
    assert os.stat(replica / "etc/devices/loop0", follow_symlinks=False).st_rdev == os.makedev(7, 8)
    assert dim.ok("node", "diff", "n1") == ""

    # rollback: live is version 1 again, to the last attribute
    dim.ok("image", "rollback", "alpha", "1")
    assert digest(live) == digest(v1)
    assert snapshot(live) == first
    assert _replica_snapshot(replica, hard_links=False) == _persistent(
        snapshot(v1, dir_times=False), hard_links=False
    )


def test_a_replica_update_keeps_hard_links_between_names_of_one_file(dim, tmp_path):
    src = full_tree(tmp_path / "src")
    dim.ok("image", "import", "alpha", "--from", str(src))
    dim.ok("node", "switch", "n1", "alpha")
    replica = dim.store.paths.replica("n1", "alpha")
    assert inode(replica / "etc/pair/one") == inode(replica / "etc/pair/two")
    change_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    assert inode(replica / "etc/pair/one") == inode(replica / "etc/pair/five")


def test_a_changed_device_or_fifo_keeps_its_trusted_attributes(dim, tmp_path):
    """rsync --link-dest recreated a changed device or fifo without the extended attributes
    it had in common with the link-dest copy (rsync 3.5.0); a sync copies what changed into
    an empty folder now, and they are kept."""
    src = tmp_path / "src"
    (src / "dev").mkdir(parents=True)
    _node(src / "dev/null", stat.S_IFCHR, 0o666, (1, 3))
    os.mkfifo(src / "dev/initctl", 0o600)
    for where in ("dev/null", "dev/initctl"):
        os.setxattr(src / where, "trusted.dim.label", b"system_u:object_r:device_t")
    dim.ok("image", "import", "alpha", "--from", str(src))
    _renumber(src / "dev/null", (1, 5))
    os.chmod(src / "dev/initctl", 0o644)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    got, want = snapshot(version_tree(dim.store, "alpha", 2)), snapshot(src)
    # everything but the extended attributes must match: any other difference is a real failure
    assert _without_xattrs(got) == _without_xattrs(want)
    assert {p: got[p][7] for p in want} == {p: want[p][7] for p in want}


def _without_xattrs(tree: dict[str, tuple]) -> dict[str, tuple]:
    """A snapshot without its extended attributes (field 7 of image_trees.snapshot's tuple)."""
    return {path: entry[:7] + entry[8:] for path, entry in tree.items()}


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_tarball_keeps_owners_devices_and_trusted_attributes(dim, tmp_path, suffix):
    src = full_tree(tmp_path / "src")
    tarball = tmp_path / f"master{suffix}"
    _tar(tarball, src)
    dim.ok("image", "import", "alpha", "--from", str(tarball))
    expected = snapshot(src)
    for path in [p for p, e in expected.items() if e[0].startswith("s")]:
        del expected[path]  # tar has no sockets
    assert snapshot(version_tree(dim.store, "alpha", 1)) == expected
    change_tree(src)
    _tar(tarball, src)
    dim.ok("image", "sync", "alpha", "--from", str(tarball))
    v1, v2 = version_tree(dim.store, "alpha", 1), version_tree(dim.store, "alpha", 2)
    expected = snapshot(src)
    for path in [p for p, e in expected.items() if e[0].startswith("s")]:
        del expected[path]
    assert snapshot(v2) == expected
    # unpacked anew, yet unchanged files are shared with version 1
    assert inode(v2 / "usr/lib/libbig.so") == inode(v1 / "usr/lib/libbig.so")
    assert inode(v2 / "etc/motd") != inode(v1 / "etc/motd")


def _tar(tarball: Path, tree: Path) -> None:
    command = ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-acf", str(tarball)]
    run = subprocess.run([*command, "-C", str(tree), "."], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
