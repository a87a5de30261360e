"""Rendering from the parser's columns (dim.layout.columns) and from nodes made: same bytes."""

import dataclasses
from pathlib import Path

import pytest

from dim.layout.parser import parse
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.unit.conftest import SMALL


def rendered(inventory, server):
    files = render_all(RenderContext(inventory, server, Path("/var/lib/dim")))
    return [(f.path, f.content, f.link, f.mode, f.service) for f in files]


def with_nodes_made(inventory):
    cluster = inventory.cluster
    made = dataclasses.replace(cluster, nodes=tuple(cluster.nodes), by_name={})
    return dataclasses.replace(inventory, cluster=made)


@pytest.mark.parametrize("fixture", ["small_inventory", "pair_inventory"])
def test_every_file_from_the_columns_is_the_file_from_the_nodes(request, fixture):
    inventory = request.getfixturevalue(fixture)
    servers = list(inventory.cluster.servers)
    from_columns = [rendered(inventory, server) for server in servers]
    assert not inventory.cluster.nodes.made  # no renderer made a node
    made = with_nodes_made(inventory)
    assert from_columns == [rendered(made, server) for server in servers]


@pytest.mark.parametrize(
    "address",
    [
        "bmc-{n1}.example",  # none an IPv4 address: no BMC line in the hosts file
        "10.11.0.{(n1-2)*100+10}",  # c01's is 10.11.0.-90, not one; the others' are
    ],
)
def test_bmcs_without_an_ipv4_address_have_no_hosts_line_from_the_columns_either(
    small_inventory, address
):
    data = SMALL.replace(b"10.11.0.{10+n1}", address.encode())
    cluster = parse(data, "small.xml")
    inventory = dataclasses.replace(small_inventory, cluster=cluster)
    hosts = dict((f[0], f[1]) for f in rendered(inventory, "srv"))["/etc/dim/hosts"]
    assert hosts.count(b"-bmc.") == (0 if address.startswith("bmc") else 3)
    assert rendered(inventory, "srv") == rendered(with_nodes_made(inventory), "srv")
