"""A click group whose commands are imported when they run, not when ``dim`` starts.

Each command family pulls in its own dependencies (SQLAlchemy, Jinja2, lxml, ClusterShell,
aiohttp, pyghmi, pysnmp): importing them all cost ``dim --version`` half a second. The root
group knows each family by name, module and one-line summary; ``dim --help`` lists the
summaries, and only the family a command line names is imported::

    families = {"node": Family("dim.cli.node", "group", "Nodes: list them, …")}
    cli = click.group(cls=LazyGroup, families=families)(root_callback)

The table is :data:`dim.commands.FAMILIES`. The summaries are copies of the commands' own
first help lines (a test compares them), so that listing every family imports none of them;
``dim --help`` itself is printed from the table without click (:mod:`dim.helptext`), laid out
as :meth:`LazyGroup.format_commands` lays it out here.
"""

from __future__ import annotations

import click

from dim.commands import Family


class LazyGroup(click.Group):
    """A group that imports a family's module the first time the family is asked for."""

    def __init__(self, *args, families: dict[str, Family], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.families = families

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.families})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.families:
            self.add_command(self.families[cmd_name].load(), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists commands, from the summaries: ``dim --help`` imports no family."""
        commands = [
            (name, self.commands.get(name) or click.Command(name, help=self.families[name].summary))
            for name in self.list_commands(ctx)
        ]
        shown = [(name, command) for name, command in commands if not command.hidden]
        if not shown:
            return
        # as click does: the summary gets what the widest name and three spacings leave
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        with formatter.section("Commands"):
            formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in shown])
