"""``dim apply``: parse, call :func:`dim.actions.apply.apply`, print what it did.

::

    dim apply --root /tmp/staging --dry-run --diff
    dim apply --json
"""

from __future__ import annotations

from pathlib import Path

import click

from dim.actions import apply as action
from dim.actions.apply import ApplyReport
from dim.cli.context import Context, pass_context, root_option
from dim.cli.output import emit_json
from dim.inventory import fold
from dim.records import StaleLease
from dim.services import apply as applier
from dim.services import leases

SHOWN = 50  # changed files listed without --diff; beyond, a count


@click.command("apply")
@root_option("Install under this folder instead of / (staging, tests, a lab)")
@click.option("--server", help="Image server to configure (default: the only one).")
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; write nothing.")
@click.option("--diff", "show_diff", is_flag=True, help="Show a unified diff of each change.")
@click.option(
    "--reload/--no-reload",
    "do_reload",
    default=None,
    help="Run the services' reload commands (default: only when --root is /).",
)
@click.option(
    "--skip-validation",
    is_flag=True,
    help="Install even when a daemon's test mode is not available.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Render and compare every file, even when only some nodes changed since the last "
    "apply (e.g. after a file was edited by hand).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def command(
    ctx: Context,
    root: Path,
    server: str | None,
    dry_run: bool,
    show_diff: bool,
    do_reload: bool | None,
    skip_validation: bool,
    full: bool,
    as_json: bool,
) -> None:
    """Render DHCP, NFS, hosts and boot files; validate; install atomically; reload.

    Files that would not change are not touched. A daemon that refuses its new configuration
    stops everything before any file is written. After a reload, the DHCP leases that replaced
    MACs still hold are released, so that the new MACs get their nodes' addresses.
    """
    report = action.apply(
        ctx,
        root=root,
        server=server,
        dry_run=dry_run,
        do_reload=do_reload,
        validation=not skip_validation,
        full=full,
    )
    if as_json:
        emit_json(report.record())
    else:
        _print(report, show_diff)
    report.raise_for_unreleased()


def _print(report: ApplyReport, show_diff: bool) -> None:
    result, dry_run = report.result, report.dry_run
    for change in result.changes[:SHOWN] if not show_diff else result.changes:
        click.echo(f"  {change.action:<7} {change.path}")
        if show_diff:
            click.echo(applier.diff(change), nl=False)
    if len(result.changes) > SHOWN and not show_diff:
        click.echo(f"  … and {len(result.changes) - SHOWN} more")
    counts = result.counts()
    verb = "would change" if dry_run else "changed"
    click.echo(
        f"{report.server}: {len(result.changes)} files {verb} ({counts['create']} created, "
        f"{counts['update']} updated, {counts['remove']} removed), {result.unchanged} unchanged"
        + (f"; validated: {', '.join(result.validated)}" if result.validated else "")
        + (f"; reloaded: {', '.join(result.reloaded)}" if result.reloaded else "")
    )
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.not_validated:
        click.echo(f"warning: not validated: {', '.join(result.not_validated)}", err=True)
    if report.replicas_created:
        what = "would create" if dry_run else "created"
        click.echo(f"{what} replicas for {fold(list(report.replicas_created))}")
    _print_releases(report.released, report.waiting, dry_run)


def _print_releases(
    released: tuple[leases.ReleaseResult, ...], waiting: tuple[StaleLease, ...], dry_run: bool
) -> None:
    groups: dict[tuple[str, str], list[str]] = {}
    for r in released:
        if r.outcome == leases.FAILED:
            click.echo(
                f"warning: the stale lease of {r.lease.node} ({r.lease.mac} on {r.ip}) "
                f"was not released: {r.message}",
                err=True,
            )
        else:
            groups.setdefault((r.outcome, r.message), []).append(r.lease.node)
    for (outcome, message), names in groups.items():
        reason = f" ({message})" if message else ""
        what = (
            "released stale leases"
            if outcome == leases.RELEASED
            else "stale leases need no release"
        )
        click.echo(f"{what}: {fold(sorted(set(names)))}{reason}")
    if waiting:
        pending = fold(sorted({lease.node for lease in waiting}))
        if dry_run:
            click.echo(f"would release stale leases: {pending}")
        else:
            click.echo(f"stale leases pending: {pending} (released by the next apply that reloads)")
