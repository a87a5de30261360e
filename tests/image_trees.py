"""Helpers for the image tests: a layout, synthetic trees, a tree digest and an in-process dim.

::

    dim = Dim(tmp_path, capsys)                     # cluster.xml and a state folder in tmp_path
    base_tree(tmp_path / "src")                     # files, links, a fifo, a socket, xattrs
    assert dim("image", "import", "alpha", "--from", str(tmp_path / "src")).status == 0
    assert digest(dim.store.paths.live("alpha")) == digest(version_tree(dim.store, "alpha", 1))

:func:`snapshot` describes a tree by path: kind, mode, owner, group, modification time (to the
nanosecond, directories included), size, device number, link target, extended attributes, the
SHA-256 of the content and which paths of the tree share an inode (hard links). Two trees with
equal snapshots cannot be told apart by a reader; :func:`digest` folds a snapshot into one
string. Inode numbers themselves are left out: live and a version are different trees that
share inodes, and a replica must not share any.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dim.cli import main
from dim.images.history import History
from dim.images.store import Store

LAYOUT = """<?xml version="1.0"?>
<cluster name="imgtest" domain="imgtest.dim">
  <network name="boot" subnet="10.78.0.0/24" gateway="10.78.0.1"/>
  <server name="srv" address="10.78.0.1" dhcp="none" nfs="ganesha"/>
  <image name="alpha">
    <persist path="/etc"/> <persist path="/var"/>
    <volatile path="/tmp"/>
    <keepout path="/etc/hostname"/> <keepout path="/var/log"/>
    <keepout path="/etc/ssh/ssh_host_*"/>
  </image>
  <image name="beta"><persist path="/etc"/></image>
  <group name="nodes" nodes="n[1-3]">
    <interface network="boot" ip="10.78.0.{10+n1}"/>
  </group>
</cluster>
"""

T0 = 1_700_000_000_123_456_789  # a fixed modification time, with nanoseconds
T1 = T0 + 3_600_000_000_000  # an hour later: for files changed after an import


@dataclass(frozen=True, slots=True)
class Run:
    status: int
    out: str
    err: str


class Dim:
    """``dim`` run in-process on a layout and state folder of its own, output captured.

    The state folder is ``root/state`` unless ``state`` names another (the image tests on a
    CephFS mount, tests/integration/test_images_cephfs.py)."""

    def __init__(
        self, root: Path, capsys, layout: str = LAYOUT, *, state: Path | None = None
    ) -> None:
        self.config = root / "cluster.xml"
        self.config.write_text(layout)
        self.state = root / "state" if state is None else state
        self.capsys = capsys
        self.store = Store(self.state)

    def __call__(self, *args: str) -> Run:
        self.capsys.readouterr()
        status = main(["--config", str(self.config), "--state", str(self.state), *args])
        out, err = self.capsys.readouterr()
        return Run(status, out, err)

    def ok(self, *args: str) -> str:
        """Run, assert success, return stdout."""
        run = self(*args)
        assert run.status == 0, f"dim {' '.join(args)}: {run.status}\n{run.out}{run.err}"
        return run.out

    def argv(self, *args: str) -> list[str]:
        """The command line that runs the same in a child process (crash and lock tests)."""
        # the dim of the interpreter that runs the tests: a worktree may have no .venv of its own
        program = Path(sys.executable).parent / "dim"
        return [str(program), "--config", str(self.config), "--state", str(self.state), *args]


# -- building trees --------------------------------------------------------------------------


def write(
    root: Path, path: str, content: bytes | str = b"", mode: int = 0o644, mtime: int = T0
) -> Path:
    """A regular file at ``root/path`` (parents made) with a fixed modification time.

    Like rsync, dim takes a file of unchanged size and time for unchanged: a test that changes
    a file passes a new ``mtime`` (``T1``), as any real change would give it.
    """
    where = root / path
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chmod(where, mode)
    os.utime(where, ns=(mtime, mtime))
    return where


def base_tree(root: Path) -> Path:
    """A small system tree, no root needed: every kind an unprivileged user can make."""
    write(root, "etc/motd", "welcome\n")
    write(root, "etc/hostname", "master\n")
    write(root, "etc/ssh/sshd_config", "PermitRootLogin no\n")
    write(root, "etc/ssh/ssh_host_ed25519_key", "secret\n", 0o600)
    write(root, "etc/app/app.conf", "level=1\n")
    write(root, "etc/app/keep.conf", "unchanged\n")
    write(root, "var/lib/app/state", "0\n")
    write(root, "var/log/syslog", "boot\n")
    write(root, "usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
    write(root, "usr/lib/libbig.so", os.urandom(64 * 1024))
    write(root, "usr/share/doc/a", "shared by two names\n")
    os.link(root / "usr/share/doc/a", root / "usr/share/doc/b")
    os.symlink("tool", root / "usr/bin/alias")
    os.symlink("/etc/motd", root / "etc/motd.link")
    os.setxattr(root / "etc/motd", "user.dim.test", b"xattr value")
    os.mkfifo(root / "var/lib/app/fifo", 0o640)
    os.mknod(root / "var/lib/app/socket", stat.S_IFSOCK | 0o660)  # no root needed
    for folder in ("proc", "sys", "dev", "run", "tmp"):
        (root / folder).mkdir(exist_ok=True)
    _freeze_times(root)
    return root


def busybox_tree(root: Path, busybox: str, *, setfattr: bool = False) -> Path:
    """A tree to chroot into: static busybox as the shell and tools, a few files.

    ``setfattr``: the host's setfattr too, with the C library it needs (busybox has none).
    """
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin/busybox")
    applets = "sh echo sleep cat rm mkdir touch ln mv chmod chown mknod mkfifo true false ls"
    for applet in [*applets.split(), "cp", "test", "["]:
        os.symlink("busybox", root / "bin" / applet)
    if setfattr:
        for program in (
            "/usr/bin/setfattr",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
        ):
            where = root / program.lstrip("/")
            where.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(program), where)
    write(root, "etc/motd", "1\n")
    write(root, "var/state", "1\n")
    write(root, "usr/x", "1\n")
    for folder in ("proc", "sys", "dev", "run", "tmp"):
        (root / folder).mkdir()
    _freeze_times(root)
    return root


_trees = iter(range(1 << 30))


def version_tree(store: Store, image: str, number: int) -> Path:
    """Version ``number``'s whole tree, materialised as hard links into the store (a version
    folder holds only what that version wrote): a new folder each call, beside the store."""
    target = store.root / ".test-trees" / f"{image}-{number}-{next(_trees)}"
    History(store, image).materialize(number, target)
    return target


def _freeze_times(root: Path) -> None:
    """Fixed times on links and directories too, deepest first, so trees compare exactly."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            where = os.path.join(folder, name)
            if os.path.islink(where):
                os.utime(where, ns=(T0, T0), follow_symlinks=False)
        os.utime(folder, ns=(T0, T0))


