"""Node replicas: each node's own copy of its image's persistent paths.

A replica holds real copies (never hard links into the image: the node writes them), one per
(node, image), kept when the node switches away and found again when it switches back::

    <state>/nodes/node01/rhel9/etc/...   exported read-write to node01 alone
    <state>/nodes/node01/rhel9.version   the image version it was last brought to

Bringing a replica from version M to N applies the part of the delta under the image's
persistent paths, keep-outs left out, by the three-way rule: a path whose replica copy still
equals version M's is replaced by version N's; one the node changed itself is left alone and
reported as a conflict, unless forced. Replacing a file writes the new copy to a temporary name
and renames it over the old one, so the node never reads half a file.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dim import processes
from dim.errors import ImageError
from dim.files import (
    is_temporary,
    remove_path,
    remove_tree,
    temporary_name,
    write_atomically,
    write_number,
)
from dim.images.crash import crash_point
from dim.images.delta import Delta, compare, kept_out
from dim.images.history import History
from dim.images.links import set_metadata
from dim.images.store import Store
from dim.images.tree import Entry, entry, scan, under
from dim.layout.model import Image

SMALL_FILE = 1 << 20  # contents up to this size are read once and kept for every replica


@dataclass(slots=True)
class SyncOutcome:
    node: str
    changed: int = 0
    conflicts: list[str] = field(default_factory=list)
    linked: dict[tuple[int, int], str] = field(default_factory=dict)  # inode -> path here


def sync_all(
    store: Store,
    image: Image,
    number: int,
    before: int | None,
    delta: Delta,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Bring every replica of ``image`` to ``number``; ``delta`` goes from ``before``.

    Returns how many replicas changed and the conflicts as (node, path).
    """
    part = delta.only(image.persistent, image.keepout)
    nodes = store.replicas(image.name)
    at_before = [n for n in nodes if store.replica_version(n, image.name) == before]
    starting = set(at_before)  # once: a set per node made this quadratic in the node count
    others = [n for n in nodes if n not in starting]
    chunks = [at_before[i : i + CHUNK] for i in range(0, len(at_before), CHUNK)]
    chunks += [[n] for n in others]
    global _JOB
    _JOB = (store, image, number, part, before, force)
    updated, conflicts, done = 0, [], 0
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    try:
        if workers > 1 and len(at_before) > CHUNK:
            # the job is inherited by fork, not pickled: it holds whole tree scans
            # a worker dies with dim: it writes replicas, which only the lock's holder may
            pool = multiprocessing.get_context("fork").Pool(
                workers, initializer=processes.die_with_parent, initargs=(os.getpid(),)
            )
            with pool:
                outcomes = pool.imap_unordered(_sync_chunk, chunks)
                for count, changed, found in outcomes:
                    updated, done = updated + changed, done + count
                    conflicts.extend(found)
                    if progress is not None:
                        progress(f"replicas: {done}/{len(nodes)}")
        else:
            for chunk in chunks:
                count, changed, found = _sync_chunk(chunk)
                updated, done = updated + changed, done + count
                conflicts.extend(found)
    finally:
        _JOB = None
    record_conflicts(store, image.name, nodes, sorted(conflicts), at_before, part)
    return updated, sorted(conflicts)


def record_conflicts(
    store: Store,
    image: str,
    nodes: list[str],
    found: list[tuple[str, str]],
    synced: list[str],
    part: Delta,
) -> None:
    """Keep, per node, the paths its replica kept against the image's changes, for `dim node
    status`, the API and the metrics. A path stays until a later change of the image reaches
    it on that node (forced, or the node's copy equal again) or the replica is reset. For the
    nodes brought from the common version (``synced``) the change is ``part``; the others
    came from elsewhere and keep this change's conflicts alone."""
    kept = read_conflicts(store, image)
    touched = {*part.added, *part.changed, *part.removed}
    now: dict[str, set[str]] = {}
    for node, path in found:
        now.setdefault(node, set()).add(path)
    common = set(synced)
    for node in nodes:
        before = set(kept.get(node, ())) - touched if node in common else set()
        paths = sorted(before | now.get(node, set()))
        if paths:
            kept[node] = paths
        else:
            kept.pop(node, None)
    _write_conflicts(store, image, kept)


