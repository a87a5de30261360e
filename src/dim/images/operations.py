"""What the ``dim image`` and ``dim node switch|reset|diff`` commands do, one function each.

Each function takes the store and the layout, does its work under the image's lock, and
returns data for the CLI to print. Nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from dim.errors import ImageError, UsageError
from dim.files import remove_tree
from dim.images import replicas, sources
from dim.images.commit import CommitResult, bring_live, changing, recover
from dim.images.delta import Delta, compare
from dim.images.fold import fold, fold_plan
from dim.images.history import History
from dim.images.store import Store
from dim.images.tree import scan
from dim.layout.model import Cluster, Image, Inventory

Progress = Callable[[str], None] | None


def declared(cluster: Cluster, name: str) -> Image:
    image = cluster.images.get(name)
    if image is None:
        raise UsageError(
            f"unknown image {name!r}: it is not declared in {cluster.source}",
            hint="add an <image> element to cluster.xml first",
        )
    return image


def import_image(
    store: Store,
    image: Image,
    origin: str,
    *,
    incremental: bool,
    force: bool = False,
    progress: Progress = None,
) -> CommitResult:
    """``image import`` (a first version) and ``image sync`` (the next one) from a source."""
    source = sources.parse_source(origin)
    exists = store.exists(image.name)
    if exists and not incremental:
        raise UsageError(
            f"image {image.name} exists already",
            hint=f"dim image sync {image.name} --from {origin}",
        )
    if not exists and incremental:
        raise UsageError(
            f"image {image.name} has no version yet",
            hint=f"dim image import {image.name} --from {origin}",
        )
    excludes = image.keepout if source.kind == "ssh" else ()
    with changing(store, image, waiting=progress) as change:
        if progress:
            progress(f"reading {source}")
        change.removed = sources.fill(source, change.staging, change.live, excludes=excludes)
        return change.commit(str(source), force=force, progress=progress)


def exec_in_image(
    store: Store,
    image: Image,
    command: list[str],
    *,
    force: bool = False,
    progress: Progress = None,
) -> CommitResult:
    """Run ``command`` in a chroot over the latest version; its change is the next version."""
    if not command:
        raise UsageError("no command given: dim image exec IMAGE -- COMMAND…")
    with changing(store, image, waiting=progress) as change:
        live = change.live
        if live is None:
            raise ImageError(
                f"image {image.name} has no version yet",
                hint=f"dim image import {image.name} --from SOURCE",
            )
        work = sources.upper_folder(store.paths.exec_work(image.name, os.getpid()), os.getpid())
        try:
            change.removed = sources.run_in_image(live, change.staging, work, command)
        finally:
            remove_tree(work)
        return change.commit("exec: " + " ".join(command), force=force, progress=progress)


def rollback(
    store: Store, image: Image, number: int, *, force: bool = False, progress: Progress = None
) -> CommitResult:
    """A new version whose tree is version ``number``'s: history stays linear."""
    with changing(store, image, waiting=progress) as change:
        store.version(image.name, number)  # refused clearly if there is none
        history = History(store, image.name)
        change.removed = history.stage(number, change.latest, change.staging)
        return change.commit(f"rollback to {number}", force=force, progress=progress)


def diff(store: Store, image: str, first: int, second: int) -> Delta:
    store.version(image, first), store.version(image, second)  # refused clearly if missing
    return History(store, image).delta(first, second)


def users(inventory: Inventory, image: str) -> list[str]:
    """Nodes whose current image is ``image``."""
    return [n.name for n in inventory.cluster.nodes if inventory.image(n) == image]


def remove(store: Store, inventory: Inventory, image: str) -> list[str]:
    """Remove an image and every replica of it; refused while nodes use it."""
    using = users(inventory, image)
    if using:
        from dim.inventory import fold

        raise UsageError(
            f"image {image} is used by {fold(using)}",
            hint="switch them to another image first: dim node switch NODES IMAGE",
        )
    if not store.paths.image(image).exists():
        raise UsageError(f"image {image} is not in the store")
    with store.locked(image):
        removed = store.replicas(image)
        for node in removed:
            replicas.remove(store, image, node)
        remove_tree(store.paths.image(image))
    return removed


def booted_versions(boots, image: str) -> set[int]:
    """Versions of ``image`` that nodes booted from last: gc must keep them.

    ``boots`` is ``StateDB.last_boots()``; a node counts as running the version it last
    booted until it boots again.
    """
    return {int(b.version) for b in boots.values() if b.image == image and b.version.isdigit()}


