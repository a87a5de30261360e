"""NFS exports as rendered, read back as access rules: who may mount what, and how.

The golden files in tests/unit/services pin the text; these tests pin the rules, whatever the
layout of the text: for both flavours, the image store goes read-only to every node of the
server (any may be switched to any image, with no change here), and each node's folder of
replicas read-write to that node alone, root not squashed. Which image a node boots changes
nothing in the exports.
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
# r01-r05 are 10.20.0.8-12; r05 was switched to beta after the layout was written; b1 has no
# image yet. f1 and f2 belong to the other server: they get nothing here.
SWITCHED = {"r05": "beta"}
NODES = {
    "r01": "10.20.0.8",
    "r02": "10.20.0.9",
    "r03": "10.20.0.10",
    "r04": "10.20.0.11",
    "r05": "10.20.0.12",
    "x1": "10.20.0.200",
    "b1": "10.20.0.210",
}
IMAGES = str(STATE / "images")


def rendered(nfs: str, path: str, switched: dict[str, str] = SWITCHED) -> str:
    inventory = Inventory(parse(LAYOUT.format(nfs=nfs).encode(), "u.xml"), {}, switched)
    files = {f.path: f for f in render_all(RenderContext(inventory, "srv", STATE))}
    return files[path].content.decode()


def folder(node: str) -> str:
    return str(STATE / "nodes" / node)


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


def test_kernel_exports_exactly_the_image_store_and_one_folder_per_node() -> None:
    assert set(exports()) == {IMAGES} | {folder(n) for n in NODES}  # nothing for f1 or f2


def test_kernel_image_store_is_read_only_to_the_cidr_blocks_of_the_servers_nodes() -> None:
    clients = exports()[IMAGES]
    assert hosts([who for who, _ in clients]) == set(NODES.values())
    for _, options in clients:
        assert {"ro", "no_root_squash"} <= options and "rw" not in options


def test_kernel_folds_neighbouring_addresses_into_one_block() -> None:
    blocks = [who for who, _ in exports()[IMAGES]]
    assert blocks == ["10.20.0.8/30", "10.20.0.12/32", "10.20.0.200/32", "10.20.0.210/32"]


@pytest.mark.parametrize("node", NODES)
def test_kernel_node_folder_is_read_write_to_its_node_alone(node: str) -> None:
    ((who, options),) = exports()[folder(node)]
    assert who == NODES[node]
    assert {"rw", "no_root_squash"} <= options and "ro" not in options


@pytest.mark.parametrize("nfs", ["kernel", "ganesha"])
def test_switching_a_node_to_another_image_changes_nothing_in_the_exports(nfs: str) -> None:
    path = {"kernel": "/etc/exports.d/dim.exports", "ganesha": "/etc/ganesha/ganesha.conf"}[nfs]
    before = rendered(nfs, path)
    assert rendered(nfs, path, {"r05": "beta", "r01": "unused", "b1": "alpha"}) == before


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
    assert len(ids) == len(set(ids)) == 1 + len(NODES)
    assert all(1 <= i <= 65535 for i in ids)  # 0 is ganesha's own pseudo root


def test_ganesha_exports_exactly_the_image_store_and_one_folder_per_node() -> None:
    assert set(exports_by_path()) == {IMAGES} | {folder(n) for n in NODES}


def test_ganesha_denies_by_default_and_never_squashes_root() -> None:
    conf = ganesha()
    (defaults,) = conf["export_defaults"]
    assert value(defaults, "access_type") == "None"
    assert value(defaults, "squash") == "No_Root_Squash"
    for export in conf["export"]:
        assert "access_type" not in export  # the defaults' None: only CLIENT blocks grant access
        assert value(export, "pseudo") == value(export, "path")
        assert "squash" not in export


def test_ganesha_image_store_is_read_only_to_the_servers_nodes() -> None:
    (client,) = exports_by_path()[IMAGES]["client"]
    assert value(client, "access_type") == "RO"
    assert hosts(client["clients"]) == set(NODES.values())


@pytest.mark.parametrize("node", NODES)
def test_ganesha_node_folder_is_read_write_to_its_node_alone(node: str) -> None:
    (client,) = exports_by_path()[folder(node)]["client"]
    assert client["clients"] == [NODES[node]]
    assert value(client, "access_type") == "RW"


def test_ganesha_serves_nfsv4_without_rpcbind() -> None:
    (core,) = ganesha()["nfs_core_param"]
    assert core["protocols"] == ["4"]
    assert value(core, "enable_rquota") == "false"  # else ganesha exits without rpcbind
    assert IPv4Address(value(core, "bind_addr")) == IPv4Address("10.20.0.1")
