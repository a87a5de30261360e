"""The DNS-only dnsmasq's unit (dim.services.units): ``dim layout check`` on a dnsmasq server's
machine says when ``dim apply`` would fail to restart it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dim.layout.parser import parse
from dim.services import units
from tests.unit.conftest import PAIR, SMALL

SMALL_CLUSTER = parse(SMALL, "small.xml")
MISSING = (
    "dim-dns.service is not installed on this machine (server srv, dhcp=dnsmasq): dim apply "
    "would fail to restart it (systemctl restart dim-dns) and the nodes' names go unserved; "
    'install contrib/dim-dns.service and enable it, or declare <reload service="dns" '
    'command="..."/>'
)


def never(unit: str) -> bool:
    return False


def test_a_dnsmasq_server_of_this_machine_without_the_unit_is_one_warning():
    assert units.missing(SMALL_CLUSTER, ["srv"], never) == [MISSING]


def test_the_unit_installed_or_the_server_elsewhere_is_no_warning():
    asked = []
    assert units.missing(SMALL_CLUSTER, ["srv"], lambda unit: asked.append(unit) or True) == []
    assert asked == ["dim-dns.service"]
    assert units.missing(SMALL_CLUSTER, [], never) == []


def with_reload(service: str, command: str) -> bytes:
    reload = f'<reload service="{service}" command="{command}"/>'
    return SMALL.replace(b'nfs="ganesha"/>', f'nfs="ganesha">{reload}</server>'.encode())


@pytest.mark.parametrize(
    ("layout", "warned"),
    [
        (SMALL.replace(b'dhcp="dnsmasq"', b'dhcp="kea"'), False),
        (with_reload("dns", "true"), False),
        (with_reload("dns", "systemctl restart dim-dns"), True),
        (with_reload("dnsmasq", "true"), True),
    ],
    ids=["kea", "own-command", "default-command-declared", "other-service-declared"],
)
def test_only_the_default_restart_of_dim_dns_on_a_dnsmasq_server_needs_the_unit(layout, warned):
    lines = units.missing(parse(layout, "small.xml"), ["srv"], never)
    assert lines == ([MISSING] if warned else [])


def test_each_server_of_a_failover_set_on_this_machine_is_named():
    lines = units.missing(parse(PAIR, "pair.xml"), ["srv1", "solo"], never)
    assert [line.split("(server ")[1].split(",")[0] for line in lines] == ["srv1", "solo"]


def test_a_unit_file_in_any_of_systemds_folders_is_installed(tmp_path, monkeypatch):
    folders = [tmp_path / "etc", tmp_path / "usr"]
    monkeypatch.setattr(units, "UNIT_FOLDERS", tuple(map(str, folders)))
    assert not units.installed("dim-dns.service")
    folders[1].mkdir()
    Path(folders[1], "dim-dns.service").write_text("[Unit]\n")
    assert units.installed("dim-dns.service")