def read_conflicts(store: Store, image: str) -> dict[str, list[str]]:
    """node -> the paths (relative, as in deltas) its replica of ``image`` kept."""
    try:
        found = json.loads(store.paths.conflicts(image).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def forget_conflicts(store: Store, image: str, nodes: list[str]) -> None:
    """Fresh replicas have none."""
    kept = read_conflicts(store, image)
    if any(kept.pop(node, None) is not None for node in list(nodes)):
        _write_conflicts(store, image, kept)


def _write_conflicts(store: Store, image: str, kept: dict[str, list[str]]) -> None:
    path = store.paths.conflicts(image)
    if kept or path.exists():
        write_atomically(path, json.dumps(kept, sort_keys=True).encode())


CHUNK = 100  # replicas per task of a worker process
MAX_WORKERS = 4
_JOB: tuple | None = None


def _sync_chunk(nodes: list[str]) -> tuple[int, int, list[tuple[str, str]]]:
    store, image, number, part, before, force = _JOB
    contents: dict[str, bytes] = {}  # each changed file is read once per worker
    updated, conflicts = 0, []
    for node in nodes:
        known = part if store.replica_version(node, image.name) == before else None
        outcome = sync(store, image, node, number, force=force, part=known, cache=contents)
        updated += 1 if outcome.changed else 0
        conflicts += [(node, p) for p in outcome.conflicts]
    return len(nodes), updated, conflicts


def sync(
    store: Store,
    image: Image,
    node: str,
    number: int,
    *,
    force: bool = False,
    part: Delta | None = None,
    cache: dict[str, bytes] | None = None,
) -> SyncOutcome:
    """Bring ``node``'s replica of ``image`` to version ``number``.

    ``part``, when given, is the persistent part of the delta from the replica's current
    version to ``number`` (computed once for every replica); otherwise it is computed here.
    """
    replica = str(store.paths.replica(node, image.name))
    target = _whole(store, image, number)
    if part is None:
        current = store.replica_version(node, image.name)
        history = History(store, image.name)
        if current is not None and current in history.numbers:
            part = history.delta(current, number)
        else:
            part = compare({}, _persistent_scan(target, image))
        part = part.only(image.persistent, image.keepout)
    outcome = SyncOutcome(node)
    cache = cache if cache is not None else {}
    base = str(target)
    for path in part.removed:
        _three_way(replica, base, path, part.old.get(path), None, force, outcome, cache)
    for path in (*part.added, *part.changed):
        _three_way(replica, base, path, part.old.get(path), part.new[path], force, outcome, cache)
    write_number(store.paths.replica_marker(node, image.name), number)
    return outcome


def _whole(store: Store, image: Image, number: int) -> Path:
    """Version ``number``'s whole tree, to copy from: live, under the lock, once recovered."""
    whole = store.full_tree(image.name, number)
    if whole is None:
        raise ImageError(
            f"live of image {image.name} is not at version {number}",
            hint=f"dim image check {image.name}",
        )
    return whole


def _persistent_scan(version: Path, image: Image) -> dict[str, Entry]:
    result: dict[str, Entry] = {}
    for folder in image.persistent:
        relative = folder.strip("/")
        if os.path.lexists(version / relative):
            result.update(scan(version, relative))
    return result


def _three_way(
    replica: str,
    version: str,
    path: str,
    old: Entry | None,
    new: Entry | None,
    force: bool,
    outcome: SyncOutcome,
    cache: dict[str, bytes],
) -> None:
    where = f"{replica}/{path}"
    try:
        current: Entry | None = entry(where)
    except FileNotFoundError:
        current = None
    if _same(current, new):
        return
    if not (force or _same(current, old)):
        outcome.conflicts.append(path)
        return
    if new is None:
        if current is not None:
            _remove_entry(where, current)
            outcome.changed += 1
        return
    if current is not None and current.kind != new.kind:
        _remove_entry(where, current)
    key = (new.dev, new.ino)
    if new.kind == "f" and new.nlink > 1 and key in outcome.linked:
        # another name of the same file, installed already in this replica: link it
        temporary = temporary_name(where)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.link(outcome.linked[key], temporary)
        os.rename(temporary, where)
    else:
        install(f"{version}/{path}", where, new, cache)
        if new.kind == "f" and new.nlink > 1:
            outcome.linked[key] = where
    outcome.changed += 1


def _same(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.same_metadata(b)


def _remove_entry(where: str, e: Entry) -> None:
    if e.kind == "d":
        with contextlib.suppress(OSError):  # not empty: the node added files there
            os.rmdir(where)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)


def install(source: str, where: str, e: Entry, cache: dict[str, bytes]) -> None:
    """A real copy of ``source`` (described by ``e``) at ``where``, atomically for readers."""
    if e.kind == "d":
        with contextlib.suppress(FileExistsError):
            os.mkdir(where, e.mode)
        set_metadata(where, e)
        os.utime(where, ns=(e.mtime_ns, e.mtime_ns))
        return
    temporary = temporary_name(where)
    if e.kind == "f":
        _copy_file(source, temporary, e, cache)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if e.kind == "l":
            os.symlink(e.target, temporary)
        else:
            kinds = {"c": 0o020000, "b": 0o060000, "p": 0o010000, "s": 0o140000}
            os.mknod(temporary, kinds[e.kind] | e.mode, e.rdev)
        set_metadata(temporary, e)
        os.utime(temporary, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
    crash_point("mid-replicas")
    os.rename(temporary, where)


def _copy_file(source: str, temporary: str, e: Entry, cache: dict[str, bytes]) -> None:
    """Write the copy through one descriptor: content, owner, mode, xattrs, times.

    This runs once per changed file and replica (50,000 times for 20 files and 2,500 nodes),
    so every call counts: the content is read once per commit, and no path is looked up
    twice.
    """
    content = cache.get(source)
    if content is None and e.size <= SMALL_FILE:
        with open(source, "rb") as handle:
            content = cache[source] = handle.read()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o600)
    except FileExistsError:  # left by a killed run of this same process id
        os.unlink(temporary)
        fd = os.open(temporary, flags, 0o600)
    try:
        if content is not None:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        else:
            with open(source, "rb") as src, os.fdopen(fd, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.fchown(fd, e.uid, e.gid)
        os.fchmod(fd, e.mode)
        for attribute, value in e.xattrs:
            os.setxattr(fd, attribute, value)
        os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
    finally:
        os.close(fd)


def discard_temporaries(replica: Path) -> list[str]:
    """Remove the new copies an interrupted :func:`install` left under their temporary name."""
    found = []
    for folder, dirs, files in os.walk(replica):
        for name in dirs + files:  # dirs: a temporary symbolic link to a directory
            where = os.path.join(folder, name)
            if is_temporary(name) and (name in files or os.path.islink(where)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(where)
                found.append(where)
    return found


# -- creating, resetting, comparing ----------------------------------------------------------


def create(store: Store, image: Image, node: str) -> bool:
    """Give ``node`` a replica of ``image`` if it has none; False if it had one already."""
    replica = store.paths.replica(node, image.name)
    if store.replica_version(node, image.name) is not None and replica.is_dir():
        return False
    number = store.latest(image.name)
    if number is None:
        raise ImageError(
            f"image {image.name} has no version yet",
            hint=f"dim image import {image.name} --from SOURCE",
        )
    replica.mkdir(parents=True, exist_ok=True)
    _fill(_whole(store, image, number), replica, image)
    write_number(store.paths.replica_marker(node, image.name), number)
    return True


def _fill(version: Path, replica: Path, image: Image) -> None:
    """Copy the persistent paths of a version into an empty replica, keep-outs left out."""
    # one cp per destination folder, not per path: each child costs a fork of dim (its
    # parent-death signal is set between fork and exec), and /etc, /var, /root share one
    by_folder: dict[Path, list[str]] = {}
    for folder in image.persistent:
        relative = folder.strip("/")
        source = version / relative
        if os.path.lexists(source):
            by_folder.setdefault((replica / relative).parent, []).append(str(source))
    for destination, sources in by_folder.items():
        destination.mkdir(parents=True, exist_ok=True)
        # cp is the fastest faithful copy at hand: owners, modes, times, xattrs, links
        copy = processes.run(["cp", "-a", "--target-directory", str(destination), *sources])
        if copy.returncode != 0:
            raise ImageError(
                f"cannot copy {', '.join(sources)} into {destination}: {copy.stderr.strip()}"
            )
    for path in [p for p in _all_paths(replica) if kept_out(p, image.keepout)]:
        remove_path(replica / path)


def _all_paths(root: Path) -> list[str]:
    return [p for p in scan(root) if p]


def reset(store: Store, image: Image, node: str) -> Path:
    """A fresh replica for ``node``; the old content is kept aside until gc. Returns where."""
    replica = store.paths.replica(node, image.name)
    replica.parent.mkdir(parents=True, exist_ok=True)
    # unique: a second reset within the same second must not collide with the first
    prefix = f"{store.paths.reset_prefix(image.name)}{int(time.time())}-"
    aside = Path(tempfile.mkdtemp(prefix=prefix, dir=replica.parent))
    if replica.is_dir():
        # the replica's root directory stays: it is an NFS export root, and recreating it
        # would give the node stale file handles
        for child in os.listdir(replica):
            os.rename(replica / child, aside / child)
    store.paths.replica_marker(node, image.name).unlink(missing_ok=True)
    create(store, image, node)
    return aside


def differences(store: Store, image: Image, node: str) -> Delta:
    """What ``node`` changed in its replica against the version it was brought to."""
    number = store.replica_version(node, image.name)
    if number is None:
        raise ImageError(f"node {node} has no replica of image {image.name}")
    whole = store.full_tree(image.name, number)
    if whole is not None:
        version = _persistent_scan(whole, image)
    else:
        tree = History(store, image.name).tree(number)
        version = {p: e for p, (e, _) in tree.items() if under(p, image.persistent)}
    replica = store.paths.replica(node, image.name)
    mine: dict[str, Entry] = {}
    for folder in image.persistent:
        relative = folder.strip("/")
        if os.path.lexists(replica / relative):
            mine.update(scan(replica, relative))
    delta = compare(version, mine, by_inode=False)
    return delta.only(image.persistent, image.keepout)


def disk_usage(path: Path) -> int:
    """Bytes on disk under ``path`` (allocated blocks, each inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def remove(store: Store, image: str, node: str) -> None:
    remove_tree(store.paths.replica(node, image))
    store.paths.replica_marker(node, image).unlink(missing_ok=True)


__all__ = ["create", "differences", "disk_usage", "install", "remove", "reset", "sync", "under"]
