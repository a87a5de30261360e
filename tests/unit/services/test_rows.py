"""Rows kept as columns (dim.services.rows): the rows Jinja2 iterates, the text compiled
templates join, the same either way."""

from dataclasses import dataclass

import pytest

from dim.services.nfs import _runs
from dim.services.rows import Rows, affixed, joined


@dataclass(slots=True)
class Pair:
    name: str
    ip: str


def test_rows_are_made_from_the_columns_when_iterated_or_indexed():
    rows = Rows(Pair, ["n1", "n2", "n3"], ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    assert len(rows) == 3 and bool(rows)
    assert list(rows) == [Pair("n1", "10.0.0.1"), Pair("n2", "10.0.0.2"), Pair("n3", "10.0.0.3")]
    assert rows[-1] == Pair("n3", "10.0.0.3")
    assert list(rows[1:]) == [Pair("n2", "10.0.0.2"), Pair("n3", "10.0.0.3")]
    assert rows == [Pair("n1", "10.0.0.1"), Pair("n2", "10.0.0.2"), Pair("n3", "10.0.0.3")]
    assert not Rows(Pair, [], [])


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        Rows(tuple, ["a"], [])


def test_affixed_gives_the_comprehensions_strings_even_with_a_newline_in_a_value():
    values = ["52:54:00:00:00:01", "n\nx", ""]
    assert affixed("/srv/", values, ".cfg") == [f"/srv/{v}.cfg" for v in values]
    assert affixed("a\n", ["b"], "") == ["a\nb"]
    assert affixed("/x/", [], ".cfg") == []


def test_joined_puts_each_rows_values_side_by_side():
    assert joined(["m1", "m2"], ",", ["10.0.0.1", "10.0.0.2"], "\n") == (
        "m1,10.0.0.1\nm2,10.0.0.2\n"
    )


def test_runs_of_consecutive_addresses_are_found_whatever_their_lengths():
    assert _runs([]) == []
    assert _runs([7]) == [(7, 7)]
    assert _runs([1, 2, 3, 5, 8, 9]) == [(1, 3), (5, 5), (8, 9)]
