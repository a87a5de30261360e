"""Versions as the changes they made: reading any version's tree without storing it whole.

A version folder holds only what the version wrote (added or changed paths; files are hard
links to the inodes live got, so a file replaced in live keeps its old inode in the version
that wrote it), plus the directories leading there; ``meta/N.changes`` lists the paths it
wrote and the paths it removed. A version without that file is whole: the first version, and
every version a dim before issue 14 made. Version N's tree is therefore the nearest whole
version at or before N with the changes of each later version up to N laid over it::

    >>> history = History(store, "rhel9")
    >>> history.locate(3, "etc/passwd")      # the file that is etc/passwd in version 3
    '/var/lib/dim/images/rhel9/versions/2/etc/passwd'
    >>> history.delta(3, 5).changed          # from the lists alone: O(what changed)
    ('etc/passwd',)
    >>> history.materialize(3, Path("/tmp/v3"))   # a whole tree of hard links, on demand

A commit, a rollback of a few versions and a diff cost what changed between the versions;
only ``image check``, a diff across a whole version and ``gc`` (which folds a removed version
into the next one, :mod:`dim.images.fold`) read whole trees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dim.files import write_atomically
from dim.images.delta import Delta, compare
from dim.images.links import link_farm
from dim.images.store import Store
from dim.images.tree import Entry, entry, scan


@dataclass(frozen=True, slots=True)
class Changes:
    """What one version did to its predecessor's tree: relative paths."""

    written: frozenset[str]  # added or changed (directories whose metadata or time changed too)
    removed: frozenset[str]  # every removed path, the contents of a removed folder included


def read_changes(store: Store, image: str, number: int) -> Changes | None:
    """Version ``number``'s changes, or None for a whole version."""
    try:
        data = json.loads(store.paths.changes_file(image, number).read_text())
    except FileNotFoundError:
        return None
    return Changes(frozenset(data["written"]), frozenset(data["removed"]))


def write_changes(store: Store, image: str, number: int, changes: Changes) -> None:
    # JSON's \\u escapes carry the surrogates os.fsdecode gives to names that are not UTF-8
    data = {"written": sorted(changes.written), "removed": sorted(changes.removed)}
    write_atomically(store.paths.changes_file(image, number), json.dumps(data).encode())


def tree_order(paths: Iterable[str]) -> list[str]:
    """Parents before children (the root ``""`` first), siblings by name."""
    return sorted(paths, key=lambda p: p.split("/") if p else [])


def ancestors(paths: Iterable[str]) -> set[str]:
    """Every folder above ``paths``, the root ``""`` included."""
    found: set[str] = set()
    for path in paths:
        while path:
            path = path.rpartition("/")[0]
            if path in found:
                break
            found.add(path)
    return found


def _moved(old: Entry, new: Entry) -> bool:
    """Whether a path must be staged to go from ``old`` to ``new``: another file, or a
    folder with other metadata or time."""
    if old.kind != new.kind:
        return True
    if new.kind == "d":
        return not old.same_metadata(new) or old.mtime_ns != new.mtime_ns
    return not old.same_file(new)


class History:
    """The versions of one image, read as a chain of changes. Build one per command: it caches
    the change lists it read."""

    def __init__(self, store: Store, image: str) -> None:
        self.store, self.image = store, image
        self.numbers = store.versions(image)
        self._changes: dict[int, Changes | None] = {}

    def changes(self, number: int) -> Changes | None:
        if number not in self._changes:
            self._changes[number] = read_changes(self.store, self.image, number)
        return self._changes[number]

    def folder(self, number: int) -> str:
        return str(self.store.paths.version(self.image, number))

    def locate(self, number: int, path: str) -> str | None:
        """The file-system path holding ``path`` as it is in version ``number``; None if absent."""
        for v in reversed([n for n in self.numbers if n <= number]):
            where = f"{self.folder(v)}/{path}" if path else self.folder(v)
            changes = self.changes(v)
            if changes is None:
                return where if os.path.lexists(where) else None
            if path in changes.written:
                return where
            if path in changes.removed:
                return None
        return None

    def entries(self, number: int, paths: Iterable[str]) -> dict[str, Entry]:
        """The entries of those ``paths`` that exist in version ``number``, in tree order."""
        return {p: e for p, (e, _) in self.holders(number, paths).items()}

    def holders(self, number: int, paths: Iterable[str]) -> dict[str, tuple[Entry, str]]:
        """Each of ``paths`` that exists in version ``number``: its entry and its file."""
        found = {}
        for path in tree_order(paths):
            where = self.locate(number, path)
            if where is not None:
                found[path] = (entry(where), where)
        return found

    def touched(self, first: int, last: int) -> set[str] | None:
        """Paths written or removed by the versions after ``first`` up to ``last``; None if one
        of them is whole (then only whole trees tell)."""
        paths: set[str] = set()
        for v in self.numbers:
            if first < v <= last:
                changes = self.changes(v)
                if changes is None:
                    return None
                paths |= changes.written | changes.removed
        return paths

    def tree(self, number: int) -> dict[str, tuple[Entry, str]]:
        """Version ``number``'s whole tree: each path's entry and the file holding it."""
        older = [n for n in self.numbers if n <= number]
        if number not in older:
            raise ValueError(f"image {self.image} has no version {number}")
        base = next(v for v in reversed(older) if self.changes(v) is None)
        root = self.folder(base)
        result = {p: (e, f"{root}/{p}" if p else root) for p, e in scan(root).items()}
        for v in older:
            if v <= base:
                continue
            changes = self.changes(v)
            for path in changes.removed:
                result.pop(path, None)
            for path in changes.written:
                where = f"{self.folder(v)}/{path}" if path else self.folder(v)
                result[path] = (entry(where), where)
        return {p: result[p] for p in tree_order(result)}

    def delta(self, first: int, last: int) -> Delta:
        """What turns version ``first`` into ``last`` (either may be the older)."""
        low, high = sorted((first, last))
        touched = self.touched(low, high)
        if touched is None:
            old = {p: e for p, (e, _) in self.tree(first).items()}
            new = {p: e for p, (e, _) in self.tree(last).items()}
        else:
            paths = touched | ancestors(touched)
            old, new = self.entries(first, paths), self.entries(last, paths)
        return compare(old, new)

    def stage(self, number: int, since: int, target: Path) -> set[str]:
        """Stage in ``target`` (new) what turns version ``since`` into version ``number`` (a
        rollback): every path that differs, with the folders leading there, as hard links to
        version ``number``'s inodes; return the paths to remove."""
        low, high = sorted((number, since))
        touched = self.touched(low, high)
        if touched is None:  # a whole version between: compare whole trees
            want, have = self.tree(number), self.tree(since)
            touched = {p for p, (e, _) in want.items() if p not in have or _moved(have[p][0], e)}
            touched |= set(have) - set(want)
        found = self.holders(number, touched | ancestors(touched))
        link_farm(found, target)
        return touched - set(found)

    def materialize(self, number: int, target: Path) -> None:
        """Version ``number`` as a whole tree at ``target`` (new): directories made, every other
        path a hard link to the version's own inode."""
        link_farm(self.tree(number), target)
