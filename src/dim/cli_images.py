"""``dim image …`` and ``dim node switch|reset|diff``: parse, call one operation, print."""

from __future__ import annotations

import sys
from collections import defaultdict

import click

from dim.cli import Settings, cli, emit_json, node_group, pass_settings, table
from dim.errors import UsageError
from dim.images import operations
from dim.images.commit import CommitResult
from dim.images.delta import Delta
from dim.images.store import Store
from dim.inventory import fold, select


def _store(settings: Settings) -> Store:
    return Store(settings.state)


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        click.echo(f"  … {message}", err=True)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _print_commit(result: CommitResult, as_json: bool) -> None:
    conflicts: dict[str, list[str]] = defaultdict(list)
    for node, path in result.conflicts:
        conflicts["/" + path].append(node)
    if as_json:
        emit_json(
            {
                "image": result.image,
                "version": result.version,
                **result.delta,
                "replicas_updated": result.replicas_updated,
                "conflicts": [{"path": p, "nodes": fold(n)} for p, n in sorted(conflicts.items())],
                "seconds": round(result.seconds, 3),
            }
        )
        return
    d = result.delta
    if result.version is None:
        click.echo(f"{result.image}: nothing changed, no version recorded")
        return
    click.echo(
        f"{result.image}: version {result.version}: {d['added']} added, {d['changed']} changed, "
        f"{d['removed']} removed, {_human(d['bytes_added'])} new; live updated; "
        f"{result.replicas_updated} replicas updated; {len(result.conflicts)} conflicts; "
        f"{result.seconds:.2f} s"
    )
    for path, nodes in sorted(conflicts.items()):
        click.echo(f"  conflict: {path} changed by {fold(nodes)}: left alone (--force overwrites)")


@cli.group("image")
def image_group() -> None:
    """Images: import, sync, change with exec, versions, rollback, gc."""


