"""The boot targets file: what dim apply writes is what dim serve reads back, a few nodes'
rows are replaced alone, and a file it did not write is refused rather than half read."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from dim.boot.targets import Snapshot, journal, update, write
from dim.paths import StatePaths
from dim.records import BootTarget

MACS = {("c01", "boot"): "52:54:00:00:00:01", ("c02", "data"): "52:54:00:00:00:02"}


def test_what_is_written_is_read_back_and_read_again_when_it_changes(tmp_path):
    paths = StatePaths(tmp_path)
    write(paths, MACS, {"c01": "beta"}, journal=3)
    snapshot = Snapshot(paths.boot_targets)
    assert snapshot.target("52:54:00:00:00:01") == BootTarget("c01", "boot", "beta")
    assert snapshot.target("52:54:00:00:00:02") == BootTarget("c02", "data", None)
    write(paths, MACS, {}, journal=4)
    assert snapshot.target("52:54:00:00:00:01") == BootTarget("c01", "boot", None)
    assert snapshot.target("52:54:00:00:00:99") is None
    assert journal(paths) == 4


def test_a_full_write_over_other_targets_leaves_exactly_the_new_ones(tmp_path):
    paths = StatePaths(tmp_path)
    before = {(f"c{k:02}", "boot"): f"52:54:00:00:00:{k:02x}" for k in range(1, 7)}
    write(paths, before, {"c02": "beta"}, journal=3)
    # c01 kept; c02 loses its image; c03 moves to another MAC; c04 to another network;
    # c05 and c06 gone; c07 new, on c06's old MAC
    after = {
        ("c01", "boot"): "52:54:00:00:00:01",
        ("c02", "boot"): "52:54:00:00:00:02",
        ("c03", "boot"): "52:54:00:00:00:33",
        ("c04", "data"): "52:54:00:00:00:04",
        ("c07", "boot"): "52:54:00:00:00:06",
    }
    write(paths, after, {}, journal=4)
    assert Snapshot(paths.boot_targets).targets() == {
        "52:54:00:00:00:01": BootTarget("c01", "boot", None),
        "52:54:00:00:00:02": BootTarget("c02", "boot", None),
        "52:54:00:00:00:33": BootTarget("c03", "boot", None),
        "52:54:00:00:00:04": BootTarget("c04", "data", None),
        "52:54:00:00:00:06": BootTarget("c07", "boot", None),
    }
    assert journal(paths) == 4


def test_a_full_write_removes_the_json_file_of_earlier_dims(tmp_path):
    paths = StatePaths(tmp_path)
    legacy = tmp_path / "boot-targets.json"
    legacy.write_text("{}")
    update(paths, ["c01"], MACS, {}, journal=1)
    assert legacy.exists()  # a one-node update leaves what a full apply will remove
    write(paths, MACS, {}, journal=2)
    assert not legacy.exists()
    assert journal(paths) == 2


def test_one_snapshot_answers_lookups_from_several_threads(tmp_path):
    """dim serve looks up from its thread pool: SQLite refuses a connection of another thread."""
    paths = StatePaths(tmp_path)
    write(paths, MACS, {"c01": "beta"}, journal=3)
    snapshot = Snapshot(paths.boot_targets)
    assert snapshot.target("52:54:00:00:00:01") == BootTarget("c01", "boot", "beta")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(snapshot.target, ["52:54:00:00:00:02"] * 16))
    assert answers == [BootTarget("c02", "data", None)] * 16


def test_an_update_replaces_the_named_nodes_rows_and_leaves_the_others(tmp_path):
    paths = StatePaths(tmp_path)
    write(paths, MACS, {}, journal=3)
    snapshot = Snapshot(paths.boot_targets)
    assert snapshot.target("52:54:00:00:00:01") == BootTarget("c01", "boot", None)
    # c01's MAC replaced and an image assigned; c03 new; c02 not named: kept as it was
    now = {("c01", "boot"): "52:54:00:00:00:11", ("c03", "boot"): "52:54:00:00:00:03"}
    update(paths, ["c01", "c03"], now | {("c02", "data"): "ignored"}, {"c01": "beta"}, journal=7)
    assert snapshot.targets() == {
        "52:54:00:00:00:02": BootTarget("c02", "data", None),
        "52:54:00:00:00:03": BootTarget("c03", "boot", None),
        "52:54:00:00:00:11": BootTarget("c01", "boot", "beta"),
    }
    assert journal(paths) == 7


def test_a_file_this_dim_did_not_write_is_refused_and_written_anew(tmp_path):
    paths = StatePaths(tmp_path)
    paths.boot_targets.write_bytes(b'{"version": 1, "targets": {}}')  # an older dim's JSON
    with pytest.raises(ValueError):
        Snapshot(paths.boot_targets).target("52:54:00:00:00:01")
    assert journal(paths) is None
    write(paths, MACS, {}, journal=1)
    assert Snapshot(paths.boot_targets).target("52:54:00:00:00:02") is not None


def test_a_database_of_another_format_is_refused(tmp_path):
    paths = StatePaths(tmp_path)
    with sqlite3.connect(paths.boot_targets) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('format', '2')")
    with pytest.raises(ValueError):
        Snapshot(paths.boot_targets).target("52:54:00:00:00:01")
    assert journal(paths) is None


def test_without_a_file_the_snapshot_says_so():
    with pytest.raises(FileNotFoundError):
        Snapshot(StatePaths("/nonexistent").boot_targets).target("52:54:00:00:00:01")
