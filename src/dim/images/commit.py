"""A change of an image under its lock, and the order that keeps the store consistent.

    >>> with changing(store, image) as change:
    ...     fill_from_directory(source, change.staging, change.latest_path)
    ...     result = change.commit("dir:/srv/master")

Order of a commit, so that SIGKILL at any point leaves a store that the next command (or
``dim image check``) completes:

1. the staging folder is filled (by a source) under the image's lock; a leftover staging
   folder is never listed and is removed by the next command;
2. ``meta/N.json`` is written, then the staging folder is renamed to ``versions/N``: the
   version exists, complete, or not at all;
3. live is brought to version N by hard-linking each added or changed file to a temporary name
   and renaming it over the old one (readers never see half a file, and the old inode lives on
   in the versions that hold it: see :mod:`dim.images.links`); removed paths are unlinked;
   ``live.version`` is written last;
4. each node replica of the image is brought to N (see :mod:`dim.images.replicas`); its own
   ``.version`` marker is written last.

:func:`recover` is the other half of the promise: run under the lock before every change, it
removes unfinished staging folders, brings live and every replica to the latest version. The
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

from dim.errors import ImageError
from dim.files import fsync_folder, remove_tree, write_atomically, write_number
from dim.images import replicas
from dim.images.crash import crash_point
from dim.images.delta import Delta, compare
from dim.images.links import apply_links, copy_dir_times
from dim.images.store import Store
from dim.images.tree import Entry, scan
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
    """One change of an image, under its lock: fill ``staging``, then :meth:`commit`."""

    store: Store
    image: Image
    staging: Path

    @property
    def latest(self) -> int | None:
        return self.store.latest(self.image.name)

    @property
    def latest_path(self) -> Path | None:
        latest = self.latest
        return self.store.paths.version(self.image.name, latest) if latest else None

    def commit(
        self, source: str, *, force: bool = False, progress: Callable[[str], None] | None = None
    ) -> CommitResult:
        """Record the staging tree as a new version, update live and the node replicas."""
        started = time.monotonic()
        store, name = self.store, self.image.name
        before = self.latest
        old: dict[str, Entry] = scan(self.latest_path) if before else {}
        delta = compare(old, scan(self.staging))
        if before is not None and delta.empty:
            return CommitResult(name, None, delta.summary(), seconds=time.monotonic() - started)
        meta = {"source": source, "parent": before, **delta.summary()}
        number = record(store, name, self.staging, meta)
        crash_point("after-record")
        # the scan of staging is the scan of versions/N: renaming changed no inode
        known = delta if store.live_version(name) == before else None
        sync_live(store, name, number, known)
        result = CommitResult(name, number, delta.summary())
        result.replicas_updated, result.conflicts = replicas.sync_all(
            store, self.image, number, before, delta, force=force, progress=progress
        )
        result.seconds = time.monotonic() - started
        return result


def record(store: Store, image: str, staging: Path, meta: dict) -> int:
    """Turn a filled staging folder into the next version (step 2 of the order above)."""
    number = (store.latest(image) or 0) + 1
    meta = {"version": number, "created": time.time(), **meta}
    write_atomically(store.paths.meta_file(image, number), json.dumps(meta, indent=1).encode())
    versions = store.paths.versions(image)
    versions.mkdir(parents=True, exist_ok=True)
    os.rename(staging, versions / str(number))
    fsync_folder(versions)
    return number


def sync_live(store: Store, image: str, number: int, delta: Delta | None = None) -> Delta:
    """Make live equal to version ``number`` (step 3); by a known delta when live is at its
    start, else by comparing the two trees."""
    live = store.paths.live(image)
    live.mkdir(parents=True, exist_ok=True)
    version = store.paths.version(image, number)
    if delta is None:
        delta = compare(scan(live), scan(version))
        apply_links(live, version, delta)
        # an interrupted update changed directories without setting their times back, and
        # compare() does not look at directory times: set every one that differs
        copy_dir_times(live, delta.new)
    else:
        apply_links(live, version, delta)
    write_number(store.paths.live_marker(image), number)
    return delta


def recover(store: Store, image: Image) -> list[str]:
    """Finish what an interrupted command left; return what was done, for people.

    Call it under the image's lock (:meth:`Store.locked`).
    """
    done = []
    folder = store.paths.image(image.name)
    for leftover in store.paths.unfinished(image.name):
        remove_tree(leftover)
        done.append(f"removed the unfinished {leftover.relative_to(folder)}")
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
