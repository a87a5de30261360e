"""The boot targets file: what dim apply writes is what dim serve reads back, and a file it did
not write is refused rather than half read."""

from __future__ import annotations

import pytest

from dim.boot.targets import Snapshot, parse, render, write
from dim.paths import StatePaths
from dim.records import BootTarget

MACS = {("c01", "boot"): "52:54:00:00:00:01", ("c02", "data"): "52:54:00:00:00:02"}


def test_what_is_written_is_read_back_and_read_again_when_it_changes(tmp_path):
    paths = StatePaths(tmp_path)
    write(paths, MACS, {"c01": "beta"})
    snapshot = Snapshot(paths.boot_targets)
    assert snapshot.target("52:54:00:00:00:01") == BootTarget("c01", "boot", "beta")
    assert snapshot.target("52:54:00:00:00:02") == BootTarget("c02", "data", None)
    write(paths, MACS, {})
    assert snapshot.target("52:54:00:00:00:01") == BootTarget("c01", "boot", None)
    assert snapshot.target("52:54:00:00:00:99") is None


@pytest.mark.parametrize(
    "content",
    [b"", b"[]", b'{"version": 2, "targets": {}}', b'{"version": 1, "targets": {"m": [1]}}'],
)
def test_a_file_this_dim_did_not_write_is_refused(content):
    with pytest.raises(ValueError):
        parse(content)


def test_without_a_file_the_snapshot_says_so():
    with pytest.raises(FileNotFoundError):
        Snapshot(StatePaths("/nonexistent").boot_targets).target("52:54:00:00:00:01")


def test_the_file_is_sorted_by_mac_so_that_an_unchanged_state_writes_the_same_bytes():
    assert render(dict(reversed(MACS.items())), {}) == render(MACS, {})
