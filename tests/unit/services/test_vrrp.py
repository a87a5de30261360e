"""keepalived for failover sets: priorities, router ids, preemption, health checks, unicast
peers; and ``dim apply`` validating it with the real keepalived (``--config-test``)."""

from __future__ import annotations

import os
import re
import tempfile
from importlib import resources
from pathlib import Path

import pytest

from dim.errors import ValidationError
from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services import apply as applier
from dim.services import vrrp
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.conftest import require_binary
from tests.unit.conftest import PAIR, PAIR_MACS
from tests.unit.services.test_apply import snapshot

STATE = Path("/var/lib/dim")
CONF = "/etc/keepalived/keepalived.conf"

# Two sets: the pair, and a trio that preempts, whose t1 overrides its NFS check and whose t3
# runs no DHCP and no NFS.
SETS = b"""<?xml version="1.0"?>
<cluster name="v">
  <network name="boot" subnet="10.40.0.0/24"/>
  <network name="far" subnet="10.41.0.0/16"/>
  <server name="p1" address="10.40.0.1" own-address="10.40.0.101" interface="eth0"/>
  <server name="lone" address="10.40.0.9"/>
  <server name="t1" address="10.41.0.1" own-address="10.41.0.101" interface="bond0"
          dhcp="isc">
    <check service="nfs" command="/usr/local/bin/nfs-ok --quick"/>
  </server>
  <server name="p2" address="10.40.0.2" own-address="10.40.0.102" interface="eth1"/>
  <server name="t2" address="10.41.0.2" own-address="10.41.0.102" interface="bond0" dhcp="kea"/>
  <server name="t3" address="10.41.0.3" own-address="10.41.0.103" interface="bond0"
          dhcp="none" nfs="none"/>
  <failover name="pair" servers="p[1-2]"/>
  <failover name="trio" servers="t[1-3]" preempt="yes" preempt-delay="30"/>
</cluster>
"""
SERVERS = ("p1", "p2", "t1", "t2", "t3")


@pytest.fixture(scope="module")
def sets() -> Inventory:
    return Inventory(parse(SETS, "sets.xml"), {}, {})


def keepalived(inventory: Inventory, server: str) -> dict[str, object]:
    return {f.path: f for f in vrrp.render(RenderContext(inventory, server, STATE))}


def instances(conf: str) -> dict[str, str]:
    """Each ``vrrp_instance``'s body, by the server whose address it holds."""
    return dict(re.findall(r"^vrrp_instance dim_(\S+) \{\n(.*?)^\}", conf, re.M | re.S))


def setting(block: str, key: str) -> str:
    return re.search(rf"^\s+{key} (.+)$", block, re.M).group(1)


def priority(conf: str) -> dict[str, int]:
    return {name: int(setting(block, "priority")) for name, block in instances(conf).items()}


def conf_of(inventory: Inventory, server: str) -> str:
    return keepalived(inventory, server)[CONF].content.decode()


def test_the_owner_has_priority_250_its_successor_100_and_each_next_peer_less(sets):
    priorities = {server: priority(conf_of(sets, server)) for server in SERVERS}
    assert priorities["p1"] == {"p1": 250, "p2": 100}
    assert priorities["p2"] == {"p1": 100, "p2": 250}
    # t2's address: t2 owns it, t3 comes next, then t1
    assert {s: priorities[s]["t2"] for s in ("t1", "t2", "t3")} == {"t1": 95, "t2": 250, "t3": 100}
    assert priorities["t1"] == {"t1": 250, "t2": 95, "t3": 100}
    for server in SERVERS:  # a known successor: no two servers tie for an address
        for owner in priorities[server]:
            peers = [priorities[s][owner] for s in priorities if owner in priorities[s]]
            assert len(set(peers)) == len(peers)


def test_each_address_has_one_router_id_on_every_server_unique_across_sets(sets):
    vrids: dict[str, set[int]] = {}
    for server in SERVERS:
        for owner, block in instances(conf_of(sets, server)).items():
            vrids.setdefault(owner, set()).add(int(setting(block, "virtual_router_id")))
    assert all(len(ids) == 1 for ids in vrids.values())
    assert sorted(ids.pop() for ids in vrids.values()) == [1, 2, 3, 4, 5]


def test_each_instance_moves_its_owners_service_address_on_this_servers_interface(sets):
    blocks = instances(conf_of(sets, "p2"))
    assert setting(blocks["p1"], "interface") == "eth1"
    assert "10.40.0.1/24 dev eth1" in blocks["p1"]
    assert "10.40.0.2/24 dev eth1" in blocks["p2"]
    assert "10.41.0.3/16 dev bond0" in instances(conf_of(sets, "t1"))["t3"]


