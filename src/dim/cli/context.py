"""How a command gets the :class:`~dim.actions.context.Context` the root group built.

::

    @group.command("list")
    @pass_context
    def node_list(ctx: Context) -> None: ...
"""

from __future__ import annotations

import click

from dim.actions.context import Context

pass_context = click.make_pass_decorator(Context)

__all__ = ["Context", "pass_context"]
