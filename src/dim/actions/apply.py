"""``dim apply`` as a use case: replicas, render, validate, install, reload, settle leases.

The steps, in their order (each one's own crash-safety is documented where it lives):

1. replicas for the server's nodes whose image has a version and who have none yet
   (:func:`dim.images.operations.ensure_replicas`, imported only when one is missing): the
   exports name them;
2. every service's files rendered (:func:`dim.services.render.render_all`), and the boot
   loaders that the server's clients fetch read from their Debian packages
   (:func:`loader_files`): a missing one stops here, nothing installed;
3. validated by the daemons' test modes, written atomically, reloaded
   (:func:`dim.services.apply.apply`);
4. the DHCP leases still held by replaced MACs released when the daemons were reloaded, or
   listed as pending otherwise (:mod:`dim.services.leases`);
5. the boot targets that ``dim serve`` answers from while the state DB is unreachable
   brought up to date in the state folder (:mod:`dim.actions.boot_targets`).

::

    report = apply(ctx, root=lab / "root", do_reload=False)
    print(report.result.counts(), report.replicas_created, report.waiting)
    report.raise_for_unreleased()   # ApplyError if a stale lease could not be released

A lease that could not be released is not an exception here: it is in the report, which the
caller shows first, then turns into an error with :meth:`ApplyReport.raise_for_unreleased`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dim import debs
from dim.actions import boot_targets
from dim.actions.context import Context
from dim.allocation import bulk_allocation
from dim.boot.builds import find_build
from dim.errors import ApplyError, DimError
from dim.inventory import fold, refuse_foreign, server_name
from dim.layout.model import Cluster, Inventory, Node, Server
from dim.paths import StatePaths
from dim.records import StaleLease
from dim.services import applied, incremental, leases
from dim.services import apply as applier
from dim.services.apply import ApplyResult, target
from dim.services.clients import KINDS, ClientKind, kinds_of
from dim.services.clients import loader_files as needed_loaders
from dim.services.manifest import PATH as MANIFEST
from dim.services.rendering import RenderContext, RenderedFile


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """Everything one apply did or would do."""

    server: str
    root: Path
    dry_run: bool
    result: ApplyResult
    replicas_created: tuple[str, ...]
    released: tuple[leases.ReleaseResult, ...] = ()  # settled or failed, after a reload
    waiting: tuple[StaleLease, ...] = ()  # stale leases left for an apply that reloads
    warnings: tuple[str, ...] = ()  # e.g. a site's own loader missing from its root

    @property
    def unreleased(self) -> int:
        """How many stale leases a release was tried on and failed."""
        return sum(1 for r in self.released if not r.ok)

    def record(self) -> dict:
        """``dim apply --json``, and the REST API's answer."""
        result = self.result
        return {
            "server": self.server,
            "root": str(self.root),
            "dry_run": self.dry_run,
            "changes": [
                {"path": c.path, "action": c.action, "service": c.service} for c in result.changes
            ],
            "unchanged": result.unchanged,
            "validated": result.validated,
            "not_validated": result.not_validated,
            "reloaded": result.reloaded,
            "replicas_created": fold(list(self.replicas_created)),
            "warnings": list(self.warnings),
            **_release_records(self.released, self.waiting),
        }

    def raise_for_unreleased(self) -> None:
        """Raise :class:`ApplyError` if a stale lease was not released (they stay recorded)."""
        if self.unreleased:
            many = "s" if self.unreleased > 1 else ""
            raise ApplyError(
                f"{self.unreleased} stale DHCP lease{many} not released",
                hint="they stay recorded: the next dim apply that reloads tries again",
            )


_RELEASE_KEYS = {
    leases.RELEASED: "released",
    leases.NOT_NEEDED: "release_not_needed",
    leases.FAILED: "release_failed",
}


def _release_records(
    results: tuple[leases.ReleaseResult, ...], waiting: tuple[StaleLease, ...]
) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {key: [] for key in _RELEASE_KEYS.values()}
    for r in results:
        record = {"node": r.lease.node, "network": r.lease.network, "mac": r.lease.mac, "ip": r.ip}
        if r.message:
            record["reason" if r.ok else "error"] = r.message
        records[_RELEASE_KEYS[r.outcome]].append(record)
    records["release_pending"] = [
        {"node": s.node, "network": s.network, "mac": s.mac} for s in waiting
    ]
    return records


