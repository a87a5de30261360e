"""A whole ``python -m dim`` process and the modules it imported, read from ``python -X
importtime`` (for the start-up tests: what a command imports is its start-up's cost)::

    run = dim_process(["--version"])
    assert run.status == 0 and "click" not in run.roots

The process runs this tree's dim (``src`` first on PYTHONPATH), never in shell-completion mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PREFIX = "import time:"


@dataclass(frozen=True)
class DimProcess:
    status: int
    stdout: str
    stderr: str  # without importtime's lines
    modules: set[str]  # every module imported, by its full name

    @property
    def roots(self) -> set[str]:
        """The top-level packages imported: ``dim``, ``click``, ``lxml``…"""
        return {name.split(".")[0] for name in self.modules}


def dim_process(argv: list[str], env: dict[str, str] | None = None) -> DimProcess:
    """``python -X importtime -m dim ARGV`` with ``env`` added to this environment."""
    environment = {**os.environ, "PYTHONPATH": str(SOURCE), **(env or {})}
    environment.pop("_DIM_COMPLETE", None)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dim", *argv],
        env=environment,
        capture_output=True,
        text=True,
    )
    lines = done.stderr.splitlines()
    # "import time: self [us] | cumulative | imported package": the header names no module
    timed = [ln for ln in lines if ln.startswith(PREFIX) and not ln.endswith("imported package")]
    other = "".join(f"{ln}\n" for ln in lines if not ln.startswith(PREFIX))
    modules = {ln.rsplit("|", 1)[1].strip() for ln in timed}
    return DimProcess(done.returncode, done.stdout, other, modules)