def touch_tree(root: Path) -> None:
    """After editing a tree by hand: give every directory and link the fixed time again."""
    _freeze_times(root)


# -- comparing trees -------------------------------------------------------------------------


def snapshot(root: Path, *, dir_times: bool = True, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every path of the tree (the root as ``.``) with what a reader can observe of it.

    ``dir_times=False`` leaves out the times of directories: a node replica's directories take
    the time of the last file dim renamed into them, which no reader relies on. ``skip``:
    relative paths whose content is not read (mount points such as ``proc``).
    """
    root = Path(root)
    paths = [root]
    for folder, dirs, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        if relative in skip:
            dirs[:] = []
            continue
        paths += [Path(folder, name) for name in dirs + files]
    result: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], str] = {}
    for where in sorted(paths, key=str):
        relative = str(where.relative_to(root))
        st = os.lstat(where)
        kind = stat.S_IFMT(st.st_mode)
        content = target = None
        if stat.S_ISREG(kind):
            content = hashlib.sha256(where.read_bytes()).hexdigest()
        elif stat.S_ISLNK(kind):
            target = os.readlink(where)
        key = (st.st_dev, st.st_ino)
        linked = inodes.setdefault(key, relative) if not stat.S_ISDIR(kind) else relative
        result[relative] = (
            stat.filemode(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns if dir_times or not stat.S_ISDIR(kind) else None,
            st.st_size if stat.S_ISREG(kind) or stat.S_ISLNK(kind) else 0,
            st.st_rdev if stat.S_ISCHR(kind) or stat.S_ISBLK(kind) else 0,
            target,
            xattrs(where),
            content,
            linked,  # the first path (in sorted order) holding this inode
        )
    return result


def digest(root: Path, *, dir_times: bool = True) -> str:
    """One string for the whole tree: equal digests, trees no reader can tell apart."""
    items = sorted(snapshot(root, dir_times=dir_times).items())
    return hashlib.sha256(repr(items).encode()).hexdigest()


def xattrs(where: Path) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(where, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(where, n, follow_symlinks=False)) for n in names))


def inode(where: Path) -> int:
    return os.lstat(where).st_ino


def temporaries(root: Path) -> list[str]:
    """dim's temporary names (``.NAME.dim-PID``) anywhere under ``root``."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if ".dim-" in p.name)


# -- processes: what a killed dim left running -----------------------------------------------


def descendants(pid: int) -> set[int]:
    """The children of ``pid``, theirs, and so on, as /proc shows them now."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                text = Path(f"/proc/{parent}/task/{task}/children").read_text()
            except (FileNotFoundError, ProcessLookupError):  # the task ended since listdir
                continue
            for child in map(int, text.split()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def survivors(pids: set[int], within: float) -> set[int]:
    """Those of ``pids`` still running after ``within`` seconds (checked as they go)."""
    deadline = time.monotonic() + within
    while True:
        left = {p for p in pids if alive(p)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.005)
