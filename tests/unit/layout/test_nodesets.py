"""dim.layout.nodesets: node-set expressions scanned, checked and counted before expansion."""

from __future__ import annotations

import random
import time

import pytest
from ClusterShell.NodeSet import NOGROUP_RESOLVER, NodeSet

from dim.inventory import fold
from dim.layout.nodesets import (
    DEFAULT_LIMIT,
    MAX_DIGITS,
    NodeSetError,
    Term,
    expand,
    fold_plain,
    product_names,
    scan,
)


def test_operands_are_split_at_operators_outside_brackets_only():
    assert scan("@rack1!n[01-10,12]&n[1-3]b[1-2]^x") == (
        Term(",", "@rack1", 1, 1),
        Term("!", "n[01-10,12]", 11, 10),
        Term("&", "n[1-3]b[1-2]", 6, 6),
        Term("^", "x", 1, 1),
    )


def test_a_node_set_is_counted_from_its_ranges_without_expanding_it():
    start = time.perf_counter()
    (term,) = scan("s[1-100000]c[1-100000]b[1-100000/7]", limit=10**20)
    assert term.size == 100_000 * 100_000 * 14_286
    assert time.perf_counter() - start < 0.1


def test_a_node_set_beyond_the_limit_is_refused_naming_its_size():
    start = time.perf_counter()
    with pytest.raises(NodeSetError, match=r"names 100000000 nodes, more than the limit of "):
        scan("n[1-100000000]")
    assert time.perf_counter() - start < 0.1
    with pytest.raises(NodeSetError, match=r"names 11 nodes, more than the limit of 10"):
        scan("a[1-5],b[1-6]", limit=10)
    assert scan("n[1-10]", limit=10)[0].size == 10
    assert DEFAULT_LIMIT >= 1_000_000


@pytest.mark.parametrize(
    "text",
    ["node\u0660\u0661", "n[\u0661-\u0663]", "n\uff11\uff12", "@rack\u0661", "c01!c\u0966\u0967"],
)
def test_unicode_digits_are_refused_naming_the_character(text):
    with pytest.raises(NodeSetError, match=r"is not an ASCII digit: node names use the digits"):
        scan(text)


def test_other_non_ascii_characters_are_refused():
    with pytest.raises(NodeSetError, match=r"U\+00E9.* is not ASCII"):
        scan("nod\u00e9")


@pytest.mark.parametrize("text", ["", "  ", "a,", ",a", "a!!b", "a&", "^a", "a, ,b"])
def test_an_empty_node_set_or_operand_is_refused(text):
    with pytest.raises(NodeSetError, match=r"empty node set|missing operand"):
        scan(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("n[1-3", r"'\[' without '\]'"),
        ("n1-3]", r"'\]' without '\['"),
        ("n[1-[3]]", r"'\[' inside brackets"),
        ("n[3-1]", r"names no number"),
        ("n[1-9/0]", r"names no number"),
        ("n[a-b]", r"invalid range 'a-b'"),
        ("n[]", r"invalid range ''"),
        ("n[1-" + "9" * 40 + "]", rf"has 40 digits; at most {MAX_DIGITS}"),
        ("n" + "1" * 5000, rf"has 5000 digits; at most {MAX_DIGITS}"),
    ],
)
def test_malformed_ranges_and_overlong_numbers_are_refused(text, message):
    with pytest.raises(NodeSetError, match=message):
        scan(text)


def test_expand_makes_the_names_of_one_operand_without_groups():
    nodes, group = scan("n[08-10]b[1-2],@rack[1-2]")
    assert expand(nodes) == ["n08b1", "n08b2", "n09b1", "n09b2", "n10b1", "n10b2"]
    assert expand(group) == ["rack1", "rack2"]


def test_expand_reports_what_clustershell_refuses_as_a_node_set_error():
    (term,) = scan("n[1-2][3-4]")
    with pytest.raises(NodeSetError, match=r"n\[1-2\]\[3-4\]"):
        expand(term)


