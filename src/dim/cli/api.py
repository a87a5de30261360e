"""``dim api``: run the REST API; ``dim api token …``: its tokens.

::

    dim api token add helpdesk --role reader     # the token is the last word printed
    dim api --listen 127.0.0.1 --port 8780
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8780/api/v1/nodes
"""

from __future__ import annotations

from pathlib import Path

import click

from dim.cli.context import Context, pass_context, root_option
from dim.cli.output import emit_json, table

TOKENS_HELP = "The token file (default: $DIM_API_TOKENS, else api-tokens beside cluster.xml)."


def _tokens(ctx: Context, option: Path | None):
    from dim.api.tokens import TokenFile, resolve_path

    return TokenFile(resolve_path(option, ctx.config))


@click.group("api", invoke_without_command=True)
@click.option("--listen", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8780, show_default=True)
@click.option(
    "--cert", type=click.Path(dir_okay=False, path_type=Path), help="TLS certificate (PEM)."
)
@click.option(
    "--key", type=click.Path(dir_okay=False, path_type=Path), help="Its private key (PEM)."
)
@click.option("--tokens", type=click.Path(dir_okay=False, path_type=Path), help=TOKENS_HELP)
@click.option(
    "--nfs-pid-file",
    "pid_files",
    multiple=True,
    metavar="FILE",
    help="Pid file of an NFS server whose sessions make nodes up (as dim node status).",
)
@click.option(
    "--metrics",
    type=click.Choice(["public", "token", "off"]),
    default="public",
    show_default=True,
    help="GET /metrics for Prometheus: without a token (Prometheus's habit), with one, or not.",
)
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The BMC credentials file for power actions (default: as dim power).",
)
@root_option("Where dim apply installed the nodes' loader files")
@click.pass_context
def group(
    click_ctx: click.Context,
    listen: str,
    port: int,
    cert: Path | None,
    key: Path | None,
    tokens: Path | None,
    pid_files: tuple[str, ...],
    metrics: str,
    credentials: Path | None,
    root: Path,
) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /api/v1/openapi.json) until stopped.

    The dashboard is at / (open /#token=TOKEN to sign in). Every API request needs a bearer
    token (dim api token add). It listens on localhost unless
    told otherwise; give --cert and --key for HTTPS. Changes made through it are logged in
    the state DB's events with the token's name.
    """
    if click_ctx.invoked_subcommand is not None:
        click_ctx.obj = click_ctx.find_object(Context)
        return
    import logging

    from dim.api import app
    from dim.services import sessions

    ctx = click_ctx.find_object(Context)
    files = list(pid_files) or sessions.pid_files_from_env() or list(sessions.DEFAULT_PID_FILES)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    context = app.tls(cert, key)
    if not ctx.has_db():  # the API's changes are events with their token's name: kept from now
        ctx.db()
    service = app.Service(
        ctx,
        _tokens(ctx, tokens),
        root=root,
        pid_files=tuple(files),
        metrics=metrics,
        credentials=credentials,
    )
    app.run(app.make_app(service), listen, port, context)


@group.group("token")
def token_group() -> None:
    """The API's bearer tokens: add, list, remove."""


@token_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["reader", "admin"]), required=True)
@click.option("--tokens", type=click.Path(dir_okay=False, path_type=Path), help=TOKENS_HELP)
@pass_context
def token_add(ctx: Context, name: str, role: str, tokens: Path | None) -> None:
    """Make a token named NAME; print it, once: only its hash is kept."""
    store = _tokens(ctx, tokens)
    secret = store.add(name, role)
    click.echo(f"{name} ({role}) added to {store.path}; keep this token, it is not shown again:")
    click.echo(f"token: {secret}")


@token_group.command("list")
@click.option("--tokens", type=click.Path(dir_okay=False, path_type=Path), help=TOKENS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def token_list(ctx: Context, tokens: Path | None, as_json: bool) -> None:
    """The tokens: names, roles and when they were made (never the tokens themselves)."""
    import datetime

    found = _tokens(ctx, tokens).tokens()
    if as_json:
        emit_json([t.record() for t in found])
        return
    table(
        [
            [t.name, t.role, datetime.datetime.fromtimestamp(t.created).isoformat(" ", "seconds")]
            for t in found
        ],
        ["NAME", "ROLE", "CREATED"],
    )


@token_group.command("remove")
@click.argument("name")
@click.option("--tokens", type=click.Path(dir_okay=False, path_type=Path), help=TOKENS_HELP)
@pass_context
def token_remove(ctx: Context, name: str, tokens: Path | None) -> None:
    """Remove the token named NAME: it is refused from the next request on."""
    store = _tokens(ctx, tokens)
    store.remove(name)
    click.echo(f"{name}: removed from {store.path}")