def apply(
    ctx: Context,
    *,
    root: Path = Path("/"),
    server: str | None = None,
    dry_run: bool = False,
    do_reload: bool | None = None,
    validation: bool = True,
    full: bool = False,
) -> ApplyReport:
    """Bring ``server``'s services (default: the only server) in line with the layout.

    ``root`` is where the files go (``/`` on a real server); ``do_reload`` defaults to whether
    that is ``/``. ``dry_run`` validates and plans, writes nothing and releases nothing.

    When only nodes' MACs and images changed since the last apply into ``root`` (the same
    cluster.xml, templates, dim, image store and boot builds: :mod:`dim.services.applied`),
    only what those nodes need is rendered and compared (:mod:`dim.services.incremental`);
    ``full`` renders and compares everything regardless, as when anything else changed.
    """
    do_reload = (root.resolve() == Path("/")) if do_reload is None else do_reload
    options = _Options(root, dry_run, do_reload, validation)
    # Comparing and writing 300,000 files makes as many objects again after the layout's and
    # the rendered files' own: the cycle detector would scan them all several times over.
    try:
        with bulk_allocation():
            report = None if full else _apply_changes(ctx, server, options)
            report = report if report is not None else _apply_all(ctx, server, options)
    except DimError as exc:
        if not dry_run:
            _log(ctx, "apply-failed", f"{server or '-'}: {exc.message}")
        raise
    if not dry_run:
        result = report.result
        reloaded = f"; reloaded {', '.join(result.reloaded)}" if result.reloaded else ""
        _log(ctx, "apply", f"{report.server}: {len(result.changes)} files changed{reloaded}")
    return report


def _log(ctx: Context, kind: str, detail: str) -> None:
    """The apply's event (the last apply's time and result, for people and for metrics), in
    a state DB that exists: an apply never creates one only to say so."""
    if ctx.has_db():
        ctx.log_events([(None, kind, detail[:1000])])


@dataclass(frozen=True, slots=True)
class _Options:
    root: Path
    dry_run: bool
    do_reload: bool
    validation: bool


def _apply_all(ctx: Context, server: str | None, options: _Options) -> ApplyReport:
    """Render everything, compare everything; record what it rendered from."""
    # here: an incremental apply renders a few nodes with their own renderers, and does not
    # import every service's (NFS, hosts…)
    from dim.services.render import render_all

    data = _layout_bytes(ctx)  # parsed and fingerprinted as read once
    cluster = ctx.cluster(data)  # and cached for dim node set (dim.layout_cache)
    journal = ctx.journal_end()  # before the values: a change made meanwhile is seen again
    observed = ctx.observed()
    inventory = Inventory(cluster, observed.macs, observed.images)
    name = server_name(cluster, server)
    _refuse_foreign(ctx, inventory)
    keep = data is not None and incremental.supported(cluster.servers[name], ctx.template_dir)
    key = _fingerprint(ctx, cluster, name, options.root, data) if keep else ""
    context = RenderContext(inventory, name, ctx.state, ctx.template_dir)
    root = options.root
    record = StatePaths(ctx.state).applied(name, os.path.abspath(root))
    if not options.dry_run:  # from here the files may be neither the recorded ones nor the new
        record.unlink(missing_ok=True)
    secure_boot = any(node.secure_boot for node in context.nodes())
    report, installed = _install(
        ctx,
        inventory,
        name,
        render_all(context),
        options,
        secure_boot=secure_boot,
        refresh=lambda: boot_targets.refresh(ctx, everything=observed, journal=journal),
    )
    if keep and not options.dry_run:
        served = set(inventory.cluster.peers(name))
        stamp = applied.root_stamp(target(root, MANIFEST))
        head = (key, installed, stamp, journal)
        applied.write(record, cluster.nodes, served, observed.macs, observed.images, head)
    return report


def _apply_changes(ctx: Context, server: str | None, options: _Options) -> ApplyReport | None:
    """Render and compare only what the nodes changed since the last apply need; None when
    that apply's record does not match (then everything is rendered)."""
    data = _layout_bytes(ctx)
    if data is None:
        return None
    declared = ctx.declarations(data)
    name = server_name(declared, server)
    if not incremental.supported(declared.servers[name], ctx.template_dir):
        return None
    root = options.root
    record = StatePaths(ctx.state).applied(name, os.path.abspath(root))
    journal = target(root, MANIFEST)
    key, stamp = _fingerprint(ctx, declared, name, root, data), applied.root_stamp(journal)
    previous = applied.Applied.read(record, key, stamp)
    if previous is None:
        return None
    try:
        return _apply_recorded(ctx, declared, name, previous, options)
    finally:
        previous.close()


