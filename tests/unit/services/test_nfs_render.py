"""NFS exports as rendered, read back as access rules: who may mount what, and how.

The golden files in tests/unit/services pin the text; these tests pin the rules, whatever the
layout of the text: for both flavours, each image's live tree goes read-only to exactly the
nodes that boot it, and each node's replica read-write to that node alone, root not squashed.
tests/integration/test_nfs_ganesha.py checks the same rules against a running nfs-ganesha.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services.render import render_all
from dim.services.rendering import RenderContext

STATE = Path("/var/lib/dim")
LAYOUT = """<?xml version="1.0"?>
<cluster name="u" domain="u.example">
  <network name="boot" subnet="10.20.0.0/24" gateway="10.20.0.1"/>
  <server name="srv" address="10.20.0.1" dhcp="none" nfs="{nfs}"/>
  <server name="other" address="10.20.0.2" dhcp="none" nfs="{nfs}"/>
  <image name="alpha"><persist path="/etc"/></image>
  <image name="beta"><persist path="/var"/></image>
  <image name="unused"><persist path="/etc"/></image>
  <group name="rack" nodes="r[01-05]" image="alpha" server="srv">
    <interface network="boot" ip="10.20.0.{{7+n1}}"/>
  </group>
  <group name="lone" nodes="x1" image="beta" server="srv">
    <interface network="boot" ip="10.20.0.200"/>
  </group>
  <group name="bare" nodes="b1" server="srv">
    <interface network="boot" ip="10.20.0.210"/>
  </group>
  <group name="far" nodes="f[1-2]" image="alpha" server="other">
    <interface network="boot" ip="10.20.0.{{100+n1}}"/>
  </group>
