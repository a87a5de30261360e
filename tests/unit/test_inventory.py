import time

import pytest

from dim.errors import UsageError
from dim.inventory import fold, fold_nodes, image_servers, select, summary
from dim.layout.model import Inventory
from dim.layout.parser import load, parse
from tests.unit.conftest import EXAMPLES


def names(nodes):
    return [n.name for n in nodes]


@pytest.mark.parametrize(
    ("pattern", "exclude", "expected"),
    [
        (None, None, ["c01", "c02", "c03", "c04", "g1", "g2"]),
        ("@all", None, ["c01", "c02", "c03", "c04", "g1", "g2"]),
        ("@compute", None, ["c01", "c02", "c03", "c04"]),
        ("@compute!c02", None, ["c01", "c03", "c04"]),
        ("@all", "@compute", ["g1", "g2"]),
        ("c[01-02],g2", None, ["c01", "c02", "g2"]),
        ("@compute&c[02-04]!c02", None, ["c03", "c04"]),
        ("@compute^c[03-04],g1", None, ["c01", "c02", "g1"]),
        (None, "g[1-2]", ["c01", "c02", "c03", "c04"]),
    ],
)
def test_node_sets_select_nodes_in_layout_order(small_cluster, pattern, exclude, expected):
    assert names(select(small_cluster, pattern, exclude)) == expected


def test_unknown_nodes_are_named(small_cluster):
    with pytest.raises(UsageError, match=r"unknown node\(s\) c\[05-06\]"):
        select(small_cluster, "c[01-06]")


def test_fold_uses_node_set_syntax():
    assert fold(["n01", "n02", "n03", "n05"]) == "n[01-03,05]"


@pytest.mark.parametrize(
    "names",
    [
        ["c01", "c02", "c03", "c04"],  # a whole group, from its pattern
        ["c01", "c02", "c03", "c04", "g2"],  # and part of another
        ["c01", "c02", "c03", "c04", "g1", "g2"],  # every group
        ["c02", "g1", "gone7"],  # no whole group, and a name the layout lacks
    ],
)
def test_folding_a_clusters_nodes_gives_what_folding_the_names_gives(small_cluster, names):
    assert fold_nodes(small_cluster, names) == fold(names)


def test_folding_every_blade_takes_the_groups_pattern_not_2576_names():
    cluster = load(EXAMPLES / "bladecenter.xml")
    assert fold_nodes(cluster, [n.name for n in cluster.nodes]) == "s[01-46]c[1-4]b[01-14]"


def test_summary_reports_missing_macs_and_image_use(small_inventory):
    report = summary(small_inventory)
    assert report["nodes"] == 6
    assert report["groups"] == {"compute": 4, "gpu": 2}
    assert report["images"] == {"alpha": 2, "beta": 4}
    assert report["nodes_without_mac"] == "c03,g2"


@pytest.mark.parametrize(
    ("pattern", "exclude", "named"),
    [
        ("@compute!@typo", None, r"unknown group\(s\) @typo"),
        ("@all", "@typo", r"unknown group\(s\) @typo"),
        ("@compute&@gpu,@nosuch", None, r"unknown group\(s\) @nosuch"),
        ("c01!nosuch", None, r"unknown node\(s\) nosuch"),
        ("c01&zz1", None, r"unknown node\(s\) zz1"),
        ("c01^zz1", None, r"unknown node\(s\) zz1"),
        ("@compute", "zz[1-3]", r"unknown node\(s\) zz\[1-3\]"),
        ("@dim:compute", None, r"unknown group\(s\) @dim:compute"),
        ("z*", None, r"z\* \(in 'z\*'\) matches no node"),
    ],
)
def test_an_unknown_name_anywhere_in_an_expression_is_an_error(
    small_cluster, pattern, exclude, named
):
    with pytest.raises(UsageError, match=named) as caught:
        select(small_cluster, pattern, exclude)
    assert caught.value.exit_status == 2


def test_an_unknown_group_after_exclusion_is_an_error_and_names_it(small_cluster):
    with pytest.raises(UsageError, match=r"unknown group\(s\) @typo in '@typo'") as caught:
        select(small_cluster, "@compute", "@typo")
    assert "@compute, @gpu" in caught.value.hint


