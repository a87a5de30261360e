"""Fuzzing (Hypothesis) of what dim reads from people: any input is taken or refused with a
DimError of exit status 2, never another exception.

Reproducible: derandomized, no example database, so CI runs the same examples every time; a
few hundred examples each keep the whole file to a few seconds.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dim.errors import DimError
from dim.inventory import select
from dim.layout.expressions import ExpressionError, compile_template
from dim.layout.nodesets import NodeSetError, expand, scan
from dim.layout.parser import parse
from dim.state import parse_mac_csv
from tests.unit.conftest import SMALL

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# The small layout, with a node-set limit low enough that no example expands for long.
LIMITED = SMALL.replace(b'domain="t.example"', b'domain="t.example" nodeset-limit="5000"')
CLUSTER = parse(LIMITED, "small.xml")

NODESET_CHARS = "cg01249[]-,!&^@/*?: %\u0660\uff11\u00e9x"
nodeset_texts = st.one_of(
    st.text(alphabet=NODESET_CHARS, max_size=30),
    st.text(max_size=12),
    st.lists(
        st.sampled_from(
            [
                "c01",
                "c[01-04]",
                "g[1-2]",
                "@compute",
                "@gpu",
                "@all",
                "@*",
                "c0*",
                "zz",
                "c[1-99999]",
                "[",
                "]",
                "",
                "@",
                "c[4-1]",
                "c[01-04/2]",
                "c0[1-2]",
                "@rack[1-2]",
            ]
        ),
        max_size=5,
    ).flatmap(
        lambda parts: st.lists(
            st.sampled_from(",!&^"), min_size=len(parts), max_size=len(parts)
        ).map(lambda ops: "".join(op + part for op, part in zip(ops, parts, strict=True))[1:])
    ),
)


def assert_refused_as_usage(exc: DimError) -> None:
    assert exc.exit_status == 2, f"{type(exc).__name__} exits {exc.exit_status}: {exc}"
    assert "\n" not in str(exc)


@FUZZ
@given(pattern=nodeset_texts, exclude=st.none() | nodeset_texts, empty_ok=st.booleans())
@example(pattern="c[1-100000000]", exclude=None, empty_ok=True)
@example(pattern="c\u0660\u0661", exclude="@typo", empty_ok=False)
@example(pattern="c" + "1" * 5000, exclude=None, empty_ok=False)
def test_any_node_set_selects_layout_nodes_or_is_a_usage_error(pattern, exclude, empty_ok):
    try:
        nodes = select(CLUSTER, pattern, exclude, empty_ok=empty_ok)
    except DimError as exc:
        assert_refused_as_usage(exc)
        return
    positions = [CLUSTER.nodes.index(node) for node in nodes]
    assert positions == sorted(set(positions))
    assert nodes or empty_ok


def layout_with(nodes: str, ip: str, override: str) -> bytes:
    data = LIMITED.decode()
    data = data.replace('nodes="c[01-04]"', f"nodes={quoteattr(nodes)}")
    data = data.replace('ip="10.10.0.{10+n1}"', f"ip={quoteattr(ip)}")
    data = data.replace('<node name="c04"', f"<node name={quoteattr(override)}")
    return data.encode()


expression_texts = st.one_of(
    st.text(alphabet="n123i+-*/%() {}:0xd", max_size=40),
    st.text(max_size=20),
    st.builds("{}{}".format, st.text(alphabet="-+(", max_size=300), st.sampled_from(["n1", "9"])),
)


@FUZZ
@given(
    nodes=st.one_of(nodeset_texts, st.just("c[01-04]")),
    ip=st.one_of(expression_texts.map("10.10.0.{{{}}}".format), st.just("10.10.0.{10+n1}")),
    override=st.one_of(nodeset_texts, st.just("c04")),
)
@example(nodes="c[1-100000000]", ip="10.10.0.{n1}", override="c04")
@example(nodes="c[01-04]", ip="10.10.0.{" + "-" * 100_000 + "1}", override="c04")
@example(nodes="c[01-04]", ip="10.10.0.{" + "+".join(["n1"] * 5000) + "}", override="c04")
@example(nodes="c[01-04]", ip="10.10.0.{" + "9" * 4000 + "}", override="c04")
def test_any_group_in_cluster_xml_parses_or_is_a_layout_error(nodes, ip, override):
    try:
        cluster = parse(layout_with(nodes, ip, override), "fuzz.xml")
    except DimError as exc:
        assert_refused_as_usage(exc)
        return
    assert len(cluster.nodes) <= 5000 + 2


@FUZZ
@given(data=st.binary(max_size=400))
@example(data=b"\x00")  # lxml's message for it ended in a newline: a two-line error
def test_any_bytes_as_cluster_xml_parse_or_are_a_layout_error(data):
    mutated = LIMITED[: len(data)] + data + LIMITED[len(data) * 2 :]
    for candidate in (data, mutated):
        try:
            parse(candidate, "fuzz.xml")
        except DimError as exc:
            assert_refused_as_usage(exc)


@FUZZ
@given(
    text=expression_texts.map("{{{}}}".format) | st.text(max_size=30),
    numbers=st.lists(st.integers(-(10**6), 10**6), max_size=4).map(tuple),
    index=st.integers(0, 10**6),
)
def test_any_template_renders_or_is_an_expression_error(text, numbers, index):
    try:
        compile_template(text).render(numbers, index, "n1")
    except ExpressionError as exc:
        assert "\n" not in str(exc)


mac_rows = st.lists(
    st.tuples(
        st.sampled_from(["c01", "c02", "g1", "zz", "node", "#c", '"c03\n"', "c\u0660\u0661", ""]),
        st.sampled_from(["52:54:00:00:00:01", "52-54-00-00-00-02", "x", "", '"a\nb"', "a" * 300]),
        st.sampled_from(["", ",boot", ",bmc", ",,", ',"x']),
    ).map("".join),
    max_size=6,
)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda bom, rows, newline: bom + newline.join(rows).encode(),
            st.sampled_from([b"", b"\xef\xbb\xbf"]),
            mac_rows,
            st.sampled_from(["\n", "\r\n", "\r"]),
        ),
    )
)
@example(data=b"node,mac\nc01," + b"a" * 200_000 + b"\n")
@example(data=b"c01,52:54:00:00:00:01\n\xff\n")
def test_any_mac_file_is_read_or_is_a_usage_error(data):
    try:
        parse_mac_csv(data, "fuzz.csv", CLUSTER)
    except DimError as exc:
        assert_refused_as_usage(exc)


ranges = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 12), st.sampled_from(["", "0", "00"])).map(
        lambda r: f"{r[2]}{r[0]}" + (f"-{r[2]}{r[0] + r[1]}" if r[1] else "")
    ),
    min_size=1,
    max_size=4,
).map(lambda items: "[" + ",".join(items) + "]")
patterns = st.lists(
    st.tuples(st.sampled_from(["", "0", "1", "12", "-", "a", "b0", "1c"]), ranges),
    min_size=1,
    max_size=3,
).map(lambda parts: "n" + "".join(sep + rng for sep, rng in parts) + "x")


@FUZZ
@given(pattern=patterns)
@example(pattern="n[1-10]0[1-3]x")
@example(pattern="n[1-10][0-10]x")
def test_the_names_a_pattern_makes_for_certain_are_never_overcounted(pattern):
    """inventory.select refuses a pattern without expanding it when ``least`` exceeds the
    layout's nodes: ``least`` must never be more than the distinct names ClusterShell makes."""
    try:
        (term,) = scan(pattern)
        names = expand(term)
    except NodeSetError:
        return
    assert term.least <= len(set(names)) <= term.size
