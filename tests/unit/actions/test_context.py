"""The Context makes its paths absolute once, whoever builds it (the CLI, the lab, a test)."""

from pathlib import Path

import pytest

from dim.actions import nodes
from dim.actions.context import Context
from dim.paths import StatePaths
from dim.records import Boot, sqlite_file


def test_relative_paths_are_made_absolute_against_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctx = Context(config=Path("conf/cluster.xml"), state=Path("relative/../state"))
    assert ctx.config == tmp_path / "conf/cluster.xml"
    assert ctx.state == tmp_path / "state"
    assert ctx.template_dir == tmp_path / "conf/templates"
    assert ctx.store().root == tmp_path / "state"


def test_every_read_and_write_goes_to_the_database_of_the_context(layout_file, tmp_path, database):
    ctx = Context(config=layout_file, state=tmp_path / "state", database=database)
    assert ctx.observed().macs == {} and ctx.last_boots() == {} and ctx.stale_leases() == []
    nodes.set_mac(ctx, "c01", "52:54:00:00:00:01")
    nodes.set_mac(ctx, "c01", "52:54:00:00:01:01")
    ctx.db().record_boots([Boot("c01", "alpha", "3", "10.10.0.11", 1.0)])
    assert ctx.inventory().macs == {("c01", "boot"): "52:54:00:00:01:01"}
    assert [s.mac for s in ctx.stale_leases()] == ["52:54:00:00:00:01"]
    assert ctx.last_boots()["c01"].version == "3"
    # the SQLite file of the state folder is the DB exactly when no other is named
    assert StatePaths(ctx.state).db.exists() == (database is None)


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        (None, "STATE/state.db"),
        ("sqlite:////var/lib/other.db", "/var/lib/other.db"),
        ("sqlite+pysqlite:///relative.db?timeout=5", "relative.db"),
        ("sqlite://", None),
        ("postgresql://dim:pw@db1/dim", None),
        ("postgresql+psycopg://dim@db1/dim", None),
    ],
)
def test_sqlite_is_read_from_its_file_and_any_other_db_through_sqlalchemy(database, expected):
    found = sqlite_file(Path("STATE"), database)
    assert found == (Path(expected) if expected else None)
