"""Removing versions others build on: each removed version is folded into the next one kept.

A version holds only what it wrote (:mod:`dim.images.history`), so the version after it needs
what it holds that nothing later overwrote. ``gc`` removes versions in runs, each run ending
at the version kept after it (the latest is always kept)::

    >>> plan = fold_plan(store, "rhel9", [1, 2], into=3)
    >>> plan.bytes_freed
    18
    >>> fold(store, "rhel9", plan)

Folding moves (renames: the inodes stay, so live and the nodes notice nothing) each file of
the run that the kept version does not overwrite into the kept version, gives the folders the
run wrote their metadata there, rewrites the kept version's change lists (or drops them: a
run that starts with a whole version makes the kept one whole), then removes the run. The
plan is written first to ``meta/N.fold``: a command killed meanwhile leaves a journal that the
next one (:func:`finish`, from :func:`dim.images.commit.recover`) carries out again, since
every step can be redone.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

from dim.files import remove_tree, write_atomically
from dim.images.crash import crash_point
from dim.images.history import Changes, History, tree_order, write_changes
from dim.images.links import set_metadata
from dim.images.store import Store
from dim.images.tree import entry, scan


@dataclass(frozen=True, slots=True)
class FoldPlan:
    into: int
    versions: tuple[int, ...]  # the run removed, oldest first
    moves: tuple[tuple[str, int], ...]  # (path, version holding it), in tree order
    changes: Changes | None  # the kept version's new lists; None: it becomes whole
    bytes_freed: int = 0


def fold_plan(store: Store, image: str, versions: list[int], into: int) -> FoldPlan:
    """What folding the run ``versions`` into version ``into`` moves, and what it frees."""
    history = History(store, image)
    pending: dict[str, int] = {}
    removed: set[str] = set()
    whole = False
    for v in versions:
        changes = history.changes(v)
        if changes is None:
            whole, removed = True, set()
            pending = dict.fromkeys(scan(history.folder(v)), v)
            continue
        for path in changes.removed:
            pending.pop(path, None)
            removed.add(path)
        for path in changes.written:
            pending[path] = v
            removed.discard(path)
    target = history.changes(into)
    if target is None:  # a whole version needs nothing from before
        pending, new = {}, None
    else:
        for path in target.written | target.removed:
            pending.pop(path, None)
        if whole:
            new = None
        else:
            written = target.written | set(pending)
            new = Changes(frozenset(written), frozenset((target.removed | removed) - written))
    moves = tuple((p, pending[p]) for p in tree_order(pending))
    kept = {(v, p) for p, v in moves}
    return FoldPlan(into, tuple(versions), moves, new, _freed(history, versions, kept))


def _freed(history: History, versions: list[int], kept: set[tuple[int, str]]) -> int:
    """Bytes of the files whose every name goes with the run."""
    names: dict[tuple[int, int], list] = {}
    for v in versions:
        for path, e in scan(history.folder(v)).items():
            if e.kind == "f" and (v, path) not in kept:
                names.setdefault((e.dev, e.ino), [0, e.nlink, e.size])[0] += 1
    return sum(size for count, nlink, size in names.values() if count >= nlink)


def fold(store: Store, image: str, plan: FoldPlan) -> None:
    """Carry out ``plan``: journal first, then moves, lists, removal (see the module's text)."""
    journal = {
        "into": plan.into,
        "versions": list(plan.versions),
        # a folder's time, read now: moving files out of it changes it, and a rerun needs it
        "moves": [[p, v, _folder_time(store, image, v, p)] for p, v in plan.moves],
        "changes": None
        if plan.changes is None
        else {"written": sorted(plan.changes.written), "removed": sorted(plan.changes.removed)},
    }
    write_atomically(store.paths.fold_file(image, plan.into), json.dumps(journal).encode())
    _carry_out(store, image, journal)


def _folder_time(store: Store, image: str, version: int, path: str) -> int | None:
    st = os.lstat(
        store.paths.version(image, version) / path if path else store.paths.version(image, version)
    )
    return st.st_mtime_ns if stat.S_ISDIR(st.st_mode) else None


def finish(store: Store, image: str) -> list[str]:
    """Carry out the folds an interrupted gc left; return what was done, for people."""
    done = []
    for journal_file in sorted(store.paths.meta(image).glob("*.fold")):
        journal = json.loads(journal_file.read_text())
        _carry_out(store, image, journal)
        done.append(f"finished folding versions {journal['versions']} into {journal['into']}")
    return done


def _carry_out(store: Store, image: str, journal: dict) -> None:
    into = journal["into"]
    target = store.paths.version(image, into)
    dirs = []
    for path, v, folder_time in journal["moves"]:
        source = store.paths.version(image, v) / path if path else store.paths.version(image, v)
        where = target / path if path else target
        try:
            e = entry(source)
        except FileNotFoundError:  # moved before an interruption
            continue
        if e.kind == "d":
            where.mkdir(parents=True, exist_ok=True)
            set_metadata(str(where), e)
            dirs.append((where, folder_time))
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source, where)
            crash_point("mid-fold")
    for where, mtime_ns in reversed(dirs):
        os.utime(where, ns=(mtime_ns, mtime_ns))
    if journal["changes"] is None:
        store.paths.changes_file(image, into).unlink(missing_ok=True)
    else:
        lists = journal["changes"]
        changes = Changes(frozenset(lists["written"]), frozenset(lists["removed"]))
        write_changes(store, image, into, changes)
    for v in journal["versions"]:
        # the meta file last: a version folder without one is still listed, and removed again
        remove_tree(store.paths.version(image, v))
        store.paths.changes_file(image, v).unlink(missing_ok=True)
        store.paths.meta_file(image, v).unlink(missing_ok=True)
    store.paths.fold_file(image, into).unlink()
