"""actions.nodes: MACs and images recorded all or nothing, a dry run recording nothing."""

from __future__ import annotations

import pytest

from dim.actions import nodes
from dim.errors import UsageError


def macs(ctx) -> dict:
    return ctx.inventory().macs


def test_set_mac_normalises_and_says_whether_it_changed(ctx):
    first = nodes.set_mac(ctx, "c01", "52-54-00-00-00-01")
    assert first == nodes.MacChange("c01", "boot", "52:54:00:00:00:01", True)
    assert not nodes.set_mac(ctx, "c01", "52:54:00:00:00:01").changed


def test_set_mac_for_several_nodes_is_refused_and_nothing_is_recorded(ctx):
    with pytest.raises(UsageError, match="--mac names one node"):
        nodes.set_mac(ctx, "c[01-02]", "52:54:00:00:00:01")
    assert macs(ctx) == {}


def test_set_image_counts_the_nodes_it_changed(ctx):
    assignment = nodes.set_image(ctx, "@gpu", "alpha")
    assert assignment == nodes.ImageAssignment(("g1", "g2"), "alpha", 2)
    assert nodes.set_image(ctx, "g1", "alpha").changed == 0


def test_import_macs_dry_run_counts_changes_and_records_nothing(ctx, tmp_path):
    nodes.set_mac(ctx, "c01", "52:54:00:00:00:01")
    csv = tmp_path / "macs.csv"
    csv.write_text("c01,52:54:00:00:00:01\ng1,52:54:00:00:00:02\n")
    report = nodes.import_macs(ctx, csv, dry_run=True)
    assert (report.macs, report.changed, report.dry_run) == (2, 1, True)
    assert macs(ctx) == {("c01", "boot"): "52:54:00:00:00:01"}


def test_import_macs_records_the_whole_file(ctx, tmp_path):
    csv = tmp_path / "macs.csv"
    csv.write_text("c01,52:54:00:00:00:01\ng1,52:54:00:00:00:02\n")
    assert nodes.import_macs(ctx, csv).changed == 2
    assert macs(ctx)[("g1", "boot")] == "52:54:00:00:00:02"


def test_records_follow_the_node_set_and_its_exclusion(ctx):
    records = nodes.records(ctx, "@compute", "c[02-03]")
    assert [r["name"] for r in records] == ["c01", "c04"]


def test_reset_plan_groups_nodes_by_image_before_anything_is_done(ctx):
    plan = nodes.reset_plan(ctx, "c[03-04],g1")
    assert dict(plan.by_image) == {"alpha": ("c03",), "beta": ("c04", "g1")}
    assert plan.nodes == ["c03", "c04", "g1"]


def test_diff_takes_one_node(ctx):
    with pytest.raises(UsageError, match="node diff takes one node"):
        nodes.diff(ctx, "c[01-02]")
