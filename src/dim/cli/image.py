"""``dim image …``: parse, call one function of :mod:`dim.actions.images`, print.

::

    dim image import rhel9 --from /srv/rhel9-tree
    dim image exec rhel9 -- dnf install -y htop
    dim image gc --dry-run
"""

from __future__ import annotations

import time
from collections import defaultdict

import click

from dim.actions import images
from dim.cli.context import Context, pass_context
from dim.cli.output import delta, emit_json, human, progress, table
from dim.images.commit import CommitResult
from dim.inventory import fold


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
        f"{d['removed']} removed, {human(d['bytes_added'])} new; live updated; "
        f"{result.replicas_updated} replicas updated; {len(result.conflicts)} conflicts; "
        f"{result.seconds:.2f} s"
    )
    for path, nodes in sorted(conflicts.items()):
        click.echo(f"  conflict: {path} changed by {fold(nodes)}: left alone (--force overwrites)")


@click.group("image")
def group() -> None:
    """Images: import, sync, change with exec, versions, rollback, gc."""


@group.command("import")
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
@pass_context
def image_import(ctx: Context, name: str, origin: str, as_json: bool) -> None:
    """Create image NAME (declared in cluster.xml) from SOURCE: its first version."""
    result = images.import_image(ctx, name, origin, incremental=False, progress=progress)
    _print_commit(result, as_json)


@group.command("sync")
@click.argument("name")
@click.option("--from", "origin", required=True, metavar="SOURCE", help="As for import.")
@click.option("--force", is_flag=True, help="Overwrite files that nodes changed in replicas.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_sync(ctx: Context, name: str, origin: str, force: bool, as_json: bool) -> None:
    """A new version of NAME from SOURCE: only what changed since the last version costs."""
    result = images.import_image(
        ctx, name, origin, incremental=True, force=force, progress=progress
    )
    _print_commit(result, as_json)


@group.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--force", is_flag=True, help="Overwrite files that nodes changed in replicas.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_exec(
    ctx: Context, name: str, command: tuple[str, ...], force: bool, as_json: bool
) -> None:
    """Run COMMAND in a chroot of NAME's latest version; its change is the next version.

    \b
    dim image exec rhel9 -- dnf install -y htop
    dim image exec debian -- sh -c 'echo "x:x:1001:1001::/home/x:/bin/sh" >> /etc/passwd'

    /proc, /sys and /dev are bound, /tmp and /run are empty tmpfs. If COMMAND fails, no
    version is recorded and live is untouched.
    """
    result = images.exec_in_image(ctx, name, list(command), force=force, progress=progress)
    _print_commit(result, as_json)


@group.command("rollback")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--force", is_flag=True, help="Overwrite files that nodes changed in replicas.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_rollback(ctx: Context, name: str, version: int, force: bool, as_json: bool) -> None:
    """Make NAME's tree version VERSION's again, as a new version (history stays)."""
    result = images.rollback(ctx, name, version, force=force, progress=progress)
    _print_commit(result, as_json)


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_list(ctx: Context, as_json: bool) -> None:
    """Images declared or stored: architecture, latest version, live version, nodes, replicas.

    ARCH is the processor architecture of the image's binaries, read at each change of the
    image (`-` if it holds none)."""
    reports = images.reports(ctx)
    if as_json:
        emit_json([images.list_record(r) for r in reports])
        return
    table(
        [
            [
                r.name,
                r.arch or "-",
                str(r.versions[-1]) if r.versions else "-",
                str(r.live or "-"),
                str(len(r.users)),
                str(len(r.replicas)),
                "" if r.declared else "not declared",
            ]
            for r in reports
        ],
        ["IMAGE", "ARCH", "LATEST", "LIVE", "NODES", "REPLICAS", ""],
    )


@group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_show(ctx: Context, name: str, as_json: bool) -> None:
    """One image: versions, the nodes that use it, each replica's version and disk use."""
    r = images.report(ctx, name)
    if as_json:
        emit_json(images.show_record(r))
        return
    click.echo(
        f"{r.name}: {r.arch or 'no ELF binary'}, versions "
        f"{fold([str(v) for v in r.versions]) or '-'}, live {r.live or '-'}, used by "
        f"{fold(r.users) or 'no node'}"
    )
    table(
        [[node, str(info["version"]), human(info["bytes"])] for node, info in r.replicas.items()],
        ["REPLICA", "VERSION", "DISK"],
    )


@group.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_versions(ctx: Context, name: str, as_json: bool) -> None:
    """NAME's versions: when, from what, and how much changed."""
    r = images.report(ctx, name, sizes=False)
    if as_json:
        emit_json(images.version_records(r))
        return
    rows = []
    for v in r.versions:
        m = r.meta[v]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.get("created", 0)))
        rows.append(
            [
                str(v),
                when,
                str(m.get("added", "?")),
                str(m.get("changed", "?")),
                str(m.get("removed", "?")),
                human(m.get("bytes_added", 0)),
                m.get("source", "?"),
            ]
        )
    table(rows, ["VERSION", "CREATED", "ADDED", "CHANGED", "REMOVED", "NEW", "SOURCE"])


@group.command("diff")
@click.argument("name")
@click.argument("first", type=int)
@click.argument("second", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_diff(ctx: Context, name: str, first: int, second: int, as_json: bool) -> None:
    """Paths added (+), changed (~) and removed (-) from version FIRST to SECOND."""
    delta(images.diff(ctx, name, first, second), as_json)


@group.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def image_rm(ctx: Context, name: str, yes: bool) -> None:
    """Remove NAME's versions, live tree and every replica; refused while nodes use it."""
    if not yes and not click.confirm(
        f"remove image {name}, all its versions and {images.replica_count(ctx, name)} replicas?"
    ):
        raise click.exceptions.Abort()
    removed = images.remove(ctx, name)
    click.echo(f"{name}: removed, with the replicas of {fold(removed) or 'no node'}")


@group.command("gc")
@click.argument("name", required=False)
@click.option("--dry-run", is_flag=True, help="Say what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_gc(ctx: Context, name: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove versions no node needs, and replicas kept aside by `node reset`.

    Kept: the latest version, live's, every replica's, and any a running node booted from.
    """
    results = images.gc(ctx, name, dry_run=dry_run)
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
            f" ({human(r.bytes_freed)}) and {len(r.removed_asides)} reset replicas; "
            f"kept {fold([str(v) for v in r.kept_versions]) or '-'}"
        )


@group.command("check")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def image_check(ctx: Context, name: str | None, as_json: bool) -> None:
    """Verify the store, finish interrupted work, and say what was repaired."""
    results = images.check(ctx, name)
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
        click.get_current_context().exit(1)