@image_group.command("import")
@click.argument("name")
@click.option(
    "--from",
    "origin",
    required=True,
    metavar="SOURCE",
    help="A directory, a tarball, or ssh://[USER@]HOST[:PORT][/PATH] (a running "
    "master node; /proc, /sys, /dev, /run, /tmp and keep-outs are left out).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_import(settings: Settings, name: str, origin: str, as_json: bool) -> None:
    """Create image NAME (declared in cluster.xml) from SOURCE: its first version."""
    image = operations.declared(settings.cluster(), name)
    result = operations.import_image(
        _store(settings), image, origin, incremental=False, progress=_progress
    )
    _print_commit(result, as_json)


@image_group.command("sync")
@click.argument("name")
@click.option("--from", "origin", required=True, metavar="SOURCE", help="As for import.")
@click.option("--force", is_flag=True, help="Overwrite files that nodes changed in replicas.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_sync(settings: Settings, name: str, origin: str, force: bool, as_json: bool) -> None:
    """A new version of NAME from SOURCE: only what changed since the last version costs."""
    image = operations.declared(settings.cluster(), name)
    result = operations.import_image(
        _store(settings), image, origin, incremental=True, force=force, progress=_progress
    )
    _print_commit(result, as_json)


@image_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--force", is_flag=True, help="Overwrite files that nodes changed in replicas.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_exec(
    settings: Settings, name: str, command: tuple[str, ...], force: bool, as_json: bool
) -> None:
    """Run COMMAND in a chroot of NAME's latest version; its change is the next version.

    \b
    dim image exec rhel9 -- dnf install -y htop
    dim image exec debian -- sh -c 'echo "x:x:1001:1001::/home/x:/bin/sh" >> /etc/passwd'

    /proc, /sys and /dev are bound, /tmp and /run are empty tmpfs. If COMMAND fails, no
    version is recorded and live is untouched.
    """
    image = operations.declared(settings.cluster(), name)
    result = operations.exec_in_image(
        _store(settings), image, list(command), force=force, progress=_progress
    )
    _print_commit(result, as_json)


@image_group.command("rollback")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--force", is_flag=True, help="Overwrite files that nodes changed in replicas.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_rollback(settings: Settings, name: str, version: int, force: bool, as_json: bool) -> None:
    """Make NAME's tree version VERSION's again, as a new version (history stays)."""
    image = operations.declared(settings.cluster(), name)
    result = operations.rollback(_store(settings), image, version, force=force, progress=_progress)
    _print_commit(result, as_json)


@image_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_list(settings: Settings, as_json: bool) -> None:
    """Images declared or stored: latest version, live version, nodes, replicas."""
    inventory = settings.inventory()
    store = _store(settings)
    reports = [
        operations.report(store, inventory, n, sizes=False)
        for n in operations.all_images(store, inventory)
    ]
    if as_json:
        emit_json(
            [
                {
                    "name": r.name,
                    "versions": r.versions,
                    "live": r.live,
                    "nodes": fold(r.users),
                    "replicas": len(r.replicas),
                    "declared": r.declared,
                }
                for r in reports
            ]
        )
        return
    table(
        [
            [
                r.name,
                str(r.versions[-1]) if r.versions else "-",
                str(r.live or "-"),
                str(len(r.users)),
                str(len(r.replicas)),
                "" if r.declared else "not declared",
            ]
            for r in reports
        ],
        ["IMAGE", "LATEST", "LIVE", "NODES", "REPLICAS", ""],
    )


@image_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_show(settings: Settings, name: str, as_json: bool) -> None:
    """One image: versions, the nodes that use it, each replica's version and disk use."""
    r = operations.report(_store(settings), settings.inventory(), name)
    if as_json:
        emit_json(
            {
                "name": r.name,
                "versions": r.versions,
                "live": r.live,
                "nodes": fold(r.users),
                "replicas": r.replicas,
            }
        )
        return
    click.echo(
        f"{r.name}: versions {fold([str(v) for v in r.versions]) or '-'}, "
        f"live {r.live or '-'}, used by {fold(r.users) or 'no node'}"
    )
    table(
        [[node, str(info["version"]), _human(info["bytes"])] for node, info in r.replicas.items()],
        ["REPLICA", "VERSION", "DISK"],
    )


@image_group.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_versions(settings: Settings, name: str, as_json: bool) -> None:
    """NAME's versions: when, from what, and how much changed."""
    r = operations.report(_store(settings), settings.inventory(), name, sizes=False)
    if as_json:
        emit_json([r.meta[v] | {"version": v} for v in r.versions])
        return
    import time as _time

    rows = []
    for v in r.versions:
        m = r.meta[v]
        when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(m.get("created", 0)))
        rows.append(
            [
                str(v),
                when,
                str(m.get("added", "?")),
                str(m.get("changed", "?")),
                str(m.get("removed", "?")),
                _human(m.get("bytes_added", 0)),
                m.get("source", "?"),
            ]
        )
    table(rows, ["VERSION", "CREATED", "ADDED", "CHANGED", "REMOVED", "NEW", "SOURCE"])


def _print_delta(delta: Delta, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "added": ["/" + p for p in delta.added],
                "changed": ["/" + p for p in delta.changed],
                "removed": ["/" + p for p in delta.removed],
            }
        )
        return
    for sign, paths in (("+", delta.added), ("~", delta.changed), ("-", delta.removed)):
        for path in paths:
            click.echo(f"{sign} /{path}")