@pytest.mark.parametrize(
    ("text", "size", "least"),
    [
        ("n[1-10]-[1-3]", 30, 30),  # a non-digit between brackets: every pair is a name
        ("n[1-3,2-4]", 6, 3),  # overlapping ranges: counted twice in size, once in least
        ("n1[0-10]", 101, 1),  # ClusterShell joins the digit before a bracket: n[10-110]
        ("n1[0-9,10-19]", 110, 1),
        ("n0[0,00]", 2, 1),  # zero-padded: 00 and 000 are two names of the number 0
        ("n[0-10]1", 11, 11),  # digits after a bracket: n[01-101/10], as many numbers
    ],
)
def test_a_pattern_counts_at_most_and_at_least_the_names_clustershell_makes(text, size, least):
    (term,) = scan(text)
    assert (term.size, term.least) == (size, least)


def test_leading_digits_cannot_slip_a_large_set_under_the_limit():
    with pytest.raises(NodeSetError, match=r"names 10999991 nodes, more than the limit"):
        scan("n1[0-1000000]")


def test_a_plain_name_expands_and_folds_to_itself_as_clustershell_does():
    """expand and fold answer a plain name without ClusterShell: they must agree with it."""
    from itertools import product

    from ClusterShell.NodeSet import NOGROUP_RESOLVER, NodeSet

    names = ["".join(p) for n in range(1, 4) for p in product("aZ09._-", repeat=n)]
    names += ["r101n001", "s01c1b01", "node-1.example", "00", "n0-1"]
    for name in names:
        (term,) = scan(name)
        assert expand(term) == list(NodeSet(name, resolver=NOGROUP_RESOLVER)) == [name]
        assert fold([name, name]) == str(NodeSet.fromlist([name])) == name


def _random_pattern(rng: random.Random) -> str:
    """Text of letters, dots, dashes and digits around up to three brackets of ranges, some
    zero-padded (to one width or to several)."""

    def text(most: int) -> str:
        return "".join(rng.choice("ab-._01") for _ in range(rng.randint(0, most)))

    def item() -> str:
        first = rng.randint(0, 120)
        last = first + rng.randint(0, 30)
        pad = rng.choice([0, 0, 2, 3])
        a, b = str(first).zfill(pad), str(last).zfill(pad)
        return rng.choice([a, f"{a}-{b}", f"{a}-{b}/{rng.randint(1, 4)}"])

    parts = [text(4)]
    for _ in range(rng.randint(0, 3)):
        parts += ["[" + ",".join(item() for _ in range(rng.randint(1, 3))) + "]", text(3)]
    return "".join(parts)


def test_a_plain_pattern_makes_clustershells_names_in_its_order_and_folds_as_it_does():
    rng = random.Random(14)
    plain = 0
    for _ in range(3000):
        pattern = _random_pattern(rng)
        try:
            scan(pattern)
        except NodeSetError:
            continue
        names = product_names(pattern)
        assert (names is None) == (fold_plain(pattern) is None), pattern
        if names is not None:  # None: ClusterShell's to expand, as before
            nodeset = NodeSet(pattern, resolver=NOGROUP_RESOLVER)
            assert names == list(nodeset), pattern
            assert fold_plain(pattern) == str(nodeset), pattern
            plain += 1
    assert plain > 1000  # most patterns were plain: the comparison proved something


@pytest.mark.parametrize(
    "pattern",
    ["n[01-10,100]", "n[1-10,05]", "n1[0-10]", "n[1-2]0", "n%[1-2]", "n [1-2]"],
)
def test_a_pattern_that_is_not_plain_is_left_to_clustershell(pattern):
    assert product_names(pattern) is None
    assert expand(Term(",", pattern, 1)) == list(NodeSet(pattern, resolver=NOGROUP_RESOLVER))


def test_clustershells_errors_stay_its_own_for_a_pattern_that_is_not_plain():
    assert product_names("n[1-2][3-4]") is None
    with pytest.raises(NodeSetError, match=r"n\[1-2\]\[3-4\]: illegal reopening bracket"):
        expand(Term(",", "n[1-2][3-4]", 4))
