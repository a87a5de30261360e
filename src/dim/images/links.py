"""Applying a delta as hard links: how live follows a version without copying a byte.

    >>> apply_links(store.paths.live("rhel9"), store.paths.version("rhel9", 4), delta)

Each added or changed file of the delta is hard-linked from the version to a temporary name
next to its place in the target, then renamed over the old one: readers never see half a file,
and the old inode lives on in the versions that hold it. Removed paths are unlinked (trees
removed whole). Directories are made or given their owner, mode and extended attributes as
they come; their modification times are set last, deepest first, since a directory's time
changes whenever an entry in it does. A crash between a link and its rename (crash point
``mid-live``) leaves a ``.NAME.dim-PID`` temporary that the next sync of live replaces.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from dim.files import remove_path, remove_tree, temporary_name
from dim.images.crash import crash_point
from dim.images.delta import Delta
from dim.images.tree import Entry, read_xattrs


def apply_links(target: Path, source: Path | Callable[[str], str], delta: Delta) -> None:
    """Make ``target`` equal to the tree ``delta`` leads to: files are hard links to ``source``'s
    (a folder holding every added and changed path, or a function giving each one's file)."""
    root = str(source)
    locate = source if callable(source) else lambda path: f"{root}/{path}"
    base = str(target)
    for path in delta.removed:
        remove_path(f"{base}/{path}" if path else base)
    touched_dirs = []
    for path in (*delta.added, *delta.changed):
        e = delta.new[path]
        where = f"{base}/{path}" if path else base
        if e.kind == "d":
            _ensure_dir(where, e)
            touched_dirs.append((where, e))
        else:
            _link_over(locate(path), where)
    # a directory's time changes whenever an entry in it does: set them last, deepest first
    for path in reversed(_parents_of(delta)):
        where = f"{base}/{path}" if path else base
        os.utime(
            where, ns=(delta.new[path].mtime_ns, delta.new[path].mtime_ns), follow_symlinks=False
        )
    for where, e in reversed(touched_dirs):
        os.utime(where, ns=(e.mtime_ns, e.mtime_ns))


def link_farm(tree: dict[str, tuple[Entry, str]], target: Path) -> None:
    """A whole tree at ``target`` (new) from each path's entry and the file holding it:
    directories are made with the entry's metadata, everything else is a hard link."""
    target.mkdir(parents=True, exist_ok=True)
    base = str(target)
    dirs = []
    for path, (e, source) in tree.items():
        where = f"{base}/{path}" if path else base
        if e.kind == "d":
            if path:
                os.mkdir(where)
            dirs.append((where, e))
        else:
            os.link(source, where, follow_symlinks=False)
    for where, e in reversed(dirs):
        set_metadata(where, e)
        os.utime(where, ns=(e.mtime_ns, e.mtime_ns))


def copy_dir_times(target: Path, entries: dict[str, Entry]) -> None:
    """Give every directory of ``target`` the modification time ``entries`` records for it."""
    base = str(target)
    for path, e in entries.items():
        where = f"{base}/{path}" if path else base
        if e.kind == "d" and os.lstat(where).st_mtime_ns != e.mtime_ns:
            os.utime(where, ns=(e.mtime_ns, e.mtime_ns))


def set_metadata(where: str, e: Entry) -> None:
    """Owner, mode and extended attributes of ``e`` on ``where`` (times are set separately)."""
    os.chown(where, e.uid, e.gid, follow_symlinks=False)
    if e.kind != "l":
        os.chmod(where, e.mode)
    current = dict(read_xattrs(where))
    for name, value in e.xattrs:
        if current.pop(name, None) != value:
            os.setxattr(where, name, value, follow_symlinks=False)
    for name in current:
        with contextlib.suppress(OSError):
            os.removexattr(where, name, follow_symlinks=False)


def _parents_of(delta: Delta) -> list[str]:
    parents = {p.rpartition("/")[0] for p in (*delta.added, *delta.changed, *delta.removed)}
    return [p for p in delta.new if p in parents and delta.new[p].kind == "d"]


def _ensure_dir(where: str, e: Entry) -> None:
    if os.path.lexists(where) and not (os.path.isdir(where) and not os.path.islink(where)):
        os.unlink(where)
    with contextlib.suppress(FileExistsError):
        os.mkdir(where, e.mode)
    set_metadata(where, e)


def _link_over(source: str, where: str) -> None:
    """Replace ``where`` by a hard link to ``source``, atomically for readers."""
    if os.path.isdir(where) and not os.path.islink(where):
        remove_tree(where)
    temporary = temporary_name(where)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    os.link(source, temporary, follow_symlinks=False)
    crash_point("mid-live")
    os.rename(temporary, where)
