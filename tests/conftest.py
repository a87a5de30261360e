"""Shared test policy: a test may skip on a laptop without root or a daemon, never under CI;
and the state DB on each backend (:func:`database`), with a real PostgreSQL server.

Call :func:`require` at the start of a test (or fixture) that needs something of the machine::

    require(shutil.which("kea-dhcp4") is not None, "kea-dhcp4 is not installed")

With ``CI=true`` in the environment every skip is a failure, however it comes about:
``require``, a bare ``pytest.skip``, a ``skipif`` or ``skip`` mark, ``pytest.importorskip``,
a module-level skip or a plugin's skip. The hooks below turn each skipped report into a
failed one, so CI can never pass by running nothing. The one way out is
:data:`ALLOWED_TO_SKIP_IN_CI`, a list kept here, in review, with a reason per entry; it is
empty and should stay so. Expected failures (``xfail``) are not skips and stay as they are.

A hang fails the test that hangs: pytest-timeout (``[tool.pytest.ini_options]`` in
pyproject.toml) gives every test 600 s, enough for the first e2e test, which pays for the
lab's start and the fleet's boot; unit tests get :data:`UNIT_TIMEOUT`. The ``signal`` method
raises in the test, so session fixtures (the e2e lab) still stop what they started.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dim.lab.postgres import Server

IN_CI = os.environ.get("CI", "").lower() == "true"

# Node ids (``tests/e2e/test_x.py::test_y``) allowed to skip under CI=true, each with why.
ALLOWED_TO_SKIP_IN_CI: dict[str, str] = {}

UNIT_TIMEOUT = 120  # seconds; a unit test takes well under ten, even on a loaded machine
UNIT = Path(__file__).resolve().parent / "unit"


def require(condition: bool, reason: str) -> None:
    """Skip (laptop) or fail (CI) unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces, daemons)")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (apt-get install {package})")
    return path


def require_postgres() -> None:
    """PostgreSQL 15's server and the psycopg driver, which the state DB tests need."""
    from dim.lab import postgres

    require(postgres.available(), "PostgreSQL 15 is not installed (apt-get install postgresql-15)")
    found = importlib.util.find_spec("psycopg") is not None
    require(found, "psycopg is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    """One throwaway PostgreSQL server for the session, started when a test first asks for it
    (1.5 s), stopped by its process id and deleted at the end."""
    from dim.lab import postgres

    require_postgres()
    # not below pytest's tmp_path: /tmp/pytest-of-root is 0700, and the server runs as postgres
    server = postgres.start(Path(tempfile.mkdtemp(prefix="dim-test-pg-")))
    try:
        yield server
    finally:
        postgres.remove(server)


_databases = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The ``--database`` of a test, once per backend: None (SQLite, ``state.db`` in the state
    folder, the default) or the URL of a new, empty PostgreSQL database, dropped after it."""
    if request.param == "sqlite":
        yield None
        return
    from dim.lab import postgres

    server = request.getfixturevalue("postgres_server")
    name = f"test_{next(_databases)}"
    url = postgres.create_database(server, name)
    try:
        yield url
    finally:
        postgres.drop_database(server, name)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_the_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"{report.nodeid}: skipped under CI=true, which counts as a failure "
        f"({_skip_reason(report)}); see tests/conftest.py"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI=true a skipped setup, call or teardown is a failed one."""
    report = yield
    if (
        IN_CI
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.nodeid not in ALLOWED_TO_SKIP_IN_CI
    ):
        _fail_the_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Under CI=true a module that skips itself (``importorskip``, ``allow_module_level``)
    is a collection error."""
    report = yield
    if IN_CI and report.skipped and collector.nodeid not in ALLOWED_TO_SKIP_IN_CI:
        _fail_the_skip(report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit tests get a shorter timeout than the default, unless they set their own."""
    for item in items:
        if item.get_closest_marker("timeout") is None and UNIT in Path(item.path).parents:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))
