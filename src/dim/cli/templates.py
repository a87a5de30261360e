"""``dim templates list|copy``: the Jinja2 templates, and a copy of one to override it.

::

    dim templates copy dnsmasq.conf.j2     # then edit it next to cluster.xml
"""

from __future__ import annotations

import click

from dim.actions import templates
from dim.cli.context import Context, pass_context


@click.group("templates")
def group() -> None:
    """The Jinja2 templates dim renders; override one by copying it next to cluster.xml."""


@group.command("list")
@pass_context
def templates_list(ctx: Context) -> None:
    """List the templates, marking those overridden in the templates folder."""
    for template in templates.listing(ctx):
        click.echo(f"{template.name}{'  (overridden)' if template.overridden else ''}")


@group.command("copy")
@click.argument("name")
@pass_context
def templates_copy(ctx: Context, name: str) -> None:
    """Copy template NAME into the templates folder next to cluster.xml, for editing."""
    destination = templates.copy(ctx, name)
    click.echo(f"{destination}: copied; dim apply uses it from now on")
