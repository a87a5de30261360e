"""A change of an image under its lock, and the order that keeps the store consistent.

    >>> with changing(store, image) as change:
    ...     change.removed = fill(source, change.staging, change.live)
    ...     result = change.commit("dir:/srv/master")

Order of a commit, so that SIGKILL at any point leaves a store that the next command (or
``dim image check``) completes:

1. the staging folder is filled (by a source) under the image's lock with what changes; a
   leftover staging folder is never listed and is removed by the next command;
2. ``meta/N.json`` and ``meta/N.changes`` are written, then the staging folder is renamed to
   ``versions/N``: the version exists, complete, or not at all;
3. live is brought to version N by hard-linking each added or changed file to a temporary name
   and renaming it over the old one (readers never see half a file, and the old inode lives on
   in the versions that hold it: see :mod:`dim.images.links`); removed paths are unlinked;
   ``live.version`` is written last;
4. each node replica of the image is brought to N (see :mod:`dim.images.replicas`); its own
   ``.version`` marker is written last.

:func:`recover` is the other half of the promise: run under the lock before every change, it
removes unfinished staging folders, finishes an interrupted gc's folds, brings live (by the
latest version's change lists, or by whole trees if live is further off) and every replica
to the latest version. The
crash tests stop dim at these steps with :func:`dim.images.crash.crash_point`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dim import architectures
from dim.errors import ImageError
from dim.files import (
    fsync_folder,
    is_temporary,
    remove_path,
    remove_tree,
    write_atomically,
    write_number,
)
from dim.images import fold, replicas
from dim.images.crash import crash_point
from dim.images.delta import Delta, compare
from dim.images.history import (
    Changes,
    History,
    ancestors,
    read_changes,
    tree_order,
    write_changes,
)
from dim.images.links import apply_links, copy_dir_times
from dim.images.store import Store
from dim.images.tree import Entry, entry, scan
from dim.layout.model import Image


@dataclass(slots=True)
class CommitResult:
    image: str
    version: int | None  # None: the source had no change
    delta: dict[str, int]
    replicas_updated: int = 0
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (node, path)
    seconds: float = 0.0


@contextlib.contextmanager
def changing(store: Store, image: Image, **lock) -> Iterator[ImageChange]:
    """Lock, complete any interrupted work, and hand out a fresh staging folder.

    ``lock`` goes to :meth:`Store.locked` (``wait``, ``waiting``).
    """
    with store.locked(image.name, **lock):
        recover(store, image)
        staging = store.paths.staging(image.name, os.getpid())
        staging.parent.mkdir(parents=True, exist_ok=True)
        change = ImageChange(store, image, staging)
        try:
            yield change
        except OSError as exc:  # a full disk, most often: one line, not a traceback
            where = f" ({exc.filename})" if exc.filename else ""
            raise ImageError(
                f"cannot change image {image.name}: {exc.strerror or exc}{where}",
                hint=f"fix the cause (df -h {store.root}), then run the command again "
                f"or `dim image check {image.name}`: what was done so far is consistent",
            ) from exc
        finally:
            if staging.exists():
                remove_tree(staging)


@dataclass(slots=True)
class ImageChange:
    """One change of an image, under its lock: fill ``staging``, then :meth:`commit`.

    Once the image has a version, a source fills ``staging`` with only what changes (every
    entry with its new metadata, the folders leading there included) and lists in
    ``removed`` the paths it removes; the first version's staging holds the whole tree.
    """

    store: Store
    image: Image
    staging: Path
    removed: set[str] = field(default_factory=set)

    @property
    def latest(self) -> int | None:
        return self.store.latest(self.image.name)

    @property
    def live(self) -> Path | None:
        """The latest version's whole tree (live: :func:`recover` brought it there)."""
        return self.store.paths.live(self.image.name) if self.latest else None

    def commit(
        self, source: str, *, force: bool = False, progress: Callable[[str], None] | None = None
    ) -> CommitResult:
        """Record the staging tree as a new version, update live and the node replicas."""
        started = time.monotonic()
        store, name = self.store, self.image.name
        before = self.latest
        if before is None:
            delta, changes = compare({}, scan(self.staging)), None
            arch = architectures.detect([self.staging])
        else:
            live = store.paths.live(name)
            delta, changes = staged_delta(live, self.staging, self.removed)
            if delta.empty:
                return CommitResult(name, None, delta.summary(), seconds=time.monotonic() - started)
            _keep_only_written(self.staging, changes)
            arch = architectures.detect([self.staging, live], changes.removed)
        meta = {"source": source, "parent": before, "arch": arch, **delta.summary()}
        number = record(store, name, self.staging, meta, changes)
        crash_point("after-record")
        known = delta if store.live_version(name) == before else None
        sync_live(store, name, number, known)
        result = CommitResult(name, number, delta.summary())
        result.replicas_updated, result.conflicts = replicas.sync_all(
            store, self.image, number, before, delta, force=force, progress=progress
        )
        result.seconds = time.monotonic() - started
        return result


def staged_delta(live: Path, staging: Path, removed: set[str]) -> tuple[Delta, Changes]:
    """What a staging folder of changes (and the ``removed`` paths) does to ``live``.

    Costs what changed: the staging folder and the removed paths are read, nothing else. A
    directory whose only change is its time is no change for people (as in :func:`compare`)
    but is written all the same, so that the version's tree is exact.
    """
    staged = scan(staging)
    old: dict[str, Entry] = {}
    for path in removed:
        old.update(_subtree(live, path))
    for path, e in staged.items():
        current = _subtree(live, path) if e.kind != "d" else _entry_at(live, path)
        old.update(current)  # a folder replaced by a file: its contents go too
    new = dict(staged)
    gone = set(old) - set(staged)
    # folders above a change that did not change themselves: their times are set back after
    for path in ancestors(set(old) | set(staged)) - set(staged) - gone:
        new.update(_entry_at(live, path))
        old.update(_entry_at(live, path))
    order = tree_order(set(old) | set(new))
    delta = compare({p: old[p] for p in order if p in old}, {p: new[p] for p in order if p in new})
    timed = {
        p
        for p, e in delta.new.items()
        if e.kind == "d" and p in old and old[p].mtime_ns != e.mtime_ns
    }
    written = frozenset({*delta.added, *delta.changed, *timed})
    return delta, Changes(written, frozenset(delta.removed))


