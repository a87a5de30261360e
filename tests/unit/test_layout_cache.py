"""The validated-layout cache: a one-node command on cluster.xml bytes validated in full
before expands no group; any other bytes are validated in full again, and their errors shown."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dim import layout_cache
from dim.actions import nodes
from dim.actions.context import Context
from dim.errors import LayoutError, UsageError
from dim.layout import declarations, parser
from dim.paths import StatePaths
from tests.unit.conftest import PAIR

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def ctx(layout_file, tmp_path) -> Context:
    (tmp_path / "state").mkdir()
    return Context(config=layout_file, state=tmp_path / "state")


def _no_full_parse(monkeypatch) -> None:
    def refused(*args, **kwargs):
        raise AssertionError("cluster.xml was parsed in full")

    monkeypatch.setattr(parser, "parse", refused)


def test_a_node_of_a_layout_parsed_in_full_is_read_back_without_expansion(ctx, monkeypatch):
    full = ctx.cluster()  # leaves the cache
    _no_full_parse(monkeypatch)
    assert ctx.one_node("c04").nodes == (full.node("c04"),)
    assert ctx.one_node("g2").nodes == (full.node("g2"),)
    nodes.set_mac(ctx, "c02", "52:54:00:00:00:02")
    nodes.set_image(ctx, "g1", "alpha")
    assert ctx.observed().images == {"g1": "alpha"}


def test_node_list_of_one_node_reads_the_cache_and_shows_what_the_full_layout_shows(
    ctx, monkeypatch
):
    nodes.set_mac(ctx, "c02", "52:54:00:00:00:02")  # parses in full: leaves the cache
    nodes.set_image(ctx, "c02", "alpha")
    expected = [r for r in nodes.records(ctx) if r["name"] == "c02"]
    _no_full_parse(monkeypatch)
    assert nodes.records(ctx, "c02") == expected
    assert expected[0]["image"] == "alpha" and expected[0]["interfaces"][0]["mac"]


def test_without_a_cache_or_for_another_name_the_layout_is_parsed_in_full(ctx):
    assert ctx.one_node("c01") is None  # never parsed in full
    ctx.cluster()
    assert ctx.one_node("c09") is None and ctx.one_node("c[01-02]") is None
    with pytest.raises(UsageError, match="c09"):
        nodes.set_mac(ctx, "c09", "52:54:00:00:00:09")


def test_edited_bytes_miss_the_cache_and_are_validated_in_full(ctx):
    ctx.cluster()
    before = list((ctx.state / layout_cache.FOLDER).iterdir())
    # a duplicate address that only the expansion of every node shows
    edited = ctx.config.read_bytes().replace(b"10.10.0.{100+i}", b"10.10.0.{10+i}")
    ctx.config.write_bytes(edited)
    assert ctx.one_node("c01") is None
    with pytest.raises(LayoutError, match="10.10.0.11"):
        nodes.set_mac(ctx, "c01", "52:54:00:00:00:01")
    assert list((ctx.state / layout_cache.FOLDER).iterdir()) == before  # nothing cached


def test_the_cache_of_older_bytes_is_replaced(ctx):
    ctx.cluster()
    ctx.config.write_bytes(ctx.config.read_bytes().replace(b"c[01-04]", b"c[01-05]"))
    ctx.cluster()
    (only,) = (ctx.state / layout_cache.FOLDER).iterdir()
    assert only.name == f"{layout_cache.key(ctx.config.read_bytes())}.db"
    assert ctx.one_node("c05") is not None


def test_a_writer_killed_half_way_leaves_nothing_for_long_and_one_at_work_is_spared(ctx):
    folder = ctx.state / layout_cache.FOLDER
    folder.mkdir(parents=True)
    killed, working = folder / ".old.db.12345", folder / ".new.db.12346"
    killed.write_bytes(b"half")
    working.write_bytes(b"half")
    an_hour_ago = time.time() - layout_cache.STALE_SECONDS - 1
    os.utime(killed, (an_hour_ago, an_hour_ago))
    ctx.cluster()
    assert not killed.exists() and working.exists()


def test_a_cache_that_cannot_be_written_is_no_error(ctx):
    ctx.state.mkdir(parents=True, exist_ok=True)
    (ctx.state / layout_cache.FOLDER).write_text("a file where the folder would be")
    assert ctx.cluster().node("c01") is not None
    assert ctx.one_node("c01") is None  # no cache: the next command parses in full


def test_a_reading_command_without_a_state_folder_makes_none(layout_file, tmp_path):
    ctx = Context(config=layout_file, state=tmp_path / "nowhere")
    ctx.cluster()
    assert not (tmp_path / "nowhere").exists()
    assert layout_cache.lookup(StatePaths(ctx.state), b"", "c01") is layout_cache.MISSING


def test_a_full_apply_leaves_the_cache_for_the_node_set_after_it(ctx, tmp_path):
    from dim.actions.apply import apply

    apply(ctx, root=tmp_path / "root", do_reload=False, validation=False)
    assert ctx.one_node("c01") is not None


def test_the_declarations_of_a_layout_parsed_in_full_are_read_back_without_the_parser(
    ctx, monkeypatch, tmp_path
):
    data = ctx.config.read_bytes()
    expected = parser.parse_declarations(data, str(ctx.config))
    ctx.cluster()
    monkeypatch.setattr(parser, "parse_declarations", None)  # never called
    assert ctx.declarations(data) == expected
    # the same bytes read from another file: errors name that file
    other = Context(config=tmp_path / "other.xml", state=ctx.state)
    assert other.declarations(data).source == str(tmp_path / "other.xml")


def cached_then_spoiled(ctx, sql: str) -> bytes:
    """The layout's bytes, once cached by a full parse and then ``sql`` run on that cache."""
    import sqlite3

    data = ctx.config.read_bytes()
    ctx.cluster()
    (where,) = (ctx.state / layout_cache.FOLDER).iterdir()
    with sqlite3.connect(where) as connection:
        connection.execute(sql)
    return data