@image_group.command("diff")
@click.argument("name")
@click.argument("first", type=int)
@click.argument("second", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_diff(settings: Settings, name: str, first: int, second: int, as_json: bool) -> None:
    """Paths added (+), changed (~) and removed (-) from version FIRST to SECOND."""
    _print_delta(operations.diff(_store(settings), name, first, second), as_json)


@image_group.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_settings
def image_rm(settings: Settings, name: str, yes: bool) -> None:
    """Remove NAME's versions, live tree and every replica; refused while nodes use it."""
    store = _store(settings)
    inventory = settings.inventory()
    if not yes and not click.confirm(
        f"remove image {name}, all its versions and {len(store.replicas(name))} replicas?"
    ):
        raise click.exceptions.Abort()
    removed = operations.remove(store, inventory, name)
    click.echo(f"{name}: removed, with the replicas of {fold(removed) or 'no node'}")


@image_group.command("gc")
@click.argument("name", required=False)
@click.option("--dry-run", is_flag=True, help="Say what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_gc(settings: Settings, name: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove versions no node needs, and replicas kept aside by `node reset`.

    Kept: the latest version, live's, every replica's, and any a running node booted from.
    """
    cluster = settings.cluster()
    store = _store(settings)
    names = [name] if name else [n for n in store.images() if n in cluster.images]
    db = settings.existing_db()
    boots = db.last_boots() if db is not None else {}
    results = [
        operations.gc(
            store,
            operations.declared(cluster, n),
            in_use=operations.booted_versions(boots, n),
            dry_run=dry_run,
        )
        for n in names
    ]
    if as_json:
        emit_json(
            [
                {
                    "image": r.image,
                    "removed_versions": r.removed_versions,
                    "kept_versions": r.kept_versions,
                    "removed_asides": r.removed_asides,
                    "bytes_freed": r.bytes_freed,
                }
                for r in results
            ]
        )
        return
    verb = "would remove" if dry_run else "removed"
    for r in results:
        click.echo(
            f"{r.image}: {verb} versions {fold([str(v) for v in r.removed_versions]) or '-'}"
            f" ({_human(r.bytes_freed)}) and {len(r.removed_asides)} reset replicas; "
            f"kept {fold([str(v) for v in r.kept_versions]) or '-'}"
        )


@image_group.command("check")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def image_check(settings: Settings, name: str | None, as_json: bool) -> None:
    """Verify the store, finish interrupted work, and say what was repaired."""
    cluster = settings.cluster()
    store = _store(settings)
    names = [name] if name else [n for n in store.images() if n in cluster.images]
    results = [operations.check(store, operations.declared(cluster, n)) for n in names]
    if as_json:
        emit_json(
            [{"image": r.image, "repaired": r.repaired, "problems": r.problems} for r in results]
        )
    else:
        for r in results:
            state = "consistent" if not r.problems else "problems found"
            click.echo(f"{r.image}: {state}")
            for line in r.repaired:
                click.echo(f"  repaired: {line}")
            for line in r.problems:
                click.echo(f"  problem: {line}")
    if any(r.problems for r in results):
        raise SystemExit(1)


# -- nodes -------------------------------------------------------------------------------------


@node_group.command("switch")
@click.argument("nodeset")
@click.argument("image_name", metavar="IMAGE")
@pass_settings
def node_switch(settings: Settings, nodeset: str, image_name: str) -> None:
    """Assign IMAGE to NODESET: each node gets its replica of IMAGE (its old one if it had
    one). `dim apply` then points exports and boot configuration at it; reset the node."""
    cluster = settings.cluster()
    image = operations.declared(cluster, image_name)
    nodes = [n.name for n in select(cluster, nodeset)]
    created = operations.switch(_store(settings), cluster, nodes, image, progress=_progress)
    changed = settings.db().set_images(cluster, nodes, image_name)
    found = [n for n in nodes if n not in created]
    click.echo(
        f"{fold(nodes)}: image {image_name} ({changed} switched); new replicas for "
        f"{fold(created) or 'no node'}, kept replicas found for {fold(found) or 'no node'}"
    )


@node_group.command("reset")
@click.argument("nodeset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_settings
def node_reset(settings: Settings, nodeset: str, yes: bool) -> None:
    """Give NODESET fresh replicas of their image; the old ones are kept until `image gc`."""
    inventory = settings.inventory()
    nodes = select(inventory.cluster, nodeset)
    by_image: dict[str, list[str]] = defaultdict(list)
    for node in nodes:
        image = inventory.image(node)
        if image is None:
            raise UsageError(f"node {node.name} has no image")
        by_image[image].append(node.name)
    if not yes and not click.confirm(
        f"discard the persistent state of {fold([n.name for n in nodes])}?"
    ):
        raise click.exceptions.Abort()
    store = _store(settings)
    for image, names in by_image.items():
        operations.reset(store, operations.declared(inventory.cluster, image), names)
        click.echo(f"{fold(names)}: fresh replicas of {image}; old ones kept until gc")


@node_group.command("diff")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def node_diff(settings: Settings, node: str, as_json: bool) -> None:
    """What NODE changed in its persistent paths, against its image."""
    from dim.images import replicas

    inventory = settings.inventory()
    targets = select(inventory.cluster, node)
    if len(targets) != 1:
        raise UsageError(f"node diff takes one node, not {node!r} ({len(targets)} nodes)")
    image = inventory.image(targets[0])
    if image is None:
        raise UsageError(f"node {node} has no image")
    delta = replicas.differences(
        _store(settings), operations.declared(inventory.cluster, image), node
    )
    _print_delta(delta, as_json)
