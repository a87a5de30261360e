"""actions.apply: the whole of dim apply as one call, its report, and the lease rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from dim.actions import nodes
from dim.actions.apply import ApplyReport, apply
from dim.actions.context import Context
from dim.boot.targets import Snapshot
from dim.errors import ApplyError
from dim.paths import StatePaths
from dim.records import BootTarget, StaleLease
from dim.services import clients, leases
from dim.services.apply import ApplyResult
from dim.services.clients import ShippedFile
from tests.unit.conftest import PAIR


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


def test_apply_installs_the_default_loaders_from_their_packages(ctx, tmp_path):
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False, validation=False)
    for path, source in (
        ("srv/dim/tftp/undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe"),
        ("srv/dim/tftp/snponly.efi", "/usr/lib/ipxe/snponly.efi"),
        ("srv/dim/http/snponly.efi", "/usr/lib/ipxe/snponly.efi"),
    ):
        assert (root / path).read_bytes() == Path(source).read_bytes()


def test_a_missing_loader_names_its_package_and_nothing_is_installed(ctx, tmp_path, monkeypatch):
    gone = ShippedFile(str(tmp_path / "absent/undionly.kpxe"), "ipxe")
    monkeypatch.setitem(clients.SHIPPED, "undionly.kpxe", (("undionly.kpxe", gone),))
    root = tmp_path / "root"
    with pytest.raises(ApplyError) as error:
        apply(ctx, root=root, do_reload=False, validation=False)
    assert str(tmp_path / "absent/undionly.kpxe") in error.value.message
    assert "\n" not in error.value.message
    assert error.value.hint == "apt-get install ipxe"
    assert not root.exists()


def test_a_sites_own_loader_is_not_copied_and_warned_of_until_it_is_there(ctx, tmp_path):
    layout = ctx.config.read_bytes().replace(
        b'nfs="ganesha"/>', b'nfs="ganesha" bios-loader="site.kpxe"/>'
    )
    ctx.config.write_bytes(layout)
    root = tmp_path / "root"
    report = apply(ctx, root=root, do_reload=False, validation=False)
    assert not (root / "srv/dim/tftp/site.kpxe").exists()
    assert not (root / "srv/dim/tftp/undionly.kpxe").exists()
    assert [w for w in report.warnings if "/srv/dim/tftp/site.kpxe is missing" in w]
    (root / "srv/dim/tftp/site.kpxe").write_bytes(b"site")
    assert apply(ctx, root=root, do_reload=False, validation=False).warnings == ()


def test_a_loader_no_longer_named_is_removed_by_the_next_apply(ctx, tmp_path):
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False, validation=False)
    layout = ctx.config.read_bytes().replace(
        b'nfs="ganesha"/>', b'nfs="ganesha" bios-loader="lpxelinux.0"/>'
    )
    ctx.config.write_bytes(layout)
    apply(ctx, root=root, do_reload=False, validation=False)
    assert not (root / "srv/dim/tftp/undionly.kpxe").exists()
    assert (root / "srv/dim/tftp/lpxelinux.0").is_file() and (
        root / "srv/dim/tftp/ldlinux.c32"
    ).is_file()


def test_apply_writes_the_boot_targets_and_a_dry_run_does_not(layout_file, tmp_path, database):
    ctx = Context(config=layout_file, state=tmp_path / "state", database=database)
    nodes.set_mac(ctx, "c01", "52:54:00:00:00:01")
    nodes.set_mac(ctx, "c02", "52:54:00:00:00:02")
    nodes.set_image(ctx, "c02", "beta")
    path = StatePaths(ctx.state).boot_targets
    apply(ctx, root=tmp_path / "root", dry_run=True, validation=False)
    assert not path.exists()
    apply(ctx, root=tmp_path / "root", do_reload=False, validation=False)
    assert Snapshot(path).targets() == {
        "52:54:00:00:00:01": BootTarget("c01", "boot", None),
        "52:54:00:00:00:02": BootTarget("c02", "boot", "beta"),
    }
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failover_sets_server_installs_its_peers_loaders_in_its_own_roots(tmp_path, monkeypatch):
    # srv1 holds srv2's address when srv2 is dead: srv2's nodes then fetch srv2's loaders here
    layout = tmp_path / "pair.xml"
    layout.write_bytes(PAIR.replace(b'interface="eth0"', b'interface="eth0" tftp-root="/tftp"'))
    shim = tmp_path / "shim.efi"
    shim.write_bytes(b"shim")
    monkeypatch.setitem(
        clients.SHIPPED, "shimx64.efi", (("shimx64.efi", ShippedFile(str(shim), "shim-signed")),)
    )
    root = tmp_path / "root"
    ctx = Context(config=layout, state=tmp_path / "state")
    report = apply(ctx, root=root, server="srv1", do_reload=False, validation=False)
    tftp = sorted(p.name for p in (root / "tftp").iterdir() if p.is_file())
    assert tftp == [
        "grubx64.efi", "ldlinux.c32", "lpxelinux.0", "shimx64.efi", "snponly.efi", "undionly.kpxe"
    ]  # fmt: skip
    assert (root / "srv/dim/http/ipxe.efi").is_file() and (root / "srv/dim/http/snponly.efi")
    assert report.warnings == (
        "/tftp/sb.efi is missing: uefi-secureboot clients are sent it, and dim does not ship it "
        "(a site's own loader); put it there",
    )


def test_a_failover_sets_server_makes_the_folders_its_exports_name_for_its_peers_nodes(tmp_path):
    # srv1's ganesha exports b1's folder: it must exist when srv1's ganesha starts
    layout = tmp_path / "pair.xml"
    layout.write_bytes(PAIR.replace(b'secure-boot="yes"', b'secure-boot="no"'))
    ctx = Context(config=layout, state=tmp_path / "state")
    apply(ctx, root=tmp_path / "root", server="srv1", do_reload=False, validation=False)
    assert sorted(p.name for p in (tmp_path / "state/nodes").iterdir()) == ["a1", "a2", "b1", "b2"]
