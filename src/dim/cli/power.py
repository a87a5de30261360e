"""``dim power …``, ``dim bootdev`` and ``dim discover``: parse, call one fan-out, print.

Results are grouped for people (one folded node set per outcome), one object per node with
``--json``; the exit status is 1 when any node failed::

    dim power cycle @rack1 --yes --timeout 5
    dim discover @rack1 --save
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from dim.actions import power as remote
from dim.actions.power import PowerRun, Selection
from dim.cli.context import Context, pass_context
from dim.cli.output import emit_json, node_counter, table
from dim.errors import UsageError
from dim.inventory import fold
from dim.power import credentials
from dim.power.interface import ACTIONS, DEVICES, FanoutOptions, summarize
from dim.printable import counted

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
            help="BMC credentials file, mode 0600 [env: DIM_CREDENTIALS; default: the file "
            f"credentials beside the layout, {credentials.DEFAULT_PATH} for the default layout].",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON, one object per node."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _select(ctx: Context, nodeset: str, exclude: str | None, opts: dict) -> Selection:
    return remote.select_nodes(ctx, nodeset, exclude, credentials_file=opts["credentials_file"])


def _options(opts: dict) -> FanoutOptions:
    return FanoutOptions(
        concurrency=opts["concurrency"], timeout=opts["timeout"], retries=opts["retries"]
    )


def act(
    ctx: Context,
    chosen: Selection,
    action: str,
    options: FanoutOptions,
    *,
    yes: bool,
    confirm_above: int = DEFAULT_CONFIRM_ABOVE,
    as_json: bool = False,
) -> None:
    """``action`` on the chosen nodes, asking first when it is disruptive and they are many;
    the per-node report (exit 1 if a node failed). ``dim node switch --reset`` calls it too."""
    if not yes:
        confirm(action, chosen.names, confirm_above)
    progress = node_counter(len(chosen.nodes))
    run = remote.power(chosen, action, options, progress)
    remote.log_outcomes(ctx, "power", action, run)
    _report(run, as_json)


def confirm(action: str, names: list[str], confirm_above: int = DEFAULT_CONFIRM_ABOVE) -> None:
    """Ask before a disruptive ``action`` on more than ``confirm_above`` nodes."""
    if needs_confirmation(action, len(names), confirm_above):
        _confirm(action, names)


def _confirm(action: str, names: list[str]) -> None:
    question = f"{action} {counted(len(names), 'node')} ({fold(names)})?"
    if not sys.stdin.isatty():
        raise UsageError(
            f"{action} on {counted(len(names), 'node')} needs a confirmation, and there is no "
            "terminal to ask on",
            hint="pass --yes",
        )
    if not click.confirm(question, default=False, err=True):
        raise click.exceptions.Abort()


def _report(run: PowerRun, as_json: bool) -> None:
    summary = summarize(run.results)
    if as_json:
        emit_json([r.record() for r in run.results])
    else:
        rows = []
        for (outcome, message), nodes in summary.groups.items():
            rows.append([outcome, fold(nodes) + (f": {message}" if message else "")])
        for row in rows:
            click.echo(f"{row[0]:<{max(len(r[0]) for r in rows)}}  {row[1]}")
        ok = summary.total - summary.failed
        click.echo(
            f"{counted(summary.total, 'node')}: {ok} ok, {summary.failed} failed "
            f"({run.seconds:.1f} s)",
            err=True,
        )
    run.raise_for_failures()


# -- dim power --------------------------------------------------------------------------------


@click.group("power")
def group() -> None:
    """Power status and control through the nodes' BMCs (IPMI, Redfish, SNMP)."""


@group.command("status")
@click.argument("nodeset")
@_fanout_options
@pass_context
def power_status(ctx: Context, nodeset: str, exclude: str | None, as_json: bool, **opts) -> None:
    """Show the power state of NODESET, grouped by state."""
    chosen = _select(ctx, nodeset, exclude, opts)
    _report(remote.status(chosen, _options(opts), node_counter(len(chosen.nodes))), as_json)


def _power_command(action: str, text: str) -> None:
    @group.command(action, help=text)
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
    @pass_context
    def command(
        ctx: Context,
        nodeset: str,
        exclude: str | None,
        as_json: bool,
        yes: bool,
        confirm_above: int,
        **opts,
    ) -> None:
        chosen = _select(ctx, nodeset, exclude, opts)
        options = _options(opts)
        act(ctx, chosen, action, options, yes=yes, confirm_above=confirm_above, as_json=as_json)


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


@click.command("bootdev")
@click.argument("nodeset")
@click.argument("device", type=click.Choice(DEVICES))
@click.option("--persistent", is_flag=True, help="For every boot, not only the next one.")
@_fanout_options
@pass_context
def bootdev(
    ctx: Context,
    nodeset: str,
    device: str,
    persistent: bool,
    exclude: str | None,
    as_json: bool,
    **opts,
) -> None:
    """Set the boot device of NODESET: pxe (network) or disk, for the next boot or always."""
    chosen = _select(ctx, nodeset, exclude, opts)
    run = remote.bootdev(
        chosen,
        device,
        persistent=persistent,
        options=_options(opts),
        progress=node_counter(len(chosen.nodes)),
    )
    remote.log_outcomes(ctx, "bootdev", device, run)
    _report(run, as_json)


# -- dim discover -----------------------------------------------------------------------------


@click.command("discover")
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
@pass_context
def discover(
    ctx: Context,
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
    chosen = _select(ctx, nodeset, exclude, opts)
    found = remote.discover(
        ctx,
        chosen,
        nic=nic,
        save=save,
        options=_options(opts),
        progress=node_counter(len(chosen.nodes)),
    )
    results = found.run.results
    if as_json:
        saved = {node: mac for (node, _network), mac in found.saved.items()}
        records = [
            r.record() | ({"saved": saved[r.node]} if r.node in saved else {}) for r in results
        ]
        emit_json(records)
        found.run.raise_for_failures()
        return
    rows = [
        [r.node, n.name, n.mac, "*" if i == nic - 1 else ""]
        for r in results
        for i, n in enumerate(r.macs)
    ]
    if rows:
        table(rows, ["NODE", "NIC", "MAC", "BOOT"])
    if save:
        click.echo(f"saved {len(found.saved)} boot-interface MACs ({found.changed} changed)")
    elif rows:
        click.echo("nothing saved: review the list, then run again with --save", err=True)
    _report(found.run, as_json)
