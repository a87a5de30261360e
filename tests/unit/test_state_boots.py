"""The state DB's boot records: the MAC lookup of the boot service and each node's last boot."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from dim.state import Boot, BootTarget, StateDB


def test_boot_target_names_the_interface_and_the_image_override(small_cluster, tmp_path, database):
    db = StateDB.open(tmp_path, url=database)
    db.set_macs(
        small_cluster,
        {("c01", "boot"): "52:54:00:00:00:01", ("c02", "boot"): "52:54:00:00:00:02"},
    )
    db.set_images(small_cluster, ["c02"], "beta")
    assert db.boot_target("52:54:00:00:00:01") == BootTarget("c01", "boot", None)
    assert db.boot_target("52:54:00:00:00:02") == BootTarget("c02", "boot", "beta")
    assert db.boot_target("52:54:00:00:00:99") is None


def test_record_boots_logs_events_and_keeps_each_nodes_latest(tmp_path, database):
    db = StateDB.open(tmp_path, url=database)
    db.record_boots(
        [
            Boot("c01", "alpha", "3", "10.10.0.11", at=100.0),
            Boot("c02", "beta", "1", "10.10.0.12", at=101.0),
            Boot("c01", "alpha", "4", "10.10.0.11", at=102.0),
        ]
    )
    db.record_boots([Boot("c02", "alpha", "4", "10.10.0.12", at=103.0)])
    boots = db.last_boots()
    assert boots["c01"] == Boot("c01", "alpha", "4", "10.10.0.11", at=102.0)
    assert boots["c02"].image == "alpha" and boots["c02"].at == 103.0
    events = [(e.node, e.kind, e.detail) for e in db.events()]
    assert events == [
        ("c02", "boot", "alpha v4 from 10.10.0.12"),
        ("c01", "boot", "alpha v4 from 10.10.0.11"),
        ("c02", "boot", "beta v1 from 10.10.0.12"),
        ("c01", "boot", "alpha v3 from 10.10.0.11"),
    ]


def test_a_boot_lookup_does_not_wait_for_a_writer(small_cluster, tmp_path, database):
    db = StateDB.open(tmp_path, url=database)
    db.set_macs(small_cluster, {("c01", "boot"): "52:54:00:00:00:01"})
    holding, release = threading.Event(), threading.Event()

    def writer():
        with db._transaction() as conn:  # holds SQLite's write lock until released
            conn.execute(sa.text("INSERT INTO events (at, kind, detail) VALUES (0, 'test', '')"))
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(5)
        assert db.boot_target("52:54:00:00:00:01").node == "c01"
        # answered while the writer still held the lock: it did not wait for it
        assert thread.is_alive() and not release.is_set()
    finally:
        release.set()
        thread.join()


def test_last_boots_of_a_db_without_any_boot_is_empty(tmp_path, database):
    assert StateDB.open(tmp_path, url=database).last_boots() == {}