def _apply_recorded(
    ctx: Context, declared: Cluster, name: str, previous: applied.Applied, options: _Options
) -> ApplyReport | None:
    """The incremental apply over a matching record: the nodes the change journal names
    since the record's entry, those whose boot MAC or image differ rendered again."""
    changes = ctx.changes(previous.journal)  # read before the values they name
    if changes.last < previous.journal:
        return None  # another state DB than the record's
    # the nodes with a lease to release are looked up in the layout too
    stale = {s.node for s in ctx.stale_leases()}
    entries = previous.entries(changes.nodes | stale)
    if len(entries) > incremental.MOST_NODES:
        return None
    observed = ctx.node_observed(entries)
    macs, images = observed.macs, observed.images
    changed = {
        n: e
        for n, e in entries.items()
        if macs.get((n, e.network)) != e.mac or images.get(n) != e.image
    }
    nodes = tuple(e.node(n) for n, e in entries.items())
    cluster = replace(declared, nodes=nodes, by_name={})
    inventory = Inventory(cluster, macs, images)
    context = RenderContext(inventory, name, ctx.state, ctx.template_dir)
    changes_made = incremental.render_changes(
        context, previous, entries, list(changed), options.root
    )
    if changes_made is None:
        return None
    report, _ = _install(
        ctx,
        inventory,
        name,
        changes_made.files,
        options,
        secure_boot=previous.secure_boot,
        removed=changes_made.removed,
        refresh=lambda: boot_targets.refresh(ctx),
    )
    counts = report.result.counts()
    report.result.unchanged = changes_made.total - counts["create"] - counts["update"]
    if not options.dry_run:
        for n, entry in changed.items():
            entry.mac, entry.image = macs.get((n, entry.network)), images.get(n)
        stamp = applied.root_stamp(target(options.root, MANIFEST))
        previous.update(changed, changes_made.total, stamp, changes.last)
    return report


def _install(
    ctx: Context,
    inventory: Inventory,
    name: str,
    files: list[RenderedFile],
    options: _Options,
    *,
    secure_boot: bool,
    refresh: Callable[[], None],
    removed: Iterable[str] | None = None,
) -> tuple[ApplyReport, int]:
    """What a full and an incremental apply share: the replicas, the loaders, validation and
    installation, the leases, the boot targets (``refresh``); return the report and the
    number of files."""
    root, dry_run, cluster = options.root, options.dry_run, inventory.cluster
    created = _ensure_replicas(ctx, inventory, name, dry_run=dry_run)
    srv = cluster.servers[name]
    peers = [cluster.servers[p] for p in cluster.peers(name) if p != name]
    loaders, warnings = loader_files(
        srv,
        root,
        secure_boot=secure_boot,
        peers=peers,
        kinds=kinds_of(cluster),
        cache=StatePaths(ctx.state).cache,
    )
    result = applier.apply(
        files + loaders,
        root,
        reload_command=srv.reload_command,
        dry_run=dry_run,
        do_reload=options.do_reload,
        validation=options.validation,
        removed=removed,
    )
    released, waiting = _settle_leases(ctx, srv, cluster, now=options.do_reload and not dry_run)
    if not dry_run:
        refresh()
    report = ApplyReport(
        server=name,
        root=root,
        dry_run=dry_run,
        result=result,
        replicas_created=tuple(created),
        released=tuple(released),
        waiting=tuple(waiting),
        warnings=tuple(warnings),
    )
    return report, len(files) + len(loaders)


def _refuse_foreign(ctx: Context, inventory: Inventory) -> None:
    """A node given an image of another architecture than its group's is an error, before
    anything is written: it could not run it."""
    store, cluster = ctx.store(), inventory.cluster
    arches = {image: store.architecture(image) for image in cluster.images}
    groups = {g.arch for g in cluster.groups.values()}
    if len(groups) == 1 and set(arches.values()) <= {None, *groups}:
        return  # one architecture: no node to look at (100,000 of them cost 0.1 s)
    by_image: dict[str, list[Node]] = {}
    for node in inventory.cluster.nodes:
        image = inventory.image(node)
        if image is not None:
            by_image.setdefault(image, []).append(node)
    for image, nodes in by_image.items():
        refuse_foreign(cluster, nodes, image, arches.get(image))