def test_a_set_does_not_preempt_by_default_and_preempts_after_its_delay_when_told(sets):
    for block in instances(conf_of(sets, "p1")).values():
        assert "\n    nopreempt\n" in block and "preempt_delay" not in block
        assert setting(block, "state") == "BACKUP"
    for block in instances(conf_of(sets, "t2")).values():
        assert setting(block, "preempt_delay") == "30" and "nopreempt" not in block
        assert setting(block, "state") == "BACKUP"  # keepalived preempts from BACKUP only


def test_peers_talk_unicast_from_their_own_addresses(sets):
    for server, src, peers in [
        ("p1", "10.40.0.101", ["10.40.0.102"]),
        ("t2", "10.41.0.102", ["10.41.0.101", "10.41.0.103"]),
    ]:
        for block in instances(conf_of(sets, server)).values():
            assert setting(block, "unicast_src_ip") == src
            listed = re.search(r"unicast_peer \{\n(.*?)\n\s+\}", block, re.S).group(1).split()
            assert listed == peers


def test_default_checks_follow_the_servers_daemons_and_a_check_element_replaces_one(sets):
    scripts = {
        server: {p.rsplit("-", 1)[1]: f for p, f in keepalived(sets, server).items() if p != CONF}
        for server in ("p1", "t1", "t2", "t3")
    }
    assert sorted(scripts["p1"]) == ["dhcp", "http", "nfs"]
    assert sorted(scripts["t3"]) == ["http"]  # no DHCP, no NFS here
    assert "/run/dnsmasq/dnsmasq.pid" in scripts["p1"]["dhcp"].content.decode()
    assert "/run/dhcp-server/dhcpd.pid" in scripts["t1"]["dhcp"].content.decode()
    assert "/run/kea/kea-dhcp4.kea-dhcp4.pid" in scripts["t2"]["dhcp"].content.decode()
    assert "exec 3<>/dev/tcp/10.40.0.101/2049" in scripts["p1"]["nfs"].content.decode()
    nfs = scripts["t1"]["nfs"].content.decode()
    assert nfs.startswith("#!/bin/bash\n") and nfs.endswith("\n/usr/local/bin/nfs-ok --quick\n")
    assert "GET /dim/health" in scripts["t3"]["http"].content.decode()
    assert {f.mode for s in scripts.values() for f in s.values()} == {0o755}
    tracked = re.findall(r"^\s+dim_(\w+)$", conf_of(sets, "t3"), re.M)
    assert set(tracked) == {"http"}


def test_a_server_outside_any_set_renders_no_keepalived(sets):
    assert keepalived(sets, "lone") == {}


# -- dim apply validates with the real keepalived --------------------------------------------


def install(root: Path, template_dir: Path | None = None):
    inventory = Inventory(parse(PAIR, "pair.xml"), dict(PAIR_MACS), {})
    files = render_all(RenderContext(inventory, "srv1", STATE, template_dir))
    return applier.apply(files, root, reload_command=lambda s: None, do_reload=False)


@pytest.fixture
def validators():
    require_binary("keepalived", "keepalived")
    require_binary("dnsmasq", "dnsmasq")


@pytest.fixture
def copies(monkeypatch) -> list[str]:
    """The folders that validation makes (its copies go below /run), as it makes them."""
    made: list[str] = []
    real = tempfile.mkdtemp

    def recording(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    return made


def test_apply_validates_keepalived_and_installs_its_checks_executable(
    validators, copies, tmp_path
):
    result = install(tmp_path)
    assert result.validated == ["dns", "dnsmasq", "keepalived"]
    assert (tmp_path / "etc/keepalived/keepalived.conf").is_file()
    assert (tmp_path / "etc/keepalived/dim-check-nfs").stat().st_mode & 0o777 == 0o755
    assert any(c.startswith("/run/dim-keepalived-") for c in copies)
    assert not any(os.path.exists(c) for c in copies)


def test_a_keepalived_conf_that_keepalived_refuses_changes_nothing(validators, copies, tmp_path):
    root = tmp_path / "root"
    install(root)
    before = snapshot(root)
    templates = tmp_path / "templates"
    templates.mkdir()
    packaged = resources.files("dim").joinpath("templates/keepalived.conf.j2").read_text()
    broken = packaged.replace("priority {{ i.priority }}", "priority {{ i.priority * 10 }}")
    (templates / "keepalived.conf.j2").write_text(broken)
    (templates / "keepalived-check.j2").write_text("#!/bin/sh\n# {{ header }} changed\n")
    with pytest.raises(ValidationError) as caught:
        install(root, templates)
    message = str(caught.value)
    assert message.startswith(f"keepalived refused the rendered {CONF}: ")
    assert "number '2500' outside range [1, 255]" in message
    assert snapshot(root) == before
    assert not any(os.path.exists(c) for c in copies)
