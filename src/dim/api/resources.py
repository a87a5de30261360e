"""What each route of the REST API does: plain functions of a Context and the request's values,
returning what goes out as JSON. They run in a worker thread (the actions block on files,
the state DB and BMCs) and call :mod:`dim.actions`, as the CLI does; their errors are the
actions' :class:`dim.errors.DimError`, whose message the CLI prints too.

Each takes ``(ctx, request)``, where ``request`` is an :class:`Inputs`: the path's values,
the query's and the JSON body's, each checked by kind (:func:`text`, :func:`number`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dim.actions import images, nodes
from dim.actions import power as remote
from dim.actions import status as node_status
from dim.actions.context import Context
from dim.api.jobs import KEPT, Jobs
from dim.errors import UsageError
from dim.inventory import fold
from dim.printable import printable
from dim.structs import struct

LONGEST_TEXT = 4096  # a node set, an image name: anything longer is refused, not parsed
MOST_EVENTS = 1000


@struct(frozen=True, slots=True)
class Inputs:
    path: Mapping[str, str]
    query: Mapping[str, str]
    body: Mapping[str, object]
    root: Path  # where dim apply installed the loader files (dim api --root)
    pid_files: tuple[str, ...]  # the NFS servers whose sessions make a node "up"
    token: Mapping[str, object]  # the caller's token: name, role, created
    jobs: Jobs  # the service's asynchronous jobs
    credentials: Path | None  # the BMC credentials file (None: dim's default)


def whoami(ctx: Context, request: Inputs) -> dict:
    return dict(request.token)


def text(values: Mapping, name: str, *, required: bool = True) -> str | None:
    """A string value, at most :data:`LONGEST_TEXT` characters, printable."""
    value = values.get(name)
    if value is None:
        if required:
            raise UsageError(f"missing {name!r}")
        return None
    if not isinstance(value, str):
        raise UsageError(f"{name!r} must be a string")
    if len(value) > LONGEST_TEXT or printable(value) != value or not value:
        raise UsageError(f"{name!r} is not a plausible value: {printable(value[:80])!r}")
    return value


def number(values: Mapping, name: str, default: int | None, least: int, most: int) -> int | None:
    """A whole number between ``least`` and ``most``."""
    value = values.get(name)
    if value is None:
        return default
    try:
        found = int(value) if isinstance(value, str) and value.isascii() else None
    except ValueError:
        found = None
    if isinstance(value, int) and not isinstance(value, bool):
        found = value
    if found is None or not least <= found <= most:
        raise UsageError(f"{name!r} must be a whole number from {least} to {most}")
    return found


def flag(values: Mapping, name: str, default: bool = False) -> bool:
    """A JSON boolean (true or false, nothing else)."""
    value = values.get(name, default)
    if not isinstance(value, bool):
        raise UsageError(f"{name!r} must be true or false")
    return value


# -- nodes -----------------------------------------------------------------------------------


def node_list(ctx: Context, request: Inputs) -> dict:
    query = request.query
    return {"nodes": nodes.records(ctx, text(query, "nodeset", required=False), _exclude(query))}


def node_show(ctx: Context, request: Inputs) -> dict:
    name = text(request.path, "name")
    found = nodes.records(ctx, name)
    if len(found) != 1:
        raise UsageError(f"{name!r} is not one node")
    report = _statuses(ctx, request, name, None)
    events = ctx.existing_db()
    return {
        **found[0],
        "status": report.nodes[0].record(),
        "events": [event_record(e) for e in events.events(name, limit=50)] if events else [],
    }


def node_status_report(ctx: Context, request: Inputs) -> dict:
    query = request.query
    return _statuses(ctx, request, text(query, "nodeset", required=False), _exclude(query)).record()


def node_switch(ctx: Context, request: Inputs) -> dict:
    nodeset = text(request.path, "nodeset")
    image = text(request.body, "image")
    s = nodes.switch(ctx, nodeset, image, root=request.root)
    return {
        "nodes": fold(list(s.nodes)),
        "image": s.image,
        "switched": s.switched,
        "created": fold(list(s.created)),
        "found": fold(list(s.found)),
        "loader_files": s.links,
    }


def node_set_image(ctx: Context, request: Inputs) -> dict:
    a = nodes.set_image(ctx, text(request.path, "nodeset"), text(request.body, "image"))
    return {"nodes": fold(list(a.nodes)), "image": a.image, "changed": a.changed}


def node_reset(ctx: Context, request: Inputs) -> dict:
    """Fresh replicas for the nodes: what a person confirms on the command line is said here
    with ``{"confirm": true}``."""
    plan = nodes.reset_plan(ctx, text(request.path, "nodeset"))
    if not flag(request.body, "confirm"):
        raise UsageError(
            f"resetting discards the persistent state of {fold(plan.nodes)}: "
            'send {"confirm": true}'
        )
    done = nodes.reset(ctx, plan)
    ctx.log_events([(n, "reset", r.image) for r in done for n in r.nodes])
    return {"reset": [{"image": r.image, "nodes": fold(list(r.nodes))} for r in done]}


def group_list(ctx: Context, request: Inputs) -> dict:
    inventory = ctx.inventory(cached=True)
    members: dict[str, list] = {name: [] for name in inventory.cluster.groups}
    for node in inventory.cluster.nodes:
        members[node.group].append(node)
    return {
        "groups": [
            {
                "name": group.name,
                "nodeset": group.nodeset,
                "nodes": len(members[group.name]),
                "images": sorted({inventory.image(n) for n in members[group.name]}),
                "servers": sorted({n.server for n in members[group.name] if n.server}),
            }
            for group in inventory.cluster.groups.values()
        ]
    }


# -- power -----------------------------------------------------------------------------------

POWER_ACTIONS = ("on", "off", "reset", "cycle", "soft")
BOOT_DEVICES = ("pxe", "disk")


def node_power(ctx: Context, request: Inputs) -> dict:
    """A power action on a node set, as a job: its number now, its results at /jobs/{id}."""
    action = _choice(request.body, "action", POWER_ACTIONS)
    chosen = _chosen(ctx, request)

    work = lambda: _logged(ctx, "power", action, remote.power(chosen, action))  # noqa: E731
    return _job(request, f"power {action}", chosen.names, work)


def node_power_status(ctx: Context, request: Inputs) -> dict:
    """The nodes' power states, asked of their BMCs, as a job."""
    chosen = _chosen(ctx, request)
    return _job(
        request,
        "power status",
        chosen.names,
        lambda: [r.record() for r in remote.status(chosen).results],
    )


