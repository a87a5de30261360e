"""Node sets on the command line: a typo is an error that names it, and nothing is done."""

from __future__ import annotations

import json
import time

import pytest


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-x", "@typo"], "@typo"),
        (["c01!nosuch"], "nosuch"),
        (["&zz1"], "missing operand before '&'"),
        (["c01&zz1"], "zz1"),
        (["-x", "zz[1-3]"], "zz[1-3]"),
        ([""], "an empty node set names no node"),
        (["c\u0660\u0661"], "is not an ASCII digit"),
        (["c\uff10\uff11"], "is not an ASCII digit"),
    ],
)
def test_node_list_refuses_a_typo_anywhere_naming_it_and_lists_nothing(dim, args, named):
    status, out, err = dim("node", "list", *args)
    assert (status, out) == (2, "")
    assert err.startswith("dim: error: ") and named in err


def test_an_unknown_group_after_exclusion_is_an_error_and_acts_on_nothing(dim):
    status, _, err = dim("node", "set", "@compute", "-x", "@typo", "--image", "beta")
    assert status == 2, err
    status, _, err = dim("node", "set", "@compute!@typo", "--image", "beta")
    assert status == 2 and "unknown group(s) @typo" in err
    status, out, _ = dim("node", "list", "@compute", "--json")
    assert status == 0
    assert [r["image"] for r in json.loads(out)] == ["alpha", "alpha", "alpha", "beta"]


def test_an_empty_result_is_an_empty_list_for_listing_and_an_error_for_acting(dim):
    status, out, err = dim("node", "list", "@compute!@compute", "--json")
    assert (status, json.loads(out)) == (0, [])
    status, out, err = dim("layout", "show", "@compute", "-x", "@compute", "--json")
    assert (status, json.loads(out)) == (0, [])
    for args in (
        ["node", "set", "@gpu!g[1-2]", "--image", "alpha"],
        ["node", "switch", "c01!c01", "alpha"],
        ["node", "reset", "@gpu^@gpu", "--yes"],
        ["node", "diff", "c01&g1"],
        ["power", "off", "@gpu", "-x", "@gpu", "--yes"],
    ):
        status, out, err = dim(*args)
        assert status == 2, (args, err)
        assert "names no node" in err and "hint: nothing was done" in err


def test_an_oversized_node_set_fails_at_once_naming_its_size(dim):
    start = time.perf_counter()
    status, out, err = dim("node", "list", "n[1-100000000]")
    elapsed = time.perf_counter() - start
    assert (status, out) == (2, "")
    assert "names 100000000 nodes, more than the limit of 2000000" in err
    assert elapsed < 2


def test_import_macs_accepts_a_byte_order_mark_and_reports_bad_bytes_by_line(dim, tmp_path):
    csv = tmp_path / "macs.csv"
    csv.write_bytes("\ufeffnode,mac\nc01,52:54:00:00:00:01\n".encode())
    status, out, err = dim("node", "import-macs", str(csv))
    assert status == 0, err
    csv.write_bytes(b'node,mac\n"c02\n",52:54:00:00:00:02\nc03,52:54:00:00:00:0\xff\n')
    status, out, err = dim("node", "import-macs", str(csv))
    assert status == 2
    assert err.startswith(f"dim: error: {csv}:4: byte 0xff is not UTF-8 text\n")
    csv.write_bytes(b"node,mac\nc02,52:54:00:00:00:02\nc03," + b"a" * 200_000 + b"\n")
    status, out, err = dim("node", "import-macs", str(csv))
    assert status == 2 and err.startswith(f"dim: error: {csv}:3: ")
    assert err.count("\n") == 1


def test_a_runaway_expression_in_the_layout_is_one_line_with_file_and_line(dim, layout_file):
    text = layout_file.read_text()
    for expression in ("-" * 100_000 + "1", "+".join(["n1"] * 5000), "9" * 4000):
        layout_file.write_text(text.replace("{10+n1}", "{" + expression + "}", 1))
        status, out, err = dim("layout", "check")
        assert status == 2
        assert err.startswith(f"dim: error: {layout_file}:9: ") and err.count("\n") == 1


@pytest.mark.parametrize("name", ["c01\nc02", "c01\tzz\x1b[31m", "zz\r\x00"])
def test_a_node_name_with_control_characters_is_refused_on_one_escaped_line(dim, name):
    status, out, err = dim("node", "list", name)
    assert (status, out) == (2, "")
    error, *rest = err.splitlines()
    assert error.startswith("dim: error: ") and all(line.startswith("hint: ") for line in rest)
    assert error.isprintable() and all(line.isprintable() for line in rest)
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)
    assert escaped in error