def _ensure_replicas(ctx: Context, inventory: Inventory, name: str, *, dry_run: bool) -> list[str]:
    """:func:`~dim.images.operations.ensure_replicas`, whose module (with what makes a replica:
    deltas, trees, rsync, multiprocessing: some 40 ms) is imported only when a node lacks one."""
    store = ctx.store()
    if not dry_run:
        store.make_node_folders(inventory, name)
    if not store.missing_replicas(inventory, name):
        return []
    from dim.images.operations import ensure_replicas

    return ensure_replicas(store, inventory, name, dry_run=dry_run)


def _layout_bytes(ctx: Context) -> bytes | None:
    try:
        return ctx.config.read_bytes()
    except OSError:
        return None  # the full path's load says why


def _fingerprint(ctx: Context, cluster: Cluster, server: str, root: Path, data: bytes) -> str:
    """Every input of the rendered files that is not a node's MAC or image."""
    paths, store = StatePaths(ctx.state), ctx.store()
    overrides = []
    if ctx.template_dir.is_dir():
        for path in sorted(ctx.template_dir.iterdir()):
            overrides.append((path.name, path.read_bytes() if path.is_file() else None))
    images = []
    for image in cluster.images:
        build = find_build(paths, image)
        found = (str(build.kernel), str(build.initrd)) if build is not None else None
        images.append((image, store.exists(image), found))
    return applied.fingerprint(
        [
            applied.FORMAT,
            applied.code_fingerprint(),
            data,
            server,
            os.path.abspath(root),
            str(ctx.state),
            ctx.database,  # the change journal the record's entry is one of
            overrides,
            images,
        ]
    )


def loader_files(
    server: Server,
    root: Path,
    *,
    secure_boot: bool = False,
    peers: Sequence[Server] = (),
    kinds: Iterable[ClientKind] = KINDS,
    cache: Path | None = None,
) -> tuple[list[RenderedFile], list[str]]:
    """The loader files dim ships for ``server``'s clients of ``kinds`` (and in a failover
    set its ``peers``' clients), read from their Debian packages, and a warning for each of
    the site's own loaders that is not under ``root``. A package of another architecture
    (``name:arm64``) that is not installed is fetched and unpacked under ``cache``
    (:mod:`dim.debs`) once.

    Raises :class:`ApplyError` naming the file and the package to install when a shipped
    loader's source is missing: nothing is installed then.
    """
    files, warnings = [], []
    for loader in needed_loaders(server, secure_boot=secure_boot, peers=peers, kinds=kinds):
        if loader.shipped is None:
            if not os.path.exists(target(root, loader.path)):
                warnings.append(
                    f"{loader.path} is missing: {loader.kind} clients are sent it, and dim "
                    "does not ship it (a site's own loader); put it there"
                )
            continue
        source = loader.shipped.source
        arch = loader.shipped.package.partition(":")[2]
        if arch and cache is not None and not os.path.exists(source):
            source = str(debs.unpacked(loader.shipped.package, cache) / source.lstrip("/"))
        try:
            with open(source, "rb") as handle:
                content = handle.read()
        except FileNotFoundError:
            raise ApplyError(
                f"{source} is missing: it is the boot loader {loader.path} of {loader.kind} "
                f"clients; nothing was installed",
                hint=f"apt-get install {loader.shipped.package}",
            ) from None
        except OSError as exc:
            raise ApplyError(f"cannot read the boot loader {source}: {exc.strerror}") from exc
        files.append(RenderedFile(loader.path, content))
    return files, warnings


def _settle_leases(
    ctx: Context, server: Server, cluster: Cluster, *, now: bool
) -> tuple[list[leases.ReleaseResult], list[StaleLease]]:
    """Release the stale leases if the daemons were just reloaded, else list those waiting."""
    stale = ctx.stale_leases()
    if not stale:
        return [], []
    if now:
        # the state DB is opened for writing only to forget the leases released
        return leases.settle(ctx.db(create=False), server, cluster), []
    return [], leases.pending(stale, server, cluster)
