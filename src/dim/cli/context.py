"""How a command gets the :class:`~dim.actions.context.Context` the root group built.

::

    @group.command("list")
    @pass_context
    def node_list(ctx: Context) -> None: ...
"""

from __future__ import annotations

from pathlib import Path

import click

from dim.actions.context import Context

pass_context = click.make_pass_decorator(Context)


def root_option(what: str):
    """``--root DIR`` (``$DIM_ROOT``, default ``/``): the target system's files lie under it.
    ``dim apply`` installs there and ``dim node switch`` retargets what apply installed;
    ``dim lab env`` points it at a lab."""
    return click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("/"),
        envvar="DIM_ROOT",
        show_default=True,
        help=f"{what} [env: DIM_ROOT].",
    )


__all__ = ["Context", "pass_context", "root_option"]
