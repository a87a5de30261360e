"""``dim power …``, ``dim bootdev`` and ``dim discover``: parse, call one fan-out, print.

Results are grouped for people (one folded node set per outcome), one object per node with
``--json``; the exit status is 1 when any node failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from dim.cli import Settings, cli, emit_json, pass_settings, table
from dim.errors import DimError, UsageError
from dim.inventory import fold, select
from dim.power import credentials
from dim.power.interface import ACTIONS, DEVICES, PowerResult, summarize

DEFAULT_CONFIRM_ABOVE = 10
DISRUPTIVE = ("off", "reset", "cycle", "soft")


def needs_confirmation(action: str, count: int, limit: int) -> bool:
    """Whether ``action`` on ``count`` nodes asks first: disruptive, and more than ``limit``."""
    return action in DISRUPTIVE and count > limit


def _fanout_options(function: Callable) -> Callable:
    """The options every remote-control command shares."""
    options = [
        click.option("-x", "--exclude", metavar="NODESET", help="Leave these nodes out."),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 10000),
            default=100,
            show_default=True,
            help="BMCs talked to at once.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 3600),
            default=10.0,
            show_default=True,
            help="Seconds a node may take at most, retries included.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 10),
            default=1,
            show_default=True,
            help="Retries after a quick failure that may heal (refused connection, HTTP 5xx).",
        ),
        click.option(
            "--credentials",
            "credentials_file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="DIM_CREDENTIALS",
            help=f"BMC credentials file, mode 0600 [env: DIM_CREDENTIALS; "
            f"default: {credentials.DEFAULT_PATH}].",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON, one object per node."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _run(
    settings: Settings,
    nodeset: str,
    exclude: str | None,
    operation: tuple,
    opts: dict,
    *,
    action: str | None = None,
    yes: bool = False,
    confirm_above: int = DEFAULT_CONFIRM_ABOVE,
) -> tuple[list[PowerResult], float]:
    cluster = settings.cluster()
    nodes = select(cluster, nodeset, exclude)
    store = credentials.load(credentials.resolve_path(opts["credentials_file"]))
    if action is not None and not yes and needs_confirmation(action, len(nodes), confirm_above):
        _confirm(action, [n.name for n in nodes])
    # The fan-out (asyncio, the drivers) is imported here, not when dim starts.
    from dim.power import control, fanout

    name, *arguments = operation
    chosen = getattr(fanout, name)(*arguments) if arguments else getattr(fanout, name)
    options = fanout.FanoutOptions(
        concurrency=opts["concurrency"], timeout=opts["timeout"], retries=opts["retries"]
    )
    start = time.monotonic()
    results = control.run(nodes, store, chosen, options, _progress(len(nodes)))
    return results, time.monotonic() - start


def _confirm(action: str, names: list[str]) -> None:
    question = f"{action} {len(names)} nodes ({fold(names)})?"
    if not sys.stdin.isatty():
        raise UsageError(
            f"{action} on {len(names)} nodes needs a confirmation, and there is no terminal "
            "to ask on",
            hint="pass --yes",
        )
    if not click.confirm(question, default=False, err=True):
        raise click.exceptions.Abort()


def _progress(total: int) -> Callable[[int, int], None] | None:
    """A counter on stderr, for runs long enough to need one, on a terminal only."""
    if total < 50 or not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(done: int, of: int) -> None:
        now = time.monotonic()
        if done == of or now - last[0] >= 0.2:
            last[0] = now
            end = "\n" if done == of else ""
            click.echo(f"\r  … {done}/{of} nodes", err=True, nl=False)
            if end:
                click.echo("", err=True)

    return show


def _report(results: list[PowerResult], seconds: float, as_json: bool) -> None:
    summary = summarize(results)
    if as_json:
        emit_json([r.record() for r in results])
    else:
        rows = []
        for (outcome, message), nodes in summary.groups.items():
            rows.append([outcome, fold(nodes) + (f": {message}" if message else "")])
        for row in rows:
            click.echo(f"{row[0]:<{max(len(r[0]) for r in rows)}}  {row[1]}")
        ok = summary.total - summary.failed
        click.echo(
            f"{summary.total} nodes: {ok} ok, {summary.failed} failed ({seconds:.1f} s)",
            err=True,
        )
    _fail(results)


def _fail(results: list[PowerResult]) -> None:
    failed = sum(1 for r in results if not r.ok)
    if failed:
        raise DimError(f"{failed} of {len(results)} nodes failed")


# -- dim power --------------------------------------------------------------------------------


@cli.group("power")
def power_group() -> None:
    """Power status and control through the nodes' BMCs (IPMI, Redfish, SNMP)."""


