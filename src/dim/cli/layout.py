"""``dim layout check|show``: is cluster.xml valid, and what does it say about some nodes.

::

    dim layout check --json
    dim layout show @compute -x c01
"""

from __future__ import annotations

import click

from dim.actions import layout
from dim.cli.context import Context, pass_context
from dim.cli.output import emit_json
from dim.quick import check_lines


@click.group("layout")
def group() -> None:
    """Check and show the cluster layout (cluster.xml)."""


@group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def layout_check(ctx: Context, as_json: bool) -> None:
    """Validate cluster.xml against its schema and checks; summarise it.

    Exit status 2 and a one-line error naming file, line and value if anything is wrong.
    Warnings (exit status 0) name what the server's machine lacks for its nodes.
    """
    report = layout.check(ctx)
    if as_json:
        emit_json(report)
        return
    for line in check_lines(report):  # what `dim layout check` prints without click too
        click.echo(line)


@group.command("show")
@click.argument("nodeset")
@click.option("-x", "--exclude", metavar="NODESET", help="Leave these nodes out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def layout_show(ctx: Context, nodeset: str, exclude: str | None, as_json: bool) -> None:
    """Show everything declared and observed for NODESET."""
    # here: `layout check` has no use for the node actions and their result types (8 ms)
    from dim.actions import nodes

    records = nodes.records(ctx, nodeset, exclude)
    if as_json:
        emit_json(records)
        return
    for record in records:
        secure = ", Secure Boot" if record["secure_boot"] else ""
        click.echo(
            f"{record['name']}  (group {record['group']}, server {record['server']}, "
            f"image {record['image'] or '-'}{secure})"
        )
        for iface in record["interfaces"]:
            click.echo(
                f"  {iface['network']:<8} {iface['ip']:<15} {iface['hostname']:<20} "
                f"{iface['mac'] or '-'}"
            )
        if record["bmc"]:
            bmc = record["bmc"]
            click.echo(
                f"  bmc      {bmc['address']:<15} {bmc['driver']}"
                f" (credentials {bmc['credentials'] or '-'})"
            )
