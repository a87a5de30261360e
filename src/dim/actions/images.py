"""The image store's use cases, by image name, and boot builds.

Each function looks the image up in the layout (an undeclared name is a
:class:`dim.errors.UsageError`), opens the store below the state folder and makes its call
into :mod:`dim.images.operations`; ``gc`` and ``check`` do so for the named image or every
stored image the layout declares::

    import_image(ctx, "rhel9", "/srv/rhel9-tree", incremental=False)   # its first version
    import_image(ctx, "rhel9", "ssh://master01/")                       # the next one
    [r.image for r in gc(ctx, None, dry_run=True)]                      # every stored image
    boot_build(ctx, "rhel9")                                            # kernel and initrd

``progress`` callbacks receive one line of text now and then, for a terminal to show.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dim.actions.context import Context
from dim.errors import UsageError
from dim.images import operations
from dim.images.commit import CommitResult
from dim.images.delta import Delta
from dim.images.operations import CheckResult, GcResult, ImageReport, Progress
from dim.images.store import Store
from dim.inventory import fold
from dim.layout.model import Cluster

if TYPE_CHECKING:
    from dim.boot.build import BuildResult


def import_image(
    ctx: Context,
    name: str,
    origin: str,
    *,
    incremental: bool = False,
    force: bool = False,
    progress: Progress = None,
) -> CommitResult:
    """A version of ``name`` from ``origin``: the first one, or with ``incremental`` the next.

    ``origin`` is a directory, a tarball or ``ssh://[USER@]HOST[:PORT][/PATH]``.
    """
    image = operations.declared(ctx.cluster(), name)
    return operations.import_image(
        ctx.store(), image, origin, incremental=incremental, force=force, progress=progress
    )


def exec_in_image(
    ctx: Context,
    name: str,
    command: list[str],
    *,
    force: bool = False,
    progress: Progress = None,
) -> CommitResult:
    """Run ``command`` in a chroot of ``name``'s latest version; its change is the next one."""
    image = operations.declared(ctx.cluster(), name)
    return operations.exec_in_image(ctx.store(), image, command, force=force, progress=progress)


def rollback(
    ctx: Context, name: str, version: int, *, force: bool = False, progress: Progress = None
) -> CommitResult:
    """A new version of ``name`` whose tree is ``version``'s."""
    image = operations.declared(ctx.cluster(), name)
    return operations.rollback(ctx.store(), image, version, force=force, progress=progress)


def reports(ctx: Context) -> list[ImageReport]:
    """Every image declared or stored, without disk use (which walks every replica)."""
    inventory, store = ctx.inventory(), ctx.store()
    return [
        operations.report(store, inventory, name, sizes=False)
        for name in operations.all_images(store, inventory)
    ]


def list_record(r: ImageReport) -> dict:
    """One image of ``dim image list --json`` and of the REST API's list."""
    return {
        "name": r.name,
        "arch": r.arch,
        "versions": r.versions,
        "live": r.live,
        "nodes": fold(r.users),
        "replicas": len(r.replicas),
        "declared": r.declared,
    }


def show_record(r: ImageReport) -> dict:
    """``dim image show --json``: the list's record, each replica's version (and disk use)."""
    return {**list_record(r), "replicas": r.replicas}


def version_records(r: ImageReport) -> list[dict]:
    """``dim image versions --json``: each version's metadata and number."""
    return [r.meta[v] | {"version": v} for v in r.versions]


def report(ctx: Context, name: str, *, sizes: bool = True) -> ImageReport:
    """One image: versions and their metadata, users, replicas (with disk use if ``sizes``);
    a usage error for an image neither declared nor stored."""
    found = operations.report(ctx.store(), ctx.inventory(), name, sizes=sizes)
    if not found.declared and not found.versions:
        raise UsageError(
            f"unknown image {name!r}: neither declared in {ctx.config} nor stored",
            hint="`dim image list` lists them",
        )
    return found


def diff(ctx: Context, name: str, first: int, second: int) -> Delta:
    """Paths added, changed and removed from version ``first`` to ``second``."""
    return operations.diff(ctx.store(), name, first, second)


def replica_count(ctx: Context, name: str) -> int:
    """How many node replicas of ``name`` there are (what a removal would discard)."""
    return len(ctx.store().replicas(name))


def remove(ctx: Context, name: str) -> list[str]:
    """Remove ``name`` with every replica; refused while nodes use it. Returns those nodes."""
    return operations.remove(ctx.store(), ctx.inventory(), name)


def gc(ctx: Context, name: str | None = None, *, dry_run: bool = False) -> list[GcResult]:
    """Versions and reset replicas no node needs, removed (or listed, with ``dry_run``)."""
    cluster, store = ctx.cluster(), ctx.store()
    boots = ctx.last_boots()
    return [
        operations.gc(
            store,
            operations.declared(cluster, image),
            in_use=operations.booted_versions(boots, image),
            dry_run=dry_run,
        )
        for image in _chosen(cluster, store, name)
    ]


def check(ctx: Context, name: str | None = None) -> list[CheckResult]:
    """Finish interrupted work and verify each chosen image; problems are in the results."""
    cluster, store = ctx.cluster(), ctx.store()
    return [
        operations.check(store, operations.declared(cluster, image))
        for image in _chosen(cluster, store, name)
    ]


def _chosen(cluster: Cluster, store: Store, name: str | None) -> list[str]:
    """``name``, or every stored image that the layout declares."""
    return [name] if name else [image for image in store.images() if image in cluster.images]


def boot_build(ctx: Context, name: str, kernel: Path | None = None) -> BuildResult:
    """Build (or reuse) the kernel and initramfs of ``name``'s latest version; its warnings
    weigh the image's kernel against the NFS servers that export it."""
    # the initramfs builder is not needed by other commands: not imported when dim starts
    from dim.boot.build import build
    from dim.inventory import image_servers

    inventory = ctx.inventory()
    image = operations.declared(inventory.cluster, name)
    servers = {s.nfs for s in image_servers(inventory, name)}
    return build(ctx.store(), image, kernel=kernel, nfs_servers=servers)
