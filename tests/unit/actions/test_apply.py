"""actions.apply: the whole of dim apply as one call, its report, and the lease rule."""

from __future__ import annotations

import pytest

from dim.actions import nodes
from dim.actions.apply import ApplyReport, apply
from dim.errors import ApplyError
from dim.records import StaleLease
from dim.services import leases
from dim.services.apply import ApplyResult


def test_apply_into_a_root_installs_the_files_and_reports_them(ctx, tmp_path):
    nodes.set_mac(ctx, "c01", "52:54:00:00:00:01")
    root = tmp_path / "root"
    report = apply(ctx, root=root, do_reload=False, validation=False)
    assert (report.server, report.root, report.dry_run) == ("srv", root, False)
    assert report.result.changes and report.result.reloaded == []
    assert (root / "etc/dnsmasq.d/dim.conf").is_file()
    again = apply(ctx, root=root, do_reload=False, validation=False)
    assert again.result.changes == [] and again.result.unchanged > 0


def test_a_dry_run_plans_and_writes_nothing(ctx, tmp_path):
    root = tmp_path / "root"
    report = apply(ctx, root=root, dry_run=True, validation=False)
    assert report.dry_run and report.result.changes
    assert not root.exists()


def test_a_replaced_mac_waits_for_an_apply_that_reloads(ctx, tmp_path):
    nodes.set_mac(ctx, "c01", "52:54:00:00:00:01")
    nodes.set_mac(ctx, "c01", "52:54:00:00:01:01")
    report = apply(ctx, root=tmp_path / "root", do_reload=False, validation=False)
    assert [(s.node, s.mac) for s in report.waiting] == [("c01", "52:54:00:00:00:01")]
    assert report.released == ()
    report.raise_for_unreleased()  # waiting is not failing


def test_an_unreleased_lease_is_in_the_report_and_raised_only_when_asked(tmp_path):
    lease = StaleLease("c01", "boot", "52:54:00:00:00:01")
    failed = leases.ReleaseResult(lease, "10.10.0.11", leases.FAILED, "no interface=")
    report = ApplyReport("srv", tmp_path, False, ApplyResult([], 3), (), (failed,))
    assert report.unreleased == 1
    with pytest.raises(ApplyError, match="1 stale DHCP lease not released") as error:
        report.raise_for_unreleased()
    assert "next dim apply that reloads" in error.value.hint