@pytest.mark.parametrize(("pattern", "exclude"), [("@compute!@compute", None), ("c01", "c01")])
def test_an_empty_result_is_an_error_unless_an_empty_list_is_asked_for(
    small_cluster, pattern, exclude
):
    with pytest.raises(UsageError, match="names no node"):
        select(small_cluster, pattern, exclude)
    assert select(small_cluster, pattern, exclude, empty_ok=True) == []


@pytest.mark.parametrize("pattern", ["", " ", "c01,", "c\u0660\u0661", "c\uff10\uff11"])
def test_empty_and_non_ascii_node_sets_are_refused(small_cluster, pattern):
    with pytest.raises(UsageError, match="invalid node set"):
        select(small_cluster, pattern, empty_ok=True)


def test_group_patterns_wildcards_and_all_select_layout_nodes(small_cluster):
    assert names(select(small_cluster, "@*")) == names(small_cluster.nodes)
    assert names(select(small_cluster, "c0[3-4]*,g?")) == ["c03", "c04", "g1", "g2"]
    assert names(select(small_cluster, "@gpu,@compute!c0[1-3]")) == ["c04", "g1", "g2"]


def test_a_node_set_beyond_the_layouts_limit_is_refused_before_expansion(small_xml):
    from dim.layout.parser import parse

    cluster = parse(small_xml.replace(b'domain="t.example"', b'nodeset-limit="4"'), "s.xml")
    assert names(select(cluster, "c[01-04]")) == ["c01", "c02", "c03", "c04"]
    with pytest.raises(UsageError, match=r"names 5 nodes, more than the limit of 4"):
        select(cluster, "c[01-04],g1")
    start = time.perf_counter()
    with pytest.raises(UsageError, match=r"names 100000000 nodes"):
        select(cluster, "@all", "n[1-100000000]")
    assert time.perf_counter() - start < 0.5


def test_a_pattern_larger_than_the_layout_is_refused_without_expanding_it(small_cluster):
    start = time.perf_counter()
    with pytest.raises(UsageError, match=r"unknown nodes: c\[1-1000000\] .* names 1000000 nodes"):
        select(small_cluster, "@compute", "c[1-1000000]")
    assert time.perf_counter() - start < 0.5


def test_a_group_pattern_naming_more_groups_than_the_layout_has_is_refused_at_once(small_cluster):
    start = time.perf_counter()
    with pytest.raises(UsageError, match=r"unknown groups: @g\[1-1000000\] .* has 2 and @all"):
        select(small_cluster, "@g[1-1000000]")
    assert time.perf_counter() - start < 0.5


TWO_SERVERS = b"""<?xml version="1.0"?>
<cluster name="t">
  <network name="boot" subnet="10.10.0.0/24"/>
  <server name="g" address="10.10.0.2" dhcp="none" nfs="ganesha"/>
  <server name="k" address="10.10.0.3" dhcp="none" nfs="kernel"/>
  <image name="alpha"/> <image name="beta"/> <image name="spare"/>
  <group name="a" nodes="a[1-2]" image="alpha" server="g">
    <interface network="boot" ip="10.10.0.{10+n1}"/>
  </group>
  <group name="b" nodes="b[1-2]" image="beta" server="k">
    <interface network="boot" ip="10.10.0.{20+n1}"/>
  </group>
</cluster>
"""


def test_an_image_is_exported_by_the_servers_of_the_nodes_that_boot_it():
    inventory = Inventory(parse(TWO_SERVERS, "two.xml"), {}, {"b1": "alpha"})
    assert [s.name for s in image_servers(inventory, "alpha")] == ["g", "k"]  # b1 switched
    assert [s.name for s in image_servers(inventory, "beta")] == ["k"]


def test_an_image_no_node_boots_may_be_exported_by_any_server():
    inventory = Inventory(parse(TWO_SERVERS, "two.xml"), {}, {})
    assert [s.nfs for s in image_servers(inventory, "spare")] == ["ganesha", "kernel"]
