import pytest

from dim.errors import LayoutError
from dim.layout import bulk
from dim.layout.parser import load, parse
from dim.names import BMC_ADDRESS, HOST_NAME
from tests.unit.conftest import EXAMPLES, SMALL


def per_node(monkeypatch, build):
    """``build()`` with the column-wise path turned off: the parser's per-node loop alone."""
    with monkeypatch.context() as patch:
        patch.setattr(bulk, "build", lambda *args: None)
        return build()


@pytest.mark.parametrize("example", ["bladecenter.xml", "lab.xml"])
def test_columns_build_the_same_nodes_as_the_per_node_loop(monkeypatch, example):
    # numbers of the name, index, host name templates, BMCs and per-node overrides
    assert load(EXAMPLES / example).nodes == per_node(
        monkeypatch, lambda: load(EXAMPLES / example).nodes
    )


def test_columns_build_the_small_layouts_nodes_with_its_overrides(monkeypatch):
    assert parse(SMALL).nodes == per_node(monkeypatch, lambda: parse(SMALL).nodes)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('ip="10.10.0.{10+n1}"', 'ip="10.10.0.{252+n1}"'),  # the broadcast address, then none
        ('ip="10.10.0.{10+n1}"', 'ip="10.10.0.{10+n2}"'),  # a number the name lacks
        ('ip="10.10.0.{10+n1}"', 'ip="10.10.0.{10//(n1-3)}"'),  # a division by zero
    ],
)
def test_a_faulty_node_gets_the_per_node_loops_error(monkeypatch, old, new):
    data = SMALL.decode()
    assert old in data
    data = data.replace(old, new, 1).encode()
    with pytest.raises(LayoutError) as columns:
        parse(data)
    with pytest.raises(LayoutError) as loop:
        per_node(monkeypatch, lambda: parse(data))
    assert str(columns.value) == str(loop.value)


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "a-b",
        "a.b",
        "-a",
        "a-",
        "a..b",
        ".a",
        "a.",
        "a-.b",
        "a.-b",
        "",
        "a_b",
        "é",
        "a b",
        "x" * 63,
        "x" * 64,
        "a." + "x" * 63,
        "a." + "x" * 64,
        "A9.b-c.D",
    ],
)
def test_the_whole_column_check_agrees_with_the_host_name_pattern(value):
    assert bulk._all_host_names([value]) == bool(HOST_NAME.fullmatch(value))
    assert bulk._all_host_names(["ok", value, "ok2"]) == bool(HOST_NAME.fullmatch(value))


def test_a_value_holding_a_newline_is_not_taken_for_two_valid_ones():
    assert not bulk._all_host_names(["a\nb"])
    assert not bulk._all_match(bulk._whole_column(BMC_ADDRESS.pattern), ["10.0.0.1\n10.0.0.2"])
