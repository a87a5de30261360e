"""The one-node change (issue 14) as whole processes: `dim node set NODE --mac` and the `dim
apply` after it import no SQLAlchemy on an SQLite state DB that is up to date, and the apply
renders that node alone. Behaviour, not timing (bench/onechange.py measures the time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[3] / "src"


def dim(layout_file: Path, state: Path, *argv: str) -> tuple[str, set[str]]:
    """stdout of a whole ``python -m dim`` process, and the modules it imported."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dim", "--config", str(layout_file)]
        + ["--state", str(state), *argv],
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:")]
    return run.stdout, {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


def packages(modules: set[str]) -> set[str]:
    """Each module's package and the packages above it: {"dim", "dim.images"} of
    "dim.images.store"."""
    return {m.rsplit(".", depth)[0] for m in modules for depth in range(m.count(".") + 1)}


def test_node_set_and_the_apply_after_it_import_no_sqlalchemy_parser_nor_template_engine(
    layout_file, tmp_path
):
    """The apply's files are the node's loader links (none: every loader is iPXE) and its
    line of dnsmasq's hosts file, whose template has a compiled function: nothing is rendered
    by Jinja2; and no node lacks a replica, so nothing of what makes one is imported."""
    state, root = tmp_path / "state", str(tmp_path / "root")
    dim(layout_file, state, "node", "set", "c01", "--mac", "52:54:00:00:00:01")  # makes the DB
    dim(layout_file, state, "apply", "--root", root, "--no-reload", "--skip-validation")
    out, modules = dim(layout_file, state, "node", "set", "c02", "--mac", "52:54:00:00:00:02")
    assert out.startswith("c02 (boot): MAC 52:54:00:00:00:02")
    # nor the layout's parser: the node and the declarations come from the cache
    assert not packages(modules) & {"sqlalchemy", "alembic", "lxml", "ClusterShell"}
    argv = ("apply", "--root", root, "--no-reload", "--skip-validation")
    out, modules = dim(layout_file, state, *argv)
    assert not packages(modules) & {"sqlalchemy", "alembic", "jinja2", "lxml", "ClusterShell"}
    assert "dim.images.operations" not in modules  # no replica to make
    assert "(0 created, 1 updated, 0 removed)" in out  # c02's line of the hosts file
