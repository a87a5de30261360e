"""The parser's nodes kept as columns (dim.layout.columns): the same nodes, made when read."""

import re

import pytest

from dim.layout.columns import Nodes, served_columns
from dim.layout.expressions import compile_template, render_column
from dim.layout.parser import load, parse
from tests.unit.conftest import EXAMPLES, SMALL


def layouts():
    return [load(EXAMPLES / "bladecenter.xml"), load(EXAMPLES / "lab.xml"), parse(SMALL)]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_node_read_alone_is_the_node_made_with_all_the_others(index):
    fresh, made = layouts()[index], layouts()[index]
    every = made.nodes.all()
    assert isinstance(fresh.nodes, Nodes) and len(fresh.nodes) == len(every)
    for position in (0, len(every) // 2, -1):
        assert fresh.nodes[position] == every[position]
    last = every[-1].name
    assert fresh.node(last) == every[-1] and last in fresh.by_name
    assert fresh.node("no-such-node") is None
    assert not fresh.nodes.made  # one node at a time: the others were not made
    assert tuple(fresh.nodes) == every and fresh.nodes.made
    assert dict(fresh.by_name) == {n.name: n for n in every}


@pytest.mark.parametrize("index", [0, 1, 2])
def test_served_columns_are_the_same_from_columns_and_from_nodes(index):
    cluster = layouts()[index]
    made = tuple(layouts()[index].nodes)
    for servers in [None, set(cluster.servers), {next(iter(cluster.servers))}, {"none"}]:
        assert served_columns(cluster.nodes, servers) == served_columns(made, servers)
    assert not cluster.nodes.made


def test_a_duplicate_name_in_a_later_group_names_the_line_of_the_first():
    data = SMALL.decode()
    group = re.search(r'<group name="gpu" nodes="([^"]+)"', data)
    assert group is not None
    data = data.replace(group.group(0), group.group(0).replace(group.group(1), "c02"))
    with pytest.raises(Exception, match=r"duplicate node name \(also declared at line \d+\)"):
        parse(data.encode())


TEMPLATES = [
    "10.{0+(i+256)//65536}.{(i+256)//256%256}.{(i+256)%256}",
    "10.{4+(i+256)//65536}.{(i+256)//256%256}.{(i+256)%256}",  # two fields shared
    "10.0.{n1}.{(n2-1)*14+n3}",
    "{name}-ib",
    "{name}",
    "bmc-{n1:03}-{ i }",
    "constant",
    "a\nb{i}",  # a newline in the text: node by node
]


def test_a_templates_column_is_each_nodes_text_from_its_function():
    names = [f"s{s:02}c{c}b{b:02}" for s in (1, 2) for c in (1, 4) for b in (1, 14)]
    nums = [tuple(map(int, re.findall("[0-9]+", name))) for name in names]
    shared: dict = {}
    for text in TEMPLATES:
        template = compile_template(text)
        expected = list(map(template.function, nums, range(len(names)), names))
        assert render_column(template, nums, names, shared) == expected, text
    assert len(shared) == 9  # 3, 1 more (the second shares two), 2, {name}, {n1:03} and {i}


def test_a_templates_column_raises_what_its_function_raises():
    template = compile_template("10.0.0.{10//(n1-1)}")
    with pytest.raises(ZeroDivisionError):
        render_column(template, [(2,), (1,)], ["n2", "n1"], {})
    with pytest.raises(IndexError):
        render_column(compile_template("{n2}"), [(2,)], ["n2"], {})


def test_a_layout_without_nodes_serves_no_columns_rather_than_failing():
    xml = b"""<?xml version="1.0"?>
<cluster name="empty"><network name="boot" subnet="10.78.0.0/24"/>
<server name="srv" address="10.78.0.1" dhcp="none" nfs="ganesha"/><image name="a"/></cluster>"""
    columns = served_columns(parse(xml, "empty.xml").nodes, {"srv"})
    assert columns.name == [] and columns.boot_ip == []