@dataclass(slots=True)
class GcResult:
    image: str
    removed_versions: list[int] = field(default_factory=list)
    kept_versions: list[int] = field(default_factory=list)
    removed_asides: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def gc(
    store: Store,
    image: Image,
    *,
    in_use: set[int] = frozenset(),
    dry_run: bool = False,
) -> GcResult:
    """Remove versions nobody needs: not the latest, not live's, not a replica's, not one a
    running node booted from (``in_use``); and replicas kept aside by ``node reset``."""
    result = GcResult(image.name)
    with store.locked(image.name):
        recover(store, image)
        keep = set(in_use)
        keep.update(v for v in (store.latest(image.name), store.live_version(image.name)) if v)
        keep.update(
            v
            for n in store.replicas(image.name)
            if (v := store.replica_version(n, image.name)) is not None
        )
        numbers = store.versions(image.name)
        result.kept_versions = [n for n in numbers if n in keep]
        result.removed_versions = [n for n in numbers if n not in keep]
        plans = [
            fold_plan(store, image.name, run, into)
            for run, into in _runs(result.removed_versions, result.kept_versions)
        ]
        result.bytes_freed = sum(plan.bytes_freed for plan in plans)
        asides = store.paths.reset_asides(image.name)
        result.removed_asides = [str(p.relative_to(store.root)) for p in asides]
        if dry_run:
            return result
        for plan in plans:
            fold(store, image.name, plan)
        for aside in asides:
            remove_tree(aside)
    return result


def _runs(removed: list[int], kept: list[int]) -> list[tuple[list[int], int]]:
    """Each run of removed versions with the kept version after it (the latest is kept)."""
    runs, run = [], []
    for number in sorted(removed + kept):
        if number in removed:
            run.append(number)
        elif run:
            runs.append((run, number))
            run = []
    return runs


@dataclass(slots=True)
class CheckResult:
    image: str
    repaired: list[str]
    problems: list[str]


def check(store: Store, image: Image) -> CheckResult:
    """Finish interrupted work, then verify that live is exactly the latest version."""
    with store.locked(image.name):
        repaired = recover(store, image)
        problems = []
        latest = store.latest(image.name)
        if latest is not None:
            history = History(store, image.name)
            tree = history.tree(latest)
            delta = compare(
                scan(store.paths.live(image.name)), {p: e for p, (e, _) in tree.items()}
            )
            if not delta.empty:
                bring_live(store, image.name, latest, delta, lambda path: tree[path][1])
                repaired.append(
                    f"live differed from version {latest} in "
                    f"{len(delta.added) + len(delta.changed) + len(delta.removed)} "
                    "paths: brought back"
                )
            for number in store.versions(image.name):
                if not store.paths.meta_file(image.name, number).exists():
                    problems.append(f"version {number} has no meta/{number}.json")
        return CheckResult(image.name, repaired, problems)


# -- nodes -----------------------------------------------------------------------------------


def switch(
    store: Store, cluster: Cluster, nodes: list[str], image: Image, progress: Progress = None
) -> list[str]:
    """Give each node a replica of ``image`` (kept if it has one); return those created."""
    created = []
    with store.locked(image.name):
        recover(store, image)
        for position, node in enumerate(nodes, start=1):
            if replicas.create(store, image, node):
                created.append(node)
            if progress and position % 100 == 0:
                progress(f"replicas: {position}/{len(nodes)}")
    return created


def ensure_replicas(
    store: Store, inventory: Inventory, server: str, *, dry_run: bool = False
) -> list[str]:
    """Replicas for the nodes of ``server`` whose image has a version but who have none yet.

    ``dim apply`` calls this first: the exports it renders name the image store and every
    node's folder of replicas, which must exist (nfs-ganesha skips an export whose path does
    not), and a node assigned its image by cluster.xml or ``dim node set --image`` gets its
    replica here. In a failover set the exports name the folders of the peers' nodes too:
    those are made here as well (a peer's ganesha exports them only if they were there when it
    started), while their replicas are left to the peer's own apply.
    """
    if not dry_run:
        store.make_node_folders(inventory, server)
    missing = store.missing_replicas(inventory, server)
    if not dry_run:
        for image, nodes in missing.items():
            switch(store, inventory.cluster, nodes, inventory.cluster.images[image])
    return [n for nodes in missing.values() for n in nodes]


def reset(store: Store, image: Image, nodes: list[str]) -> list[str]:
    """Fresh replicas; the old contents are kept aside until gc. Returns where they went."""
    with store.locked(image.name):
        recover(store, image)
        aside = [str(replicas.reset(store, image, n).relative_to(store.root)) for n in nodes]
        replicas.forget_conflicts(store, image.name, nodes)
        return aside


@dataclass(slots=True)
class ImageReport:
    name: str
    versions: list[int]
    live: int | None
    users: list[str]
    replicas: dict[str, dict]  # node -> {"version": n, "bytes": n}
    declared: bool
    meta: dict[int, dict]
    arch: str | None = None  # its binaries' processor architecture (None: none found)


def report(store: Store, inventory: Inventory, name: str, *, sizes: bool = True) -> ImageReport:
    versions = store.versions(name)
    replicas_info = {}
    for node in store.replicas(name):
        info: dict = {"version": store.replica_version(node, name)}
        if sizes:
            info["bytes"] = replicas.disk_usage(store.paths.replica(node, name))
        replicas_info[node] = info
    return ImageReport(
        name=name,
        versions=versions,
        live=store.live_version(name),
        users=users(inventory, name),
        replicas=replicas_info,
        declared=name in inventory.cluster.images,
        meta={v: store.version(name, v).meta for v in versions},
        arch=store.architecture(name),
    )


def all_images(store: Store, inventory: Inventory) -> list[str]:
    return sorted(set(store.images()) | set(inventory.cluster.images))
