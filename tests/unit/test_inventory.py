import pytest

from dim.errors import UsageError
from dim.inventory import fold, select, summary


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


def test_summary_reports_missing_macs_and_image_use(small_inventory):
    report = summary(small_inventory)
    assert report["nodes"] == 6
    assert report["groups"] == {"compute": 4, "gpu": 2}
    assert report["images"] == {"alpha": 2, "beta": 4}
    assert report["nodes_without_mac"] == "c03,g2"