def test_a_cache_whose_declarations_cannot_be_read_is_a_miss(ctx):
    data = cached_then_spoiled(ctx, 'UPDATE meta SET declarations = \'{"t": "eval", "v": "1"}\'')
    assert layout_cache.declarations(StatePaths(ctx.state), data, "x.xml") is None
    assert ctx.declarations(data) == parser.parse_declarations(data, str(ctx.config))


@pytest.mark.parametrize("name", ["lab.xml", "bladecenter.xml", "failover pair"])
def test_declarations_come_back_equal_from_their_text(name):
    data = PAIR if name == "failover pair" else (EXAMPLES / name).read_bytes()
    full = parser.parse(data, name)
    decoded = declarations.decode(declarations.encode(full))
    assert decoded == parser.parse_declarations(data, name)
    assert decoded.nodes == () and decoded.by_name == {}


@pytest.mark.parametrize("name", ["lab.xml", "bladecenter.xml"])
def test_a_whole_layout_parsed_in_full_comes_back_equal_in_layout_order(name, tmp_path):
    (tmp_path / "state").mkdir()
    ctx = Context(config=EXAMPLES / name, state=tmp_path / "state")
    full = ctx.cluster()
    cached = layout_cache.cluster(StatePaths(ctx.state), ctx.config.read_bytes(), str(ctx.config))
    assert cached == full
    assert [n.name for n in cached.nodes] == [n.name for n in full.nodes]
    assert cached.by_name == full.by_name


def test_layout_check_and_node_list_of_bytes_validated_before_parse_nothing(ctx, monkeypatch):
    from dim.actions import layout

    nodes.set_mac(ctx, "c02", "52:54:00:00:00:02")  # parses in full: leaves the cache

    def reports():
        return layout.check(ctx), nodes.records(ctx), nodes.records(ctx, "@compute", "c01")

    expected = reports()
    _no_full_parse(monkeypatch)
    assert reports() == expected


def test_layout_check_of_edited_bytes_validates_them_in_full(ctx):
    from dim.actions import layout

    layout.check(ctx)
    edited = ctx.config.read_bytes().replace(b"10.10.0.{100+i}", b"10.10.0.{10+i}")
    ctx.config.write_bytes(edited)
    with pytest.raises(LayoutError, match="10.10.0.11"):
        layout.check(ctx)


def test_a_cache_whose_nodes_cannot_be_read_is_a_miss(ctx):
    data = cached_then_spoiled(ctx, "UPDATE nodes SET record = 'not a node' WHERE name = 'c01'")
    assert layout_cache.cluster(StatePaths(ctx.state), data, "x.xml") is None
    assert ctx.cluster(cached=True) == parser.parse(data, str(ctx.config))