def node_bootdev(ctx: Context, request: Inputs) -> dict:
    """The boot device for next time (pxe or disk), as a job."""
    device = _choice(request.body, "device", BOOT_DEVICES)
    chosen = _chosen(ctx, request)

    work = lambda: _logged(ctx, "bootdev", device, remote.bootdev(chosen, device))  # noqa: E731
    return _job(request, f"bootdev {device}", chosen.names, work)


def _logged(ctx: Context, kind: str, asked: str, run: remote.PowerRun) -> list[dict]:
    """A fan-out's results, each node's outcome logged as an event of ``kind``."""
    remote.log_outcomes(ctx, kind, asked, run)
    return [r.record() for r in run.results]


def job_show(ctx: Context, request: Inputs) -> dict:
    number = number_of(request.path, "id")
    job = request.jobs.get(number)
    if job is None:
        raise UsageError(f"no job {number}: jobs are kept in memory, the newest {KEPT}")
    return job.record()


def job_list(ctx: Context, request: Inputs) -> dict:
    return {"jobs": [{**j.record(), "results": None} for j in request.jobs.recent()]}


def _chosen(ctx: Context, request: Inputs) -> remote.Selection:
    """The node set's nodes and their BMC credentials, checked before any job starts."""
    nodeset = text(request.path, "nodeset")
    return remote.select_nodes(ctx, nodeset, credentials_file=request.credentials)