@power_group.command("status")
@click.argument("nodeset")
@_fanout_options
@pass_settings
def power_status(settings: Settings, nodeset: str, exclude: str | None, as_json: bool, **opts):
    """Show the power state of NODESET, grouped by state."""
    results, seconds = _run(settings, nodeset, exclude, ("status",), opts)
    _report(results, seconds, as_json)


def _power_command(action: str, text: str) -> None:
    @power_group.command(action, help=text)
    @click.argument("nodeset")
    @_fanout_options
    @click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.option(
        "--confirm-above",
        type=click.IntRange(0),
        envvar="DIM_CONFIRM_ABOVE",
        default=DEFAULT_CONFIRM_ABOVE,
        show_default=True,
        help="Ask before acting on more nodes than this [env: DIM_CONFIRM_ABOVE].",
    )
    @pass_settings
    def command(
        settings: Settings,
        nodeset: str,
        exclude: str | None,
        as_json: bool,
        yes: bool,
        confirm_above: int,
        **opts,
    ) -> None:
        results, seconds = _run(
            settings,
            nodeset,
            exclude,
            ("power", action),
            opts,
            action=action,
            yes=yes,
            confirm_above=confirm_above,
        )
        _report(results, seconds, as_json)


for _action, _text in zip(
    ACTIONS,
    (
        "Power NODESET on.",
        "Power NODESET off at once (no shutdown). Asks first beyond --confirm-above nodes.",
        "Hard-reset NODESET (power stays on). Asks first beyond --confirm-above nodes.",
        "Power NODESET off, then on (nodes that are off are switched on). Asks first beyond "
        "--confirm-above nodes.",
        "Ask NODESET's operating systems to shut down (ACPI). Asks first beyond "
        "--confirm-above nodes.",
    ),
    strict=True,
):
    _power_command(_action, _text)


# -- dim bootdev ------------------------------------------------------------------------------


@cli.command("bootdev")
@click.argument("nodeset")
@click.argument("device", type=click.Choice(DEVICES))
@click.option("--persistent", is_flag=True, help="For every boot, not only the next one.")
@_fanout_options
@pass_settings
def bootdev_command(
    settings: Settings,
    nodeset: str,
    device: str,
    persistent: bool,
    exclude: str | None,
    as_json: bool,
    **opts,
) -> None:
    """Set the boot device of NODESET: pxe (network) or disk, for the next boot or always."""
    results, seconds = _run(settings, nodeset, exclude, ("bootdev", device, persistent), opts)
    _report(results, seconds, as_json)


# -- dim discover -----------------------------------------------------------------------------


@cli.command("discover")
@click.argument("nodeset")
@click.option("--save", is_flag=True, help="Record the MACs as the boot interfaces' MACs.")
@click.option(
    "--nic",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Which of the NICs a BMC reports is the boot NIC (1 = the first listed).",
)
@_fanout_options
@pass_settings
def discover_command(
    settings: Settings,
    nodeset: str,
    save: bool,
    nic: int,
    exclude: str | None,
    as_json: bool,
    **opts,
) -> None:
    """Read NODESET's MAC addresses from their BMCs (Redfish); show them; record with --save.

    Without --save nothing is recorded: review the list first. With --save, the chosen NIC's
    MAC becomes the MAC of each node's boot interface in the state DB (a replaced MAC's lease
    is released by the next dim apply).
    """
    results, seconds = _run(settings, nodeset, exclude, ("discover",), opts)
    changes: dict[tuple[str, str], str] = {}
    changed = 0
    if save:
        cluster = settings.cluster()
        from dim.power.control import boot_macs

        changes = boot_macs(cluster, results, nic)
        if changes:
            changed = settings.db().set_macs(cluster, changes, source="discover")
    if as_json:
        saved = {node: mac for (node, _network), mac in changes.items()}
        records = [
            r.record() | ({"saved": saved[r.node]} if r.node in saved else {}) for r in results
        ]
        emit_json(records)
        _fail(results)
        return
    rows = [
        [r.node, n.name, n.mac, "*" if i == nic - 1 else ""]
        for r in results
        for i, n in enumerate(r.macs)
    ]
    if rows:
        table(rows, ["NODE", "NIC", "MAC", "BOOT"])
    if save:
        click.echo(f"saved {len(changes)} boot-interface MACs ({changed} changed)")
    elif rows:
        click.echo("nothing saved: review the list, then run again with --save", err=True)
    _report(results, seconds, as_json)