</cluster>
"""
# r01-r05 are 10.20.0.8-12; r05 was switched to beta after the layout was written. b1 has no
# image, f1 and f2 belong to the other server: none of those three gets anything here.
SWITCHED = {"r05": "beta"}
USERS = {
    "alpha": {"10.20.0.8", "10.20.0.9", "10.20.0.10", "10.20.0.11"},
    "beta": {"10.20.0.12", "10.20.0.200"},
}
REPLICAS = {
    "r01": ("alpha", "10.20.0.8"),
    "r02": ("alpha", "10.20.0.9"),
    "r03": ("alpha", "10.20.0.10"),
    "r04": ("alpha", "10.20.0.11"),
    "r05": ("beta", "10.20.0.12"),
    "x1": ("beta", "10.20.0.200"),
}


def rendered(nfs: str, path: str) -> str:
    inventory = Inventory(parse(LAYOUT.format(nfs=nfs).encode(), "u.xml"), {}, SWITCHED)
    files = {f.path: f for f in render_all(RenderContext(inventory, "srv", STATE))}
    return files[path].content.decode()


def live(image: str) -> str:
    return str(STATE / "images" / image / "live")


def replica(node: str, image: str) -> str:
    return str(STATE / "nodes" / node / image)


def hosts(blocks: list[str]) -> set[str]:
    """Every address in these CIDR blocks (or single addresses)."""
    return {str(a) for b in blocks for a in IPv4Network(b)}


# -- kernel: /etc/exports.d/dim.exports --------------------------------------------------------


def exports() -> dict[str, list[tuple[str, set[str]]]]:
    """path -> [(client, options)] from the rendered exports file."""
    table: dict[str, list[tuple[str, set[str]]]] = {}
    for line in rendered("kernel", "/etc/exports.d/dim.exports").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, *clients = line.split()
        assert path not in table, f"{path} exported twice"
        table[path] = []
        for client in clients:
            who, options = re.fullmatch(r"([^(]+)\(([^)]*)\)", client).groups()
            table[path].append((who, set(options.split(","))))
    return table


def test_kernel_exports_exactly_the_live_trees_in_use_and_one_replica_per_node() -> None:
    expected = {live(i) for i in USERS} | {replica(n, i) for n, (i, _) in REPLICAS.items()}
    assert set(exports()) == expected  # not "unused", nothing for b1, f1 or f2


@pytest.mark.parametrize("image", USERS)
def test_kernel_live_tree_is_read_only_to_the_cidr_blocks_of_its_nodes(image: str) -> None:
    clients = exports()[live(image)]
    assert hosts([who for who, _ in clients]) == USERS[image]
    for _, options in clients:
        assert {"ro", "no_root_squash"} <= options and "rw" not in options


def test_kernel_folds_neighbouring_addresses_into_one_block() -> None:
    assert [who for who, _ in exports()[live("alpha")]] == ["10.20.0.8/30"]


@pytest.mark.parametrize("node", REPLICAS)
def test_kernel_replica_is_read_write_to_its_node_alone(node: str) -> None:
    image, address = REPLICAS[node]
    ((who, options),) = exports()[replica(node, image)]
    assert who == address
    assert {"rw", "no_root_squash"} <= options and "ro" not in options


# -- ganesha: /etc/ganesha/ganesha.conf ----------------------------------------------------------

Block = dict[str, list]  # key -> values (a list of strings), or block name -> [Block, ...]


def ganesha() -> Block:
    """The rendered ganesha.conf as nested blocks; keys lower-cased, as ganesha reads them."""
    text = re.sub(r"#.*", "", rendered("ganesha", "/etc/ganesha/ganesha.conf"))
    tokens = re.findall(r'"[^"]*"|[{};=,]|[^\s{};=,"]+', text)
    block, position = _block(tokens, 0)
    assert position == len(tokens)
    return block


def _block(tokens: list[str], i: int) -> tuple[Block, int]:
    block: Block = {}
    while i < len(tokens) and tokens[i] != "}":
        name = tokens[i].lower()
        if tokens[i + 1] == "{":
            child, i = _block(tokens, i + 2)
            assert tokens[i] == "}"
            block.setdefault(name, []).append(child)
            i += 1
            continue
        assert tokens[i + 1] == "=", f"expected = after {name}, got {tokens[i + 1]}"
        values, i = [], i + 2
        while tokens[i] != ";":
            if tokens[i] != ",":
                values.append(tokens[i].strip('"'))
            i += 1
        assert name not in block, f"{name} set twice"
        block[name] = values
        i += 1
    return block, i


def value(block: Block, key: str) -> str:
    (single,) = block[key]
    return single


def exports_by_path() -> dict[str, Block]:
    return {value(e, "path"): e for e in ganesha()["export"]}


def test_ganesha_export_ids_are_unique_and_in_its_range() -> None:
    ids = [int(value(e, "export_id")) for e in ganesha()["export"]]
    assert len(ids) == len(set(ids)) == len(USERS) + len(REPLICAS)
    assert all(1 <= i <= 65535 for i in ids)  # 0 is ganesha's own pseudo root


def test_ganesha_exports_exactly_the_live_trees_in_use_and_one_replica_per_node() -> None:
    expected = {live(i) for i in USERS} | {replica(n, i) for n, (i, _) in REPLICAS.items()}
    assert set(exports_by_path()) == expected


def test_ganesha_denies_by_default_and_never_squashes_root() -> None:
    conf = ganesha()
    (defaults,) = conf["export_defaults"]
    assert value(defaults, "access_type") == "None"
    assert value(defaults, "squash") == "No_Root_Squash"
    for export in conf["export"]:
        assert value(export, "access_type") == "None"  # only CLIENT blocks grant access
        assert value(export, "pseudo") == value(export, "path")
        assert "squash" not in export


@pytest.mark.parametrize("image", USERS)
def test_ganesha_live_tree_is_read_only_to_its_nodes(image: str) -> None:
    (client,) = exports_by_path()[live(image)]["client"]
    assert value(client, "access_type") == "RO"
    assert hosts(client["clients"]) == USERS[image]


@pytest.mark.parametrize("node", REPLICAS)
def test_ganesha_replica_is_read_write_to_its_node_alone(node: str) -> None:
    image, address = REPLICAS[node]
    (client,) = exports_by_path()[replica(node, image)]["client"]
    assert client["clients"] == [address]
    assert value(client, "access_type") == "RW"


def test_ganesha_serves_nfsv4_without_rpcbind() -> None:
    (core,) = ganesha()["nfs_core_param"]
    assert core["protocols"] == ["4"]
    assert value(core, "enable_rquota") == "false"  # else ganesha exits without rpcbind
    assert IPv4Address(value(core, "bind_addr")) == IPv4Address("10.20.0.1")
