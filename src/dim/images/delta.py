"""The difference between two trees: added, changed and removed paths, with their metadata.

    >>> delta = compare(scan(version_3), scan(version_4))
    >>> delta.added, delta.changed, delta.removed
    (('etc/motd.d',), ('etc/passwd',), ('var/cache/x',))

Versions share the inodes of unchanged files, so between two versions a regular file changed
exactly when its inode did. Between a node's replica (real copies) and its image, the file's
metadata decides, as rsync's quick check does: size, modification time, mode, owner, links,
device numbers and extended attributes.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from dim.images.tree import Entry, under


@dataclass(frozen=True, slots=True)
class Delta:
    old: dict[str, Entry] = field(repr=False)
    new: dict[str, Entry] = field(repr=False)
    added: tuple[str, ...]  # parents before children
    changed: tuple[str, ...]  # parents before children
    removed: tuple[str, ...]  # children before parents

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def record(self) -> dict:
        """The three lists of absolute paths, for ``--json`` and the REST API."""
        return {
            "added": ["/" + p for p in self.added],
            "changed": ["/" + p for p in self.changed],
            "removed": ["/" + p for p in self.removed],
        }

    def bytes_added(self) -> int:
        """Bytes of file content the new tree holds that the old one did not."""
        known = {(e.dev, e.ino) for e in self.old.values() if e.kind == "f"}
        seen: set[tuple[int, int]] = set()
        total = 0
        for path in (*self.added, *self.changed):
            e = self.new[path]
            key = (e.dev, e.ino)
            if e.kind == "f" and key not in known and key not in seen:
                seen.add(key)
                total += e.size
        return total

    def summary(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "removed": len(self.removed),
            "bytes_added": self.bytes_added(),
        }

    def only(self, folders: tuple[str, ...], keepout: tuple[str, ...] = ()) -> Delta:
        """The part of the change under ``folders`` (absolute paths), keep-outs left out."""

        def wanted(path: str) -> bool:
            return under(path, folders) and not kept_out(path, keepout)

        return Delta(
            self.old,
            self.new,
            tuple(p for p in self.added if wanted(p)),
            tuple(p for p in self.changed if wanted(p)),
            tuple(p for p in self.removed if wanted(p)),
        )


def kept_out(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether relative ``path`` matches a keep-out pattern, or lies below one.

    >>> kept_out("etc/ssh/ssh_host_rsa_key", ("/etc/ssh/ssh_host_*",))
    True
    >>> kept_out("var/log/syslog", ("/var/log",))
    True
    """
    absolute = "/" + path
    for pattern in patterns:
        if fnmatch.fnmatchcase(absolute, pattern):
            return True
        if fnmatch.fnmatchcase(absolute, pattern.rstrip("/") + "/*"):
            return True
    return False


def compare(old: dict[str, Entry], new: dict[str, Entry], *, by_inode: bool = True) -> Delta:
    """What turns ``old`` into ``new``. ``by_inode``: trees that share unchanged inodes."""
    added, changed = [], []
    for path, e in new.items():
        before = old.get(path)
        if before is None:
            added.append(path)
        elif _differs(before, e, by_inode):
            changed.append(path)
    removed = [p for p in reversed(old) if p not in new]
    return Delta(old, new, tuple(added), tuple(changed), tuple(removed))


def _differs(old: Entry, new: Entry, by_inode: bool) -> bool:
    if old.kind != new.kind:
        return True
    if old.kind == "d":
        return not old.same_metadata(new)
    if by_inode and old.same_file(new):
        return False
    return not old.same_metadata(new) or (by_inode and old.kind == "f")
