"""The NFS sessions each image server's dim serve records in the shared state DB."""

from __future__ import annotations

from dim.actions import status
from dim.actions.context import Context
from dim.records import NfsSession, read_nfs_sessions
from dim.services import sessions
from dim.state import StateDB

NOW = 1_800_000_000.0


def test_each_server_replaces_its_own_sessions_and_a_time_alone_keeps_them(tmp_path, database):
    db = StateDB.open(tmp_path, url=database)
    db.record_nfs_sessions("srv1", {"10.0.1.11": "10.0.0.1", "10.0.1.12": "10.0.0.1"}, NOW)
    db.record_nfs_sessions("srv2", {"10.0.1.13": "10.0.0.2"}, NOW)
    db.record_nfs_sessions("srv1", {"10.0.1.12": "10.0.0.2"}, NOW + 5)  # 11 left, 12 moved
    db.record_nfs_sessions("srv2", None, NOW + 5)
    seen = db.nfs_sessions(NOW + 1)
    assert seen.clients == {
        "10.0.1.12": NfsSession("10.0.0.2", "srv1"),
        "10.0.1.13": NfsSession("10.0.0.2", "srv2"),
    }
    assert seen.servers == {"srv1": NOW + 5, "srv2": NOW + 5}


def test_a_server_that_stopped_recording_goes_stale_with_its_sessions(tmp_path, database):
    db = StateDB.open(tmp_path, url=database)
    db.record_nfs_sessions("srv1", {"10.0.1.11": "10.0.0.1"}, NOW)
    db.record_nfs_sessions("srv2", {}, NOW + 30)
    seen = db.nfs_sessions(NOW + 30 - sessions.FRESH)
    assert (seen.clients, list(seen.servers)) == ({}, ["srv2"])  # srv2 read none: known, empty


def test_the_fast_sqlite_reader_reads_what_the_state_db_wrote(tmp_path):
    db = StateDB.open(tmp_path)
    db.record_nfs_sessions("srv1", {"10.0.1.11": "10.0.0.1"}, NOW)
    db.record_nfs_sessions("srv2", {"10.0.1.12": "10.0.0.2"}, NOW - 60)
    assert read_nfs_sessions(tmp_path / "state.db", NOW - 1) == db.nfs_sessions(NOW - 1)


def test_a_db_without_the_tables_has_no_sessions(tmp_path):
    seen = read_nfs_sessions(tmp_path / "state.db", 0)
    assert (seen.clients, seen.servers) == ({}, {})


def test_node_status_names_the_server_that_holds_each_node(tmp_path, layout_file):
    ctx = Context(config=layout_file, state=tmp_path / "state")
    node = ctx.inventory().cluster.nodes[0]
    db = ctx.db()
    db.record_nfs_sessions("srv2", {node.interfaces[0].ip: "10.0.0.2"}, NOW)
    found = status.live_sessions(ctx, ["none"], now=NOW + 1)
    report = status.statuses(ctx, sessions=found, now=NOW + 1)
    first = report.nodes[0].record()
    assert (first["state"], first["session"], first["session_server"]) == (
        "up",
        "10.0.0.2",
        "srv2",
    )
    assert report.record()["sessions_from"] == ["srv2"]
    assert {n.state for n in report.nodes[1:]} == {"unknown"}  # never booted, no session


def test_without_a_fresh_server_or_a_readable_one_here_sessions_are_unknown(tmp_path, layout_file):
    ctx = Context(config=layout_file, state=tmp_path / "state")
    ctx.db().record_nfs_sessions("srv1", {}, NOW - 60)
    assert status.live_sessions(ctx, ["none"], now=NOW) is None