def _job(request: Inputs, kind: str, names: list[str], work) -> dict:
    job = request.jobs.start(kind, fold(names), str(request.token["name"]), work)
    return {"job": job.id, "state": job.state, "nodes": job.nodes}


def _choice(values: Mapping, name: str, allowed: tuple[str, ...]) -> str:
    value = text(values, name)
    if value not in allowed:
        raise UsageError(f"{name!r} must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


def number_of(values: Mapping, name: str) -> int:
    found = number(values, name, None, 1, 2**63)
    if found is None:
        raise UsageError(f"missing {name!r}")
    return found


# -- images ----------------------------------------------------------------------------------


def image_list(ctx: Context, request: Inputs) -> dict:
    return {"images": [images.list_record(r) for r in images.reports(ctx)]}


def image_show(ctx: Context, request: Inputs) -> dict:
    report = _image(ctx, text(request.path, "name"))
    return {**images.show_record(report), "history": images.version_records(report)}


def image_rollback(ctx: Context, request: Inputs) -> dict:
    name = text(request.path, "name")
    version = number_of(request.body, "version")
    force = flag(request.body, "force")
    if version not in _image(ctx, name).versions:
        raise UsageError(f"image {name} has no version {version}")

    def work() -> list[dict]:
        result = images.rollback(ctx, name, version, force=force)
        ctx.log_events([(None, "image", f"{name} v{result.version}: rollback to v{version}")])
        return [
            {
                "ok": True,
                "image": result.image,
                "version": result.version,
                "delta": result.delta,
                "replicas_updated": result.replicas_updated,
                "conflicts": [{"node": n, "path": "/" + p} for n, p in result.conflicts],
            }
        ]

    return _job(request, f"rollback {name} to {version}", [], work)


def apply(ctx: Context, request: Inputs) -> dict:
    from dim.actions import apply as applying

    dry_run = flag(request.body, "dry_run")
    full = flag(request.body, "full")
    server = text(request.body, "server", required=False)

    def work() -> list[dict]:
        report = applying.apply(ctx, root=request.root, server=server, dry_run=dry_run, full=full)
        return [{"ok": not report.unreleased, **report.record()}]

    return _job(request, "apply (dry run)" if dry_run else "apply", [], work)


def image_diff(ctx: Context, request: Inputs) -> dict:
    name = text(request.path, "name")
    first = number(request.query, "from", None, 1, 2**31)
    second = number(request.query, "to", None, 1, 2**31)
    if first is None or second is None:
        raise UsageError("give the two versions to compare: ?from=N&to=M")
    stored = _image(ctx, name).versions
    for version in (first, second):
        if version not in stored:  # the store's own message, as a bad request
            raise UsageError(
                f"image {name} has no version {version}",
                hint=f"`dim image versions {name}` lists them",
            )
    return images.diff(ctx, name, first, second).record()


def _image(ctx: Context, name: str):
    return images.report(ctx, name, sizes=False)


# -- events ----------------------------------------------------------------------------------


def event_list(ctx: Context, request: Inputs) -> dict:
    query = request.query
    db = ctx.existing_db()
    if db is None:
        return {"events": []}
    found = db.events(
        text(query, "node", required=False),
        limit=number(query, "limit", 100, 1, MOST_EVENTS),
        after=number(query, "after", None, 0, 2**63),
    )
    return {"events": [event_record(e) for e in found]}


def event_record(e) -> dict:
    return {
        "id": e.id,
        "at": e.at,
        "node": e.node,
        "kind": e.kind,
        "detail": e.detail,
        "actor": e.actor,
    }


def _exclude(query: Mapping) -> str | None:
    return text(query, "exclude", required=False)


def _statuses(ctx: Context, request: Inputs, nodeset: str | None, exclude: str | None):
    found = node_status.live_sessions(ctx, request.pid_files)
    return node_status.statuses(ctx, nodeset, exclude, sessions=found)
