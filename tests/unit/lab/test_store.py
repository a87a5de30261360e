"""The lab on CephFS, its pure parts (dim.lab.store): the layout's ``<store>``, what the lab
runs before each ganesha head, and what ``dim lab status`` says of a store that is down. The
lab itself on a real Ceph cluster is proven in tests/e2e/test_ceph_lab.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dim.cli import main
from dim.lab import cluster
from dim.lab import store as lab_store
from dim.lab.daemons import GANESHA_START, lab_specs
from dim.lab.state import LabState
from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services.nfs import GANESHA_CONF, GANESHA_GRACE, GANESHA_UNFENCE
from dim.services.render import render_all
from dim.services.rendering import RenderContext


@pytest.mark.parametrize(("servers", "heads"), [(1, ("labsrv",)), (2, ("srv1", "srv2"))])
def test_a_lab_on_ceph_declares_every_server_a_head_of_its_cephfs_store(
    servers: int, heads: tuple[str, ...], tmp_path: Path
) -> None:
    conf = lab_store.ceph_conf(tmp_path)
    layout = parse(cluster.layout_text("dnsmasq", 2, servers, conf).encode(), "lab.xml")
    (store,) = layout.stores.values()
    assert store.servers == heads and store.ceph_conf == str(conf)
    # one server: its nodes wait for it; two, a failover set: graceless (docs/ha.md)
    assert (store.root, store.recovery) == ("/", "rados_cluster" if servers == 1 else "none")
    assert all(layout.servers[name].store == store.name for name in heads)
    assert not parse(cluster.layout_text("dnsmasq", 2, servers).encode(), "lab.xml").stores


@pytest.mark.parametrize("recovery", ["rados_cluster", "none"])
def test_each_head_of_the_labs_store_exports_through_cephfs_with_its_start_scripts(
    recovery: str, tmp_path: Path
) -> None:
    text = cluster.layout_text("dnsmasq", 2, 2, lab_store.ceph_conf(tmp_path))
    text = text.replace(
        'recovery-pool="dim_nfs"/>', f'recovery-pool="dim_nfs" recovery="{recovery}"/>'
    )
    inventory = Inventory(parse(text.encode(), "lab.xml"), {}, {})
    state = tmp_path / "state"
    for server, own in (("srv1", "10.77.0.101"), ("srv2", "10.77.0.102")):
        files = {f.path: f.content for f in render_all(RenderContext(inventory, server, state))}
        conf = files[GANESHA_CONF].decode()
        assert "FSAL { Name = CEPH; Filesystem = dimfs; User_Id = dim; }" in conf
        assert f"Ceph_Conf = {tmp_path}/ceph/ceph.conf;" in conf
        assert f"osd blocklist rm {own}" in files[GANESHA_UNFENCE].decode()
        if recovery == "rados_cluster":
            assert f"nodeid = {server};" in conf
            assert f"add {server}" in files[GANESHA_GRACE].decode()
        else:
            assert "Graceless = true;" in conf and GANESHA_GRACE not in files


def start_script(folder: Path, grace: str | None) -> subprocess.CompletedProcess[str]:
    """:data:`GANESHA_START` with its /etc/ganesha in ``folder``, a dim-grace there that
    runs ``grace`` (none if None), and ``echo ganesha started`` in place of ganesha."""
    if grace is not None:
        script = folder / "dim-grace"
        script.write_text(f"#!/bin/sh\n{grace}\n")
        script.chmod(0o755)
    start = GANESHA_START.replace("/etc/ganesha", str(folder))
    return subprocess.run(
        ["sh", "-c", start, "sh", "echo", "ganesha", "started"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_ganesha_starts_after_the_grace_script_and_not_at_all_when_it_fails(
    tmp_path: Path,
) -> None:
    assert start_script(tmp_path, None).stdout == "ganesha started\n"  # no store: no script
    joined = start_script(tmp_path, "echo joined")
    assert joined.stdout == "joined\nganesha started\n"
    refused = start_script(tmp_path, "echo 'no monitor' >&2; exit 3")
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", "no monitor\n")


def test_every_ganesha_of_a_lab_runs_the_start_scripts(tmp_path: Path) -> None:
    for servers in ((), ("srv1", "srv2")):
        state = LabState(str(tmp_path), "dimtest", "dnsmasq", servers=servers)
        ganeshas = [s for s in lab_specs(state) if s.name.endswith("ganesha")]
        assert len(ganeshas) == max(1, len(servers))
        assert all(s.command[:3] == ("sh", "-c", GANESHA_START) for s in ganeshas)


def test_status_of_a_lab_on_ceph_that_is_down_says_its_store_is_stopped_and_unmounted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    LabState(str(tmp_path), "dimtest-none", "dnsmasq", store="ceph").save()
    assert LabState.load(tmp_path).store == "ceph"
    assert main(["lab", "status", "--dir", str(tmp_path), "--json"]) == 0
    store = json.loads(capsys.readouterr().out)["store"]
    assert (store["health"], store["mounted"], store["fuse_running"]) == ("STOPPED", False, False)
    assert store["mount"] == str(tmp_path / "state")


def test_lab_up_refuses_an_unknown_store_before_doing_anything(tmp_path: Path) -> None:
    assert main(["lab", "up", "--dir", str(tmp_path / "lab"), "--store", "nfs"]) == 2
    assert not (tmp_path / "lab").exists()
