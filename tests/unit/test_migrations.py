"""The state DB's migrations, on SQLite and PostgreSQL: a DB that an earlier dim made opens with
every row, the migrations build exactly the tables dim.state declares, and opening a DB that
is up to date costs one query, not an import of Alembic."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from dim import migrations
from dim.errors import StateError
from dim.paths import StatePaths
from dim.state import VERSION_TABLE, Boot, StateDB, database_url, metadata

SOURCE = Path(__file__).resolve().parents[2] / "src"

# The tables as the releases before migrations made them (``metadata.create_all``), written
# out: dim.state's tables will change, what those releases left on disk will not.
FIRST = sa.MetaData()  # the first release: MACs, image overrides, events
sa.Table(
    "interface_macs",
    FIRST,
    sa.Column("node", sa.String, primary_key=True),
    sa.Column("network", sa.String, primary_key=True),
    sa.Column("mac", sa.String, nullable=False, unique=True),
)
sa.Table(
    "node_images",
    FIRST,
    sa.Column("node", sa.String, primary_key=True),
    sa.Column("image", sa.String, nullable=False),
)
sa.Table(
    "events",
    FIRST,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("node", sa.String, nullable=True, index=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("detail", sa.String, nullable=False, default=""),
)
LAST = sa.MetaData()  # the last release before migrations: two more
for table in FIRST.tables.values():
    table.to_metadata(LAST)
sa.Table(
    "stale_leases",
    LAST,
    sa.Column("node", sa.String, primary_key=True),
    sa.Column("network", sa.String, primary_key=True),
    sa.Column("mac", sa.String, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)
sa.Table(
    "boots",
    LAST,
    sa.Column("node", sa.String, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("image", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("client", sa.String, nullable=False),
)

MACS = [
    {"node": "c01", "network": "boot", "mac": "52:54:00:00:00:01"},
    {"node": "c02", "network": "boot", "mac": "52:54:00:00:00:02"},
]


def url_of(tmp_path: Path, database: str | None) -> str:
    return database or f"sqlite:///{StatePaths(tmp_path).db}"


def made_by_a_release(tmp_path: Path, database: str | None, schema: sa.MetaData) -> None:
    """A state DB as a release before migrations left it: its tables, some rows, no
    alembic_version."""
    engine = sa.create_engine(database_url(url_of(tmp_path, database)))
    schema.create_all(engine)
    with engine.begin() as conn:
        tables = schema.tables
        conn.execute(tables["interface_macs"].insert(), MACS)
        conn.execute(tables["node_images"].insert(), [{"node": "c02", "image": "beta"}])
        conn.execute(
            tables["events"].insert(), [{"at": 1.0, "node": "c01", "kind": "mac", "detail": "x"}]
        )
        if "boots" in tables:
            conn.execute(
                tables["stale_leases"].insert(),
                [{"node": "c01", "network": "boot", "mac": "52:54:00:00:09:01", "at": 2.0}],
            )
            conn.execute(
                tables["boots"].insert(),
                [{"node": "c01", "at": 3.0, "image": "alpha", "version": "4", "client": "x"}],
            )
    engine.dispose()


def revision(db: StateDB) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def test_a_db_of_the_last_release_before_migrations_opens_with_every_row(
    tmp_path, small_cluster, database
):
    made_by_a_release(tmp_path, database, LAST)
    db = StateDB.open(tmp_path, url=database)
    assert revision(db) == migrations.HEAD
    observed = db.observed()
    assert observed.macs == {("c01", "boot"): "52:54:00:00:00:01", ("c02", "boot"): MACS[1]["mac"]}
    assert observed.images == {"c02": "beta"}
    assert [(s.node, s.mac) for s in db.stale_leases()] == [("c01", "52:54:00:00:09:01")]
    assert db.last_boots() == {"c01": Boot("c01", "alpha", "4", "x", 3.0)}
    assert [(e.node, e.kind) for e in db.events()] == [("c01", "mac")]
    # and it takes changes: a new event's id follows the old ones
    assert db.set_macs(small_cluster, {("c03", "boot"): "52:54:00:00:00:03"}) == 1
    assert [e.node for e in db.events()] == ["c03", "c01"]


def test_a_db_of_the_first_release_gets_the_tables_it_lacked(tmp_path, small_cluster, database):
    made_by_a_release(tmp_path, database, FIRST)
    db = StateDB.open(tmp_path, url=database)
    assert len(db.observed().macs) == 2 and db.stale_leases() == [] and db.last_boots() == {}
    db.record_boots([Boot("c01", "alpha", "1", "10.0.0.1", 5.0)])
    db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:01:01"})
    assert [s.mac for s in db.stale_leases()] == ["52:54:00:00:00:01"]
    assert db.last_boots()["c01"].at == 5.0


def test_the_migrations_build_exactly_the_tables_dim_state_declares(tmp_path, database):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db = StateDB.open(tmp_path, url=database)  # a new DB: made by the migrations
    with db.engine.connect() as conn:
        difference = compare_metadata(MigrationContext.configure(conn), metadata)
    # a table of dim.state changed without a migration: write one (see dim.migrations)
    assert difference == []


def test_head_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrations.config())
    assert scripts.get_heads() == [migrations.HEAD]


def test_opening_an_up_to_date_db_does_not_import_alembic(tmp_path, database):
    StateDB.open(tmp_path, url=database)
    program = (
        "import sys; from pathlib import Path; from dim.state import StateDB; "
        f"StateDB.open(Path({str(tmp_path)!r}), url={database!r}); "
        "print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_commands_that_open_an_old_db_at_once_migrate_it_once(tmp_path, database):
    made_by_a_release(tmp_path, database, FIRST)
    errors: list[Exception] = []

    def open_it() -> None:
        try:
            StateDB.open(tmp_path, url=database).observed()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(StateDB.open(tmp_path, url=database).observed().macs) == 2


def test_a_db_that_a_newer_dim_migrated_is_refused_unchanged(tmp_path, database):
    db = StateDB.open(tmp_path, url=database)
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(StateError, match="cannot upgrade the state DB.*9999") as caught:
        StateDB.open(tmp_path, url=database)
    assert "newer dim" in caught.value.hint
    assert revision(db) == "9999"
