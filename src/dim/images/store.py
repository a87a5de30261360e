"""The image store: versions, the live tree, and the order that keeps them consistent.

    >>> store = Store(Path("/var/lib/dim"))
    >>> with store.changing("rhel9") as change:
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
   in the versions that hold it); removed paths are unlinked; ``live.version`` is written last;
4. each node replica of the image is brought to N (see :mod:`dim.images.replicas`); its own
   ``.version`` marker is written last.

The crash tests stop dim at these steps with :func:`crash_point` (``DIM_TEST_CRASH_AT``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dim.errors import ImageBusy, ImageError
from dim.files import (
    fsync_folder,
    read_number,
    remove_path,
    remove_tree,
    temporary_name,
    write_atomically,
    write_number,
)
from dim.images.delta import Delta, compare
from dim.images.tree import Entry, scan
from dim.layout.model import Image
from dim.paths import StatePaths

LOCK_TIMEOUT = 600.0
_VERSION = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class Version:
    number: int
    path: Path
    meta: dict


@dataclass(slots=True)
class CommitResult:
    image: str
    version: int | None  # None: the source had no change
    delta: dict[str, int]
    replicas_updated: int = 0
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (node, path)
    seconds: float = 0.0


class Store:
    """All images and node replicas under one state folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.paths = StatePaths(self.root)

    # -- reading -----------------------------------------------------------------------------

    def exists(self, image: str) -> bool:
        return bool(self.versions(image))

    def versions(self, image: str) -> list[int]:
        folder = self.paths.versions(image)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if _VERSION.fullmatch(n))

    def latest(self, image: str) -> int | None:
        versions = self.versions(image)
        return versions[-1] if versions else None

    def version(self, image: str, number: int) -> Version:
        path = self.paths.version(image, number)
        if not path.is_dir():
            raise ImageError(
                f"image {image} has no version {number}",
                hint=f"`dim image versions {image}` lists them",
            )
        try:
            meta = json.loads(self.paths.meta_file(image, number).read_text())
        except (FileNotFoundError, ValueError):
            meta = {}
        return Version(number, path, meta)

    def live_version(self, image: str) -> int | None:
        return read_number(self.paths.live_marker(image))

    def replica_version(self, node: str, image: str) -> int | None:
        return read_number(self.paths.replica_marker(node, image))

    def replicas(self, image: str) -> list[str]:
        """Nodes that have a replica of ``image``."""
        nodes = self.paths.nodes
        try:
            names = sorted(os.listdir(nodes))
        except FileNotFoundError:
            return []
        return [n for n in names if (nodes / n / image).is_dir()]

    def images(self) -> list[str]:
        try:
            return sorted(os.listdir(self.paths.images))
        except FileNotFoundError:
            return []

    # -- changing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(
        self,
        image: str,
        *,
        wait: float = LOCK_TIMEOUT,
        waiting: Callable[[str], None] | None = None,
    ) -> Iterator[None]:
        """Hold ``image``'s lock: a second command waits (up to ``wait`` s) or fails clearly."""
        lock = self.paths.lock(image)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(handle)
                if waiting is not None and wait > 0:
                    waiting(
                        f"image {image} is being changed by another dim command{holder}; waiting"
                    )
                if not _wait_for_lock(handle, wait):
                    raise ImageBusy(
                        f"image {image} is being changed by another dim command{holder}",
                        hint="wait for it to finish, then run this command again",
                    ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield

    @contextlib.contextmanager
    def changing(self, image: Image, **lock) -> Iterator[Change]:
        """Lock, complete any interrupted work, and hand out a fresh staging folder."""
        with self.locked(image.name, **lock):
            self.recover(image)
            staging = self.paths.staging(image.name, os.getpid())
            staging.parent.mkdir(parents=True, exist_ok=True)
            change = Change(self, image, staging)
            try:
                yield change
            except OSError as exc:  # a full disk, most often: one line, not a traceback
                where = f" ({exc.filename})" if exc.filename else ""
                raise ImageError(
                    f"cannot change image {image.name}: {exc.strerror or exc}{where}",
                    hint=f"fix the cause (df -h {self.root}), then run the command again "
                    f"or `dim image check {image.name}`: what was done so far is consistent",
                ) from exc
            finally:
                if staging.exists():
                    remove_tree(staging)

    def recover(self, image: Image) -> list[str]:
        """Finish what an interrupted command left; return what was done, for people."""
        done = []
        folder = self.paths.image(image.name)
        for leftover in self.paths.unfinished(image.name):
            remove_tree(leftover)
            done.append(f"removed the unfinished {leftover.relative_to(folder)}")
        latest = self.latest(image.name)
        if latest is None:
            return done
        if self.live_version(image.name) != latest:
            self.sync_live(image.name, latest)
            done.append(f"brought live to version {latest}")
        from dim.images import replicas  # replicas imports this module

        for node in self.replicas(image.name):
            current = self.replica_version(node, image.name)
            if current is None:
                # its copy (node switch, node reset) was interrupted: cp -a finishes it, and
                # gives every directory its mode and times, which cp sets last
                replicas.create(self, image, node)
                done.append(f"finished the replica of {node} at version {latest}")
            elif current != latest:
                replicas.discard_temporaries(self.paths.replica(node, image.name))
                replicas.sync(self, image, node, latest)
                done.append(f"brought the replica of {node} to version {latest}")
        return done

    def sync_live(self, image: str, number: int, delta: Delta | None = None) -> Delta:
        """Make live equal to version ``number``; by a known delta when live is at its start."""
        live = self.paths.live(image)
        live.mkdir(parents=True, exist_ok=True)
        version = self.paths.version(image, number)
        if delta is None:
            delta = compare(scan(live), scan(version))
            apply_links(live, version, delta)
            # an interrupted update changed directories without setting their times back, and
            # compare() does not look at directory times: set every one that differs
            _copy_dir_times(live, delta.new)
        else:
            apply_links(live, version, delta)
        write_number(self.paths.live_marker(image), number)
        return delta

    def record(self, image: str, staging: Path, meta: dict) -> int:
        """Turn a filled staging folder into the next version (steps 2 of the order above)."""
        number = (self.latest(image) or 0) + 1
        meta = {"version": number, "created": time.time(), **meta}
        write_atomically(self.paths.meta_file(image, number), json.dumps(meta, indent=1).encode())
        versions = self.paths.versions(image)
        versions.mkdir(parents=True, exist_ok=True)
        os.rename(staging, versions / str(number))
        fsync_folder(versions)
        return number


@dataclass(slots=True)
class Change:
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
        from dim.images import replicas

        started = time.monotonic()
        name = self.image.name
        before = self.latest
        old: dict[str, Entry] = scan(self.latest_path) if before else {}
        delta = compare(old, scan(self.staging))
        if before is not None and delta.empty:
            return CommitResult(name, None, delta.summary(), seconds=time.monotonic() - started)
        number = self.store.record(
            name, self.staging, {"source": source, "parent": before, **delta.summary()}
        )
        crash_point("after-record")
        # the scan of staging is the scan of versions/N: renaming changed no inode
        known = delta if self.store.live_version(name) == before else None
        self.store.sync_live(name, number, known)
        result = CommitResult(name, number, delta.summary())
        result.replicas_updated, result.conflicts = replicas.sync_all(
            self.store, self.image, number, before, delta, force=force, progress=progress
        )
        result.seconds = time.monotonic() - started
        return result


# -- applying a delta as hard links -----------------------------------------------------------


def apply_links(target: Path, version: Path, delta: Delta) -> None:
    """Make ``target`` equal to ``version`` by ``delta``: files are hard links into the version."""
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
            _link_over(f"{version}/{path}", where)
    # a directory's time changes whenever an entry in it does: set them last, deepest first
    for path in reversed(_parents_of(delta)):
        where = f"{base}/{path}" if path else base
        os.utime(
            where, ns=(delta.new[path].mtime_ns, delta.new[path].mtime_ns), follow_symlinks=False
        )
    for where, e in reversed(touched_dirs):
        os.utime(where, ns=(e.mtime_ns, e.mtime_ns))


def _copy_dir_times(target: Path, entries: dict[str, Entry]) -> None:
    base = str(target)
    for path, e in entries.items():
        where = f"{base}/{path}" if path else base
        if e.kind == "d" and os.lstat(where).st_mtime_ns != e.mtime_ns:
            os.utime(where, ns=(e.mtime_ns, e.mtime_ns))


def _parents_of(delta: Delta) -> list[str]:
    parents = {p.rpartition("/")[0] for p in (*delta.added, *delta.changed, *delta.removed)}
    return [p for p in delta.new if p in parents and delta.new[p].kind == "d"]


def _ensure_dir(where: str, e: Entry) -> None:
    if os.path.lexists(where) and not (os.path.isdir(where) and not os.path.islink(where)):
        os.unlink(where)
    with contextlib.suppress(FileExistsError):
        os.mkdir(where, e.mode)
    set_metadata(where, e)


def set_metadata(where: str, e: Entry) -> None:
    """Owner, mode and extended attributes of ``e`` on ``where`` (times are set separately)."""
    os.chown(where, e.uid, e.gid, follow_symlinks=False)
    if e.kind != "l":
        os.chmod(where, e.mode)
    current = dict(_xattrs(where))
    for name, value in e.xattrs:
        if current.pop(name, None) != value:
            os.setxattr(where, name, value, follow_symlinks=False)
    for name in current:
        with contextlib.suppress(OSError):
            os.removexattr(where, name, follow_symlinks=False)


def _xattrs(where: str):
    from dim.images.tree import read_xattrs

    return read_xattrs(where)


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


# -- small helpers ---------------------------------------------------------------------------


_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Crash tests only: ``DIM_TEST_CRASH_AT=NAME[:N]`` SIGKILLs dim the N-th time it is here.

    Points: ``after-record`` (version N complete, live untouched), ``mid-live`` (a file of live
    linked to its temporary name, not yet renamed over the old one), ``mid-replicas`` (the same
    in a node replica: the new copy written, not yet renamed).
    """
    wanted = os.environ.get("DIM_TEST_CRASH_AT")
    if wanted is None or wanted.partition(":")[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(wanted.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _lock_holder(handle) -> str:
    handle.seek(0)
    pid = handle.read().strip()
    return f" (pid {pid})" if pid.isdigit() else ""


def _wait_for_lock(handle, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
