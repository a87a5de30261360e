"""cluster.xml's node sets and expressions are bounded: one-line LayoutErrors with file:line."""

from __future__ import annotations

import time

import pytest

from dim.errors import LayoutError
from dim.layout.nodesets import DEFAULT_LIMIT
from dim.layout.parser import parse
from tests.unit.conftest import SMALL


def changed(old: str, new: str) -> bytes:
    data = SMALL.decode()
    assert old in data
    return data.replace(old, new, 1).encode()


def test_a_group_beyond_the_node_set_limit_is_refused_before_expansion_naming_its_size():
    start = time.perf_counter()
    with pytest.raises(
        LayoutError,
        match=r"^s.xml:8: invalid node set \(c\[1-100000000\] names "
        r"100000000 nodes, more than the limit of \d+",
    ) as caught:
        parse(changed('nodes="c[01-04]"', 'nodes="c[1-100000000]"'), "s.xml")
    assert time.perf_counter() - start < 1
    assert caught.value.line == 8 and caught.value.exit_status == 2


def test_the_limit_is_the_clusters_nodeset_limit_attribute():
    assert parse(SMALL).nodeset_limit == DEFAULT_LIMIT
    data = changed('domain="t.example"', 'domain="t.example" nodeset-limit="4"')
    assert parse(data).nodeset_limit == 4
    with pytest.raises(LayoutError, match=r"names 5 nodes, more than the limit of 4"):
        parse(data.replace(b'nodes="c[01-04]"', b'nodes="c[01-05]"'))


@pytest.mark.parametrize("value", ["0", "-1", "lots", "1" * 5000])
def test_a_malformed_nodeset_limit_is_refused(value):
    with pytest.raises(LayoutError, match=r"^s.xml:2: nodeset-limit is not a positive number"):
        parse(changed('domain="t.example"', f'nodeset-limit="{value}"'), "s.xml")


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ('nodes="c[01-04]"', 'nodes="c[\u0660\u0661-\u0660\u0664]"', 8),
        ('nodes="c[01-04]"', 'nodes="c\uff10\uff11"', 8),
        ('<node name="c04"', '<node name="c\u0660\u0664"', 11),
    ],
)
def test_unicode_digits_in_node_names_are_refused(old, new, line):
    with pytest.raises(LayoutError, match=rf"^s.xml:{line}: .*is not an ASCII digit"):
        parse(changed(old, new), "s.xml")


@pytest.mark.parametrize(
    ("nodes", "message"),
    [("@gpu", "group references are not allowed"), ("c*", "wildcards are not allowed")],
)
def test_groups_and_wildcards_are_refused_in_group_node_sets(nodes, message):
    with pytest.raises(LayoutError, match=rf"^s.xml:8: {message}"):
        parse(changed('nodes="c[01-04]"', f'nodes="{nodes}"'), "s.xml")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("-" * 100_000 + "1", "expression of 100001 characters: at most 256"),
        ("+".join(["n1"] * 3000), "expression of 8999 characters: at most 256"),
        ("9" * 4000, "expression of 4000 characters: at most 256"),
        ("9" * 40, "integer of more than 18 digits"),
        ("(" * 100 + "n1" + ")" * 100, "parentheses nested 100 deep"),
        ("-" * 100 + "n1", "expression nested more than 64 deep"),
        ("n\u0661", "only printable ASCII"),
    ],
)
def test_runaway_expressions_are_one_line_layout_errors_with_file_and_line(expression, message):
    with pytest.raises(LayoutError, match=rf"^s.xml:9: {message}") as caught:
        parse(changed("{10+n1}", "{" + expression + "}"), "s.xml")
    assert "\n" not in str(caught.value)
