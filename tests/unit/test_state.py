import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from dim.actions.context import Context
from dim.errors import StateError, StateUnavailable
from dim.names import normalize_mac
from dim.state import StateDB, database_url, parse_mac_csv


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("52:54:00:AB:cd:ef", "52:54:00:ab:cd:ef"),
        ("52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef"),
        ("525400abcdef", "52:54:00:ab:cd:ef"),
        (" 52:54:00:ab:cd:ef\n", "52:54:00:ab:cd:ef"),
    ],
)
def test_mac_forms_are_normalized(text, expected):
    assert normalize_mac(text) == expected


@pytest.mark.parametrize("text", ["52:54:00:ab:cd", "52:54:00:ab:cd:eg", "52:54-00:ab:cd:ef", ""])
def test_malformed_mac_is_refused(text):
    with pytest.raises(ValueError, match="malformed MAC"):
        normalize_mac(text)


def test_database_uses_wal_mode(tmp_path):
    db = StateDB.open(tmp_path)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_macs_are_recorded_and_read_back(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    assert db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:00:01"}) == 1
    assert db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:00:01"}) == 0
    assert db.observed().macs == {("c01", "boot"): "52:54:00:00:00:01"}
    assert [e.kind for e in db.events("c01")] == ["mac"]


def test_duplicate_mac_is_refused_and_nothing_changes(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:00:01"})
    with pytest.raises(StateError, match="duplicate MAC address 52:54:00:00:00:01: c01"):
        db.set_macs(
            small_cluster,
            {("c02", "boot"): "52:54:00:00:00:02", ("c03", "boot"): "52:54:00:00:00:01"},
        )
    assert db.observed().macs == {("c01", "boot"): "52:54:00:00:00:01"}


def test_macs_can_be_swapped_in_one_change(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    a, b = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
    db.set_macs(small_cluster, {("c01", "boot"): a, ("c02", "boot"): b})
    db.set_macs(small_cluster, {("c01", "boot"): b, ("c02", "boot"): a})
    assert db.observed().macs == {("c01", "boot"): b, ("c02", "boot"): a}


def stale(db):
    return [(s.node, s.network, s.mac) for s in db.stale_leases()]


def test_a_first_mac_records_no_stale_lease(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:00:01"})
    assert db.stale_leases() == []


def test_a_replaced_mac_is_recorded_as_a_stale_lease(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:00:01"})
    db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:00:01"})  # no change
    assert db.stale_leases() == []
    db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:01:01"})
    (lease,) = db.stale_leases()
    assert (lease.node, lease.network, lease.mac) == ("c01", "boot", "52:54:00:00:00:01")
    assert lease.at > 0


def test_swapping_two_macs_records_both_old_ones(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    a, b = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
    db.set_macs(small_cluster, {("c01", "boot"): a, ("c02", "boot"): b})
    db.set_macs(small_cluster, {("c01", "boot"): b, ("c02", "boot"): a})
    assert sorted(stale(db)) == [("c01", "boot", a), ("c02", "boot", b)]


def test_a_mac_set_back_is_no_longer_stale(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    a, b, c = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
    db.set_macs(small_cluster, {("c01", "boot"): a})
    db.set_macs(small_cluster, {("c01", "boot"): b})
    db.set_macs(small_cluster, {("c01", "boot"): a})
    assert stale(db) == [("c01", "boot", b)]
    db.set_macs(small_cluster, {("c01", "boot"): c})
    db.set_macs(small_cluster, {("c01", "boot"): b})
    assert sorted(stale(db)) == [("c01", "boot", a), ("c01", "boot", c)]


def test_forgotten_stale_leases_are_gone_and_others_stay(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    db.set_macs(
        small_cluster, {("c01", "boot"): "52:54:00:00:00:01", ("c02", "boot"): "52:54:00:00:00:02"}
    )
    db.set_macs(
        small_cluster, {("c01", "boot"): "52:54:00:00:01:01", ("c02", "boot"): "52:54:00:00:01:02"}
    )
    first = next(s for s in db.stale_leases() if s.node == "c01")
    db.forget_stale_leases([first])
    db.forget_stale_leases([])
    assert stale(db) == [("c02", "boot", "52:54:00:00:00:02")]


def test_a_state_db_without_the_stale_lease_table_has_none(tmp_path, database):
    db = StateDB.open(tmp_path, url=database)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE stale_leases")
    assert StateDB.open(tmp_path, url=database, create=False).stale_leases() == []


def test_unknown_node_or_network_is_refused(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    with pytest.raises(StateError, match="unknown node 'zz'"):
        db.set_macs(small_cluster, {("zz", "boot"): "52:54:00:00:00:01"})
    with pytest.raises(StateError, match="no interface on network 'bmc'"):
        db.set_macs(small_cluster, {("c01", "bmc"): "52:54:00:00:00:01"})


def test_image_assignment_overrides_and_clears(tmp_path, small_cluster, database):
    db = StateDB.open(tmp_path, url=database)
    assert db.set_images(small_cluster, ["c01", "c02"], "beta") == 2
    assert db.observed().images == {"c01": "beta", "c02": "beta"}
    assert db.set_images(small_cluster, ["c01"], "alpha") == 1
    assert db.observed().images == {"c02": "beta"}
    with pytest.raises(StateError, match="unknown image"):
        db.set_images(small_cluster, ["c01"], "gamma")


def test_concurrent_writers_lose_no_update(tmp_path, small_cluster, database):
    StateDB.open(tmp_path, url=database)
    errors = []

    def record(node: str, mac: str) -> None:
        try:
            StateDB.open(tmp_path, url=database).set_macs(small_cluster, {(node, "boot"): mac})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=record, args=(f"c0{i}", f"52:54:00:00:00:0{i}"))
        for i in range(1, 5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(StateDB.open(tmp_path, url=database).observed().macs) == 4


def test_csv_import_checks_the_whole_file(small_cluster):
    text = "node,mac\nc01,52:54:00:00:00:01\nc02,52-54-00-00-00-02,boot\n\n# comment\n"
    assert parse_mac_csv(text, "m.csv", small_cluster) == {
        ("c01", "boot"): "52:54:00:00:00:01",
        ("c02", "boot"): "52:54:00:00:00:02",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("c01,52:54:00:00:00:01\nzz,52:54:00:00:00:02\n", "m.csv:2: unknown node 'zz'"),
        ("c01,52:54:00:00:00:0x\n", "m.csv:1: malformed MAC"),
        ("c01,52:54:00:00:00:01\nc02,52:54:00:00:00:01\n", "m.csv:2: duplicate MAC"),
        ("c01,52:54:00:00:00:01\nc01,52:54:00:00:00:02\n", "m.csv:2: node c01 (boot) appears"),
        ("c01\n", "m.csv:1: expected node,mac"),
    ],
)
def test_bad_csv_is_refused_with_file_and_line(small_cluster, text, message):
    with pytest.raises(StateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_mac_csv(text, "m.csv", small_cluster)


def test_a_writer_waits_for_the_one_holding_the_write_lock(tmp_path, small_cluster, database):
    _writer_waits(tmp_path, small_cluster, database, "sqlalchemy")


def test_the_sqlite3_writer_of_dim_node_set_waits_for_the_write_lock_too(tmp_path, small_cluster):
    _writer_waits(tmp_path, small_cluster, None, "sqlite3")


def _writer_waits(tmp_path, small_cluster, database, writer) -> None:
    holder = StateDB.open(tmp_path, url=database)
    holding, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with holder._transaction() as conn:  # BEGIN IMMEDIATE, or the advisory lock
            conn.execute(sa.text("INSERT INTO events (at, kind, detail) VALUES (0, 'test', '')"))
            holding.set()
            release.wait(10)

    def write() -> None:
        change = {("c01", "boot"): "52:54:00:00:00:01"}
        if writer == "sqlite3":  # dim node set's own: no SQLAlchemy
            Context(config=tmp_path / "unused.xml", state=tmp_path).set_macs(small_cluster, change)
        else:
            StateDB.open(tmp_path, url=database).set_macs(small_cluster, change)
        done.set()

    threads = [threading.Thread(target=hold), threading.Thread(target=write)]
    threads[0].start()
    try:
        assert holding.wait(5)
        threads[1].start()
        assert not done.wait(0.5)  # queued behind the lock
        assert holder.observed().macs == {}  # a read does not wait
    finally:
        release.set()
        for thread in threads:
            thread.join(10)
    assert done.is_set()
    assert holder.observed().macs == {("c01", "boot"): "52:54:00:00:00:01"}


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://dim:pw@db1/dim", "postgresql+psycopg"),
        ("postgresql+psycopg://dim:pw@db1:5433/dim", "postgresql+psycopg"),
        ("sqlite:////var/lib/dim/state.db", "sqlite"),
    ],
)
def test_a_postgresql_url_means_psycopg_3(url, driver):
    assert database_url(url).drivername == driver


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://dim:s3cret@db1/dim", "unsupported state DB mysql://dim:\\*\\*\\*@db1/dim"),
        ("dim:s3cret@db1", "the state DB's URL is malformed$"),
    ],
)
def test_a_url_of_another_kind_or_malformed_is_refused_without_its_password(url, message):
    with pytest.raises(StateError, match=message) as caught:
        database_url(url)
    assert "s3cret" not in str(caught.value)


def test_an_unreachable_server_is_unavailable_and_its_password_never_shown(monkeypatch):
    monkeypatch.setattr("dim.state.CONNECT_TIMEOUT", 2)
    with pytest.raises(StateUnavailable, match="127.0.0.1:1/dim") as caught:
        StateDB.connect("postgresql://dim:s3cret@127.0.0.1:1/dim")
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
    assert caught.value.exit_status == 1 and "server up" in caught.value.hint


def test_a_wrong_password_is_refused_without_being_shown(postgres_server):
    wrong = postgres_server.url.replace(postgres_server.password, "s3cret")
    with pytest.raises(StateUnavailable, match="password authentication failed") as caught:
        StateDB.connect(wrong)
    assert "s3cret" not in str(caught.value) and postgres_server.password not in str(caught.value)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_the_role_needs_no_more_than_its_own_database(database, small_cluster):
    db = StateDB.open(Path("/nonexistent"), url=database)
    with db.engine.connect() as conn:
        superuser, createdb = conn.execute(
            sa.text("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert not superuser and not createdb
    assert db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:00:01"}) == 1