def _entry_at(root: Path, path: str) -> dict[str, Entry]:
    try:
        return {path: entry(f"{root}/{path}" if path else root)}
    except FileNotFoundError:
        return {}


def _subtree(root: Path, path: str) -> dict[str, Entry]:
    """``path`` in ``root`` and, if it is a folder, everything below it."""
    found = _entry_at(root, path)
    if found and found[path].kind == "d":
        return scan(root, path)
    return found


def _keep_only_written(staging: Path, changes: Changes) -> None:
    """Unlink what a source staged that did not change (a rollback links whatever differs
    anywhere between two versions): a version holds what it wrote, and folders."""
    for path, e in scan(staging).items():
        if e.kind != "d" and path not in changes.written:
            os.unlink(f"{staging}/{path}")


def record(
    store: Store, image: str, staging: Path, meta: dict, changes: Changes | None = None
) -> int:
    """Turn a filled staging folder into the next version (step 2 of the order above):
    ``changes`` None for a whole tree."""
    number = (store.latest(image) or 0) + 1
    meta = {"version": number, "created": time.time(), **meta}
    write_atomically(store.paths.meta_file(image, number), json.dumps(meta, indent=1).encode())
    if changes is None:  # a leftover of an interrupted commit would make this version sparse
        store.paths.changes_file(image, number).unlink(missing_ok=True)
    else:
        write_changes(store, image, number, changes)
    versions = store.paths.versions(image)
    versions.mkdir(parents=True, exist_ok=True)
    os.rename(staging, versions / str(number))
    fsync_folder(versions)
    return number


def sync_live(store: Store, image: str, number: int, delta: Delta | None = None) -> Delta:
    """Make live equal to version ``number`` (step 3); by a known delta when live is at its
    start, else by comparing live with what the version holds."""
    live = store.paths.live(image)
    live.mkdir(parents=True, exist_ok=True)
    history = History(store, image)
    if delta is None:
        delta = _repair_delta(history, live, number)
        bring_live(store, image, number, delta, lambda path: history.locate(number, path))
    else:
        bring_live(store, image, number, delta, store.paths.version(image, number))
    return delta


def bring_live(
    store: Store, image: str, number: int, delta: Delta, source: Path | Callable[[str], str]
) -> None:
    """Apply ``delta`` to live with files from ``source``, then move live's marker."""
    live = store.paths.live(image)
    apply_links(live, source, delta)
    # an interrupted update changed directories without setting their times back, and
    # compare() does not look at directory times: set every one that differs
    copy_dir_times(live, {p: e for p, e in delta.new.items() if e.kind == "d"})
    changes = read_changes(store, image, number)
    if changes is not None:  # folders whose time alone changed
        times = History(store, image).entries(number, (p for p in changes.written))
        copy_dir_times(live, {p: e for p, e in times.items() if e.kind == "d"})
    write_number(store.paths.live_marker(image), number)


def _repair_delta(history: History, live: Path, number: int) -> Delta:
    """Live is at the version before ``number``, part way to it, or anywhere (crash, hands)."""
    changes = history.changes(number)
    older = [n for n in history.numbers if n < number]
    at = history.store.live_version(history.image)
    if changes is not None and older and at == older[-1]:
        paths = changes.written | changes.removed
        paths |= ancestors(paths)
        _discard_temporaries(live, changes.written)
        old: dict[str, Entry] = {}
        for path in tree_order(paths):
            old.update(_entry_at(live, path))
        return compare(old, history.entries(number, paths))
    return compare(scan(live), {p: e for p, (e, _) in history.tree(number).items()})


def _discard_temporaries(live: Path, written: frozenset[str]) -> None:
    """Temporaries a killed update left next to the paths it was replacing."""
    for folder in {p.rpartition("/")[0] for p in written}:
        where = f"{live}/{folder}" if folder else str(live)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for name in os.listdir(where):
                if is_temporary(name):
                    remove_path(f"{where}/{name}")


def recover(store: Store, image: Image) -> list[str]:
    """Finish what an interrupted command left; return what was done, for people.

    Call it under the image's lock (:meth:`Store.locked`).
    """
    done = []
    folder = store.paths.image(image.name)
    for leftover in store.paths.unfinished(image.name):
        remove_path(leftover)  # a folder, or the list of paths a sync was copying
        done.append(f"removed the unfinished {leftover.relative_to(folder)}")
    done += fold.finish(store, image.name)
    latest = store.latest(image.name)
    if latest is None:
        return done
    if store.live_version(image.name) != latest:
        sync_live(store, image.name, latest)
        done.append(f"brought live to version {latest}")
    for node in store.replicas(image.name):
        current = store.replica_version(node, image.name)
        if current is None:
            # its copy (node switch, node reset) was interrupted: cp -a finishes it, and
            # gives every directory its mode and times, which cp sets last
            replicas.create(store, image, node)
            done.append(f"finished the replica of {node} at version {latest}")
        elif current != latest:
            replicas.discard_temporaries(store.paths.replica(node, image.name))
            replicas.sync(store, image, node, latest)
            done.append(f"brought the replica of {node} to version {latest}")
    return done
