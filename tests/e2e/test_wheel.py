"""dim as users install it: an sdist and a wheel built, the wheel installed into a fresh virtual
environment outside the checkout, and its ``dim lab`` boots a node from nothing but the package.

``python -m build`` makes the sdist first and the wheel from the unpacked sdist, so a file left
out of either (a template, the schema, ``/init``, the lab's layout) fails here. Every command
runs from a folder outside the checkout, without ``PYTHONPATH``: only the installed package can
answer. The lab has a namespace of its own (``dimwhl<pid>``) and is taken down by its process
ids at the end, failed or not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.conftest import require_e2e

CHECKOUT = Path(__file__).resolve().parents[2]
PACKAGE_DATA = (
    "dim/lab/lab.xml",
    "dim/layout/cluster.rng",
    "dim/boot/init.sh",
    "dim/boot/udhcpc.sh",
    "dim/templates/dnsmasq.conf.j2",
    "dim/templates/ganesha.conf.j2",
    "dim/power/snmp_profiles.toml",
    "dim/migrations/env.py",
    "dim/migrations/versions/0001_baseline.py",
)


def _clean_environment() -> dict[str, str]:
    """This process's environment without what would let the checkout answer for the wheel."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "DIM_CONFIG", "DIM_STATE", "DIM_LAB")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=_clean_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited with {result.returncode}:\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv holding dim's wheel (and its dependencies) only."""
    require_e2e()
    require(_has_build(), "the build package is missing (pip install build)")
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(CHECKOUT)], cwd=work)
    wheels = sorted(dist.glob("dim-*.whl"))
    assert len(wheels) == 1 and sorted(dist.glob("dim-*.tar.gz")), sorted(dist.iterdir())
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    assert [f for f in PACKAGE_DATA if f not in names] == []
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], cwd=work)
    return venv / "bin"


def _has_build() -> bool:
    try:
        import build  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def wheel_lab(installed: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(the installed dim, the lab folder); the lab is taken down whatever happens."""
    folder = tmp_path / "lab"
    try:
        yield installed / "dim", folder
    finally:
        subprocess.run(
            [str(installed / "dim"), "lab", "down", "--dir", str(folder)],
            cwd=tmp_path,
            env=_clean_environment(),
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_installed_wheel_runs_from_its_own_site_packages(installed: Path, tmp_path: Path) -> None:
    where = _run(
        [str(installed / "python"), "-c", "import dim; print(dim.__file__)"], cwd=tmp_path
    ).stdout.strip()
    assert where.startswith(str(installed.parent)) and "site-packages" in where, where
    assert not where.startswith(str(CHECKOUT))
    assert "dim, version" in _run([str(installed / "dim"), "--version"], cwd=tmp_path).stdout
    # answered without click (dim.helptext), from the wheel's own copy of the command table
    assert (
        "  node       Nodes: list them"
        in _run([str(installed / "dim"), "--help"], cwd=tmp_path).stdout
    )


def test_installed_wheel_brings_up_a_lab_and_boots_a_node(
    wheel_lab: tuple[Path, Path], tmp_path: Path
) -> None:
    dim, folder = wheel_lab
    lab = ["--dir", str(folder)]
    up = _run(
        # no BMCs: the session's lab holds the loopback BMC addresses
        [str(dim), "lab", "up", *lab, "--nodes", "1", "--namespace", f"dimwhl{os.getpid()}"]
        + ["--no-bmcs"],
        cwd=tmp_path,
    )
    assert "lab up in" in up.stdout
    booted = _run([str(dim), "lab", "boot", *lab, "node01", "--timeout", "240"], cwd=tmp_path)
    assert "up: node01" in booted.stdout, booted.stdout
    ran = subprocess.run(
        [str(dim), "lab", "run", *lab, "node01", "--", "sh", "-c", "hostname; exit 3"],
        cwd=tmp_path,
        env=_clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (ran.returncode, ran.stdout.strip()) == (3, "node01"), ran.stderr
    down = _run([str(dim), "lab", "down", *lab], cwd=tmp_path)
    assert "node01" in down.stdout and "ganesha" in down.stdout, down.stdout
