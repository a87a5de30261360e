"""Benchmark worker: expand a layout, then render it with or without the render defence.

Run by hand under callgrind (instruction counts do not depend on the machine's load)::

    PYTHONPATH=src valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/render_check.py VARIANT FOLDER

FOLDER holds ``cluster.xml`` and ``macs.csv`` (``NODE,MAC`` lines), e.g. from ``bench/layout.py
--keep``. VARIANT: ``load`` (expand only), ``default`` (dim's environment), ``none`` (Jinja2
without any check), ``finalize`` (an ``Environment(finalize=…)`` refusing non-printable values).
Render cost = a variant's count minus ``load``'s. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import jinja2

from dim.layout.model import Inventory
from dim.layout.parser import load
from dim.services import templating
from dim.services.render import render_all
from dim.services.rendering import RenderContext

OPTIONS = dict(
    loader=jinja2.PackageLoader("dim", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


def _finalize(value: object) -> object:
    if value.__class__ is str and not value.isprintable():  # type: ignore[attr-defined]
        raise ValueError(value)
    return value


def main(variant: str, folder: Path) -> None:
    macs = {}
    for line in (folder / "macs.csv").read_text().splitlines():
        name, mac = line.split(",")
        macs[(name, "boot")] = mac
    cluster = load(folder / "cluster.xml")
    if variant == "none":
        templating._environment = functools.cache(lambda _: jinja2.Environment(**OPTIONS))
    elif variant == "finalize":
        templating._environment = functools.cache(
            lambda _: jinja2.Environment(finalize=_finalize, **OPTIONS)
        )
    if variant != "load":
        server = next(iter(cluster.servers))
        render_all(RenderContext(Inventory(cluster, macs, {}), server, Path("/var/lib/dim")))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
