"""The templates dim renders: which there are, which the site overrides, a copy to edit.

An override is a file of the same name in the templates folder next to cluster.xml
(:attr:`Context.template_dir`); the renderer looks there first::

    [t.name for t in listing(ctx) if t.overridden]     # ['hosts.j2']
    copy(ctx, "dnsmasq.conf.j2")                        # <config dir>/templates/dnsmasq.conf.j2
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dim.actions.context import Context
from dim.errors import UsageError


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    overridden: bool


def listing(ctx: Context) -> list[Template]:
    """dim's own templates, by name, each marked if the site overrides it."""
    shipped = resources.files("dim").joinpath("templates").iterdir()
    return [
        Template(entry.name, (ctx.template_dir / entry.name).exists())
        for entry in sorted(shipped, key=lambda e: e.name)
    ]


def copy(ctx: Context, name: str) -> Path:
    """Copy dim's template ``name`` into the templates folder, for editing; return the copy."""
    source = resources.files("dim").joinpath("templates").joinpath(name)
    if "/" in name or not source.is_file():
        raise UsageError(f"unknown template {name!r}", hint="`dim templates list` names them")
    destination = ctx.template_dir / name
    if destination.exists():
        raise UsageError(f"{destination} exists already; edit it there")
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(source.read_bytes())
    return destination
