"""The image store: what versions, live trees and node replicas there are, and each image's lock.

    >>> store = Store(Path("/var/lib/dim"))
    >>> store.latest("rhel9"), store.live_version("rhel9"), store.replicas("rhel9")
    (4, 4, ['node01', 'node02'])
    >>> with store.locked("rhel9"):
    ...     ...                            # nobody else changes rhel9 meanwhile

Where each thing lies is :class:`dim.paths.StatePaths`'s (``store.paths``). Reading needs no
lock: a version is complete or absent, ``live.version`` and a replica's ``.version`` marker are
written last (see :mod:`dim.images.commit` for the order of a change). Changing an image takes
its lock, a ``flock`` on ``locks/<image>.lock`` holding the holder's pid: a second command
waits for it or fails with :class:`~dim.errors.ImageBusy`, never interleaves. The programs dim
starts meanwhile (rsync, cp, tar…) hold the lock with it, and die with it
(:mod:`dim.processes`): a killed command's rsync never writes on beside the next command.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dim import processes
from dim.errors import ImageBusy, ImageError
from dim.files import read_number
from dim.paths import StatePaths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dim.layout.model import Inventory

LOCK_TIMEOUT = 600.0
_VERSION = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class Version:
    number: int
    path: Path
    meta: dict


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

    def is_full(self, image: str, number: int) -> bool:
        """Whether version ``number`` is a whole tree (the first version, or one made by a dim
        that kept every version whole) rather than only what it changed."""
        return not self.paths.changes_file(image, number).exists()

    def full_tree(self, image: str, number: int) -> Path | None:
        """A folder holding version ``number``'s whole tree: the version itself if it is whole,
        else live if live is at that version; None if it must be materialised
        (:meth:`dim.images.history.History.materialize`). Live is read under the image's lock
        only: a change in progress renames files into it before it moves its marker."""
        if self.paths.version(image, number).is_dir() and self.is_full(image, number):
            return self.paths.version(image, number)
        if self.live_version(image) == number:
            return self.paths.live(image)
        return None

    def architecture(self, image: str) -> str | None:
        """The processor architecture of ``image``'s binaries (:func:`dim.architectures.detect`),
        as its latest version recorded it; read from its live tree for a version made before
        dim recorded it; None for an image without versions or without ELF binaries."""
        latest = self.latest(image)
        if latest is None:
            return None
        meta = self.version(image, latest).meta
        if "arch" in meta:
            return meta["arch"]
        from dim import architectures

        return architectures.detect([self.paths.live(image)])

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

    def missing_replicas(self, inventory: Inventory, server: str) -> dict[str, list[str]]:
        """image -> the nodes of ``server`` assigned it, which has a version, without a
        replica of it (in layout order)."""
        missing: dict[str, list[str]] = {}
        stored = {name: self.exists(name) for name in inventory.cluster.images}
        for node in inventory.cluster.nodes:
            image = inventory.image(node)
            if node.server != server or image is None or not stored.get(image):
                continue
            if self.replica_version(node.name, image) is None:
                missing.setdefault(image, []).append(node.name)
        return missing

    def make_node_folders(self, inventory: Inventory, server: str) -> None:
        """The image store's folder, and the folder of replicas of each node that ``server``
        exports: its own, and in a failover set its peers' (the exports name them)."""
        self.paths.images.mkdir(parents=True, exist_ok=True)
        self.paths.nodes.mkdir(parents=True, exist_ok=True)
        exported = set(inventory.cluster.peers(server))
        names = [n.name for n in inventory.cluster.nodes if n.server in exported]
        # many nodes: one listing, not a mkdir per node; a few (an incremental apply's, in a
        # folder of 100,000): a mkdir each, not a listing of them all
        present = set(os.listdir(self.paths.nodes)) if len(names) > 100 else set()
        for name in names:
            if name not in present:
                (self.paths.nodes / name).mkdir(exist_ok=True)

    # -- locking -----------------------------------------------------------------------------

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
            # every child started meanwhile holds the lock too: if dim is killed, the next
            # command waits for the last of them to be gone (see dim.processes)
            with processes.inheriting(handle.fileno()):
                yield


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
