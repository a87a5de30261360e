"""``dim apply`` as a use case: replicas, render, validate, install, reload, settle leases.

The steps, in their order (each one's own crash-safety is documented where it lives):

1. replicas for the server's nodes whose image has a version and who have none yet
   (:func:`dim.images.operations.ensure_replicas`): the exports name them;
2. every service's files rendered (:func:`dim.services.render.render_all`), and the boot
   loaders that the server's clients fetch read from their Debian packages
   (:func:`loader_files`): a missing one stops here, nothing installed;
3. validated by the daemons' test modes, written atomically, reloaded
   (:func:`dim.services.apply.apply`);
4. the DHCP leases still held by replaced MACs released when the daemons were reloaded, or
   listed as pending otherwise (:mod:`dim.services.leases`);
5. the boot targets that ``dim serve`` answers from while the state DB is unreachable
   written to the state folder (:mod:`dim.boot.targets`), atomically.

::

    report = apply(ctx, root=lab / "root", do_reload=False)
    print(report.result.counts(), report.replicas_created, report.waiting)
    report.raise_for_unreleased()   # ApplyError if a stale lease could not be released

A lease that could not be released is not an exception here: it is in the report, which the
caller shows first, then turns into an error with :meth:`ApplyReport.raise_for_unreleased`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dim.actions.context import Context
from dim.boot import targets
from dim.errors import ApplyError
from dim.images.operations import ensure_replicas
from dim.inventory import server_name
from dim.layout.model import Cluster, Server
from dim.paths import StatePaths
from dim.records import StaleLease
from dim.services import apply as applier
from dim.services import leases
from dim.services.apply import ApplyResult, target
from dim.services.clients import loader_files as needed_loaders
from dim.services.render import render_all
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

    def raise_for_unreleased(self) -> None:
        """Raise :class:`ApplyError` if a stale lease was not released (they stay recorded)."""
        if self.unreleased:
            many = "s" if self.unreleased > 1 else ""
            raise ApplyError(
                f"{self.unreleased} stale DHCP lease{many} not released",
                hint="they stay recorded: the next dim apply that reloads tries again",
            )


def apply(
    ctx: Context,
    *,
    root: Path = Path("/"),
    server: str | None = None,
    dry_run: bool = False,
    do_reload: bool | None = None,
    validation: bool = True,
) -> ApplyReport:
    """Bring ``server``'s services (default: the only server) in line with the layout.

    ``root`` is where the files go (``/`` on a real server); ``do_reload`` defaults to whether
    that is ``/``. ``dry_run`` validates and plans, writes nothing and releases nothing.
    """
    inventory = ctx.inventory()
    name = server_name(inventory.cluster, server)
    context = RenderContext(inventory, name, ctx.state, ctx.template_dir)
    created = ensure_replicas(ctx.store(), inventory, name, dry_run=dry_run)
    srv = inventory.cluster.servers[name]
    do_reload = (root.resolve() == Path("/")) if do_reload is None else do_reload
    secure_boot = any(node.secure_boot for node in context.nodes())
    peers = [inventory.cluster.servers[p] for p in inventory.cluster.peers(name) if p != name]
    loaders, warnings = loader_files(srv, root, secure_boot=secure_boot, peers=peers)
    result = applier.apply(
        render_all(context) + loaders,
        root,
        reload_command=srv.reload_command,
        dry_run=dry_run,
        do_reload=do_reload,
        validation=validation,
    )
    released, waiting = _settle_leases(ctx, srv, inventory.cluster, now=do_reload and not dry_run)
    if not dry_run:
        targets.write(StatePaths(ctx.state), inventory.macs, inventory.images)
    return ApplyReport(
        server=name,
        root=root,
        dry_run=dry_run,
        result=result,
        replicas_created=tuple(created),
        released=tuple(released),
        waiting=tuple(waiting),
        warnings=tuple(warnings),
    )


def loader_files(
    server: Server, root: Path, *, secure_boot: bool = False, peers: Sequence[Server] = ()
) -> tuple[list[RenderedFile], list[str]]:
    """The loader files dim ships for ``server``'s clients (and in a failover set its
    ``peers``' clients), read from their Debian packages, and a warning for each of the site's
    own loaders that is not under ``root``.

    Raises :class:`ApplyError` naming the file and the package to install when a shipped
    loader's source is missing: nothing is installed then.
    """
    files, warnings = [], []
    for loader in needed_loaders(server, secure_boot=secure_boot, peers=peers):
        if loader.shipped is None:
            if not os.path.exists(target(root, loader.path)):
                warnings.append(
                    f"{loader.path} is missing: {loader.kind} clients are sent it, and dim "
                    "does not ship it (a site's own loader); put it there"
                )
            continue
        source = loader.shipped.source
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
