"""A file tree as data: every path with the metadata that makes two trees equal or not.

    >>> entries = scan(Path("/var/lib/dim/images/rhel9/versions/3"))
    >>> entries["etc/passwd"].kind, entries["etc/passwd"].mode
    ('f', 420)

Paths are relative to the tree's root, with ``/`` separators; the root itself is ``""``. Kinds:
``f`` regular file, ``d`` directory, ``l`` symbolic link, ``c``/``b`` character/block device,
``p`` fifo, ``s`` socket. Extended attributes are read for every entry (``trusted.*`` needs
root), links are never followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

_KINDS = {
    stat.S_IFREG: "f",
    stat.S_IFDIR: "d",
    stat.S_IFLNK: "l",
    stat.S_IFCHR: "c",
    stat.S_IFBLK: "b",
    stat.S_IFIFO: "p",
    stat.S_IFSOCK: "s",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of a tree and its metadata."""

    kind: str
    mode: int  # permission bits, with setuid/setgid/sticky
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ino: int
    dev: int
    nlink: int
    rdev: int = 0
    target: str | None = None  # of a symbolic link
    xattrs: tuple[tuple[str, bytes], ...] = ()

    def same_metadata(self, other: Entry) -> bool:
        """Equal as far as a reader can tell without reading file contents."""
        return (
            self.kind == other.kind
            and self.mode == other.mode
            and self.uid == other.uid
            and self.gid == other.gid
            and self.rdev == other.rdev
            and self.target == other.target
            and self.xattrs == other.xattrs
            and (self.kind == "d" or (self.size == other.size and self.mtime_ns == other.mtime_ns))
        )

    def same_file(self, other: Entry) -> bool:
        """The very same inode (hard links count as the same file)."""
        return self.ino == other.ino and self.dev == other.dev


def entry(path: str | Path, st: os.stat_result | None = None) -> Entry:
    """The entry of one path (lstat: links are not followed)."""
    st = st or os.lstat(path)
    kind = _KINDS[stat.S_IFMT(st.st_mode)]
    return Entry(
        kind=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if kind in ("f", "l") else 0,
        mtime_ns=st.st_mtime_ns,
        ino=st.st_ino,
        dev=st.st_dev,
        nlink=st.st_nlink,
        rdev=st.st_rdev if kind in ("c", "b") else 0,
        target=os.readlink(path) if kind == "l" else None,
        xattrs=read_xattrs(path),
    )


def read_xattrs(path: str | Path) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:  # a file system without xattrs, or a socket
        return ()
    if not names:
        return ()
    values = []
    for name in sorted(names):
        try:
            values.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(values)


def scan(root: str | Path, prefix: str = "") -> dict[str, Entry]:
    """Every path under ``root`` (``root`` itself as ``""``), parents before children."""
    root = str(root)
    result = {"": entry(root)} if not prefix else {}
    start = os.path.join(root, prefix) if prefix else root
    if prefix:
        result[prefix] = entry(start)
    stack = [(start, prefix)]
    while stack:
        folder, relative = stack.pop()
        with os.scandir(folder) as listing:
            children = sorted(listing, key=lambda e: e.name)
        for child in children:
            path = f"{relative}/{child.name}" if relative else child.name
            item = entry(child.path, child.stat(follow_symlinks=False))
            result[path] = item
            if item.kind == "d":
                stack.append((child.path, path))
    return result


def under(path: str, folders: tuple[str, ...]) -> bool:
    """Whether relative ``path`` is one of ``folders`` (absolute paths) or below one."""
    absolute = "/" + path
    return any(absolute == f or absolute.startswith(f.rstrip("/") + "/") for f in folders)
