"""parse_mac_csv: what spreadsheets write is read, what is broken is reported by file:line."""

from __future__ import annotations

import pytest

from dim.errors import StateError
from dim.state import parse_mac_csv


def test_a_byte_order_mark_is_not_part_of_the_first_node_name(small_cluster):
    data = "\ufeffc01,52:54:00:00:00:01\n".encode()
    assert parse_mac_csv(data, "m.csv", small_cluster) == {("c01", "boot"): "52:54:00:00:00:01"}
    header = "\ufeffnode,mac\r\nc02,52:54:00:00:00:02\r\n"
    assert parse_mac_csv(header, "m.csv", small_cluster) == {("c02", "boot"): "52:54:00:00:00:02"}


def test_bytes_that_are_not_utf8_are_reported_by_line(small_cluster):
    data = b"node,mac\nc01,52:54:00:00:00:01\n# caf\xe9\n"
    with pytest.raises(StateError, match=r"^m.csv:3: byte 0xe9 is not UTF-8 text$") as caught:
        parse_mac_csv(data, "m.csv", small_cluster)
    assert "UTF-8" in caught.value.hint and caught.value.exit_status == 2


@pytest.mark.parametrize("size", [300, 200_000])
def test_an_overlong_field_is_reported_by_file_and_line(small_cluster, size):
    data = b"node,mac\n\nc01," + b"a" * size + b"\n"
    with pytest.raises(StateError, match=r"^m.csv:3: ") as caught:
        parse_mac_csv(data, "m.csv", small_cluster)
    assert len(str(caught.value)) < 200


def test_lines_are_counted_right_after_a_quoted_field_that_spans_lines(small_cluster):
    data = b'node,mac\n"c01\n",52:54:00:00:00:01\n"c02\n",52:54:00:00:00:02\nzz,52:54:00:00:00:03\n'
    with pytest.raises(StateError, match=r"^m.csv:6: unknown node 'zz'"):
        parse_mac_csv(data, "m.csv", small_cluster)
    data = b'node,mac\n"c01\n",52:54:00:00:00:01\nc01,52:54:00:00:00:09\n'
    with pytest.raises(StateError, match=r"^m.csv:4: node c01 \(boot\) appears twice"):
        parse_mac_csv(data, "m.csv", small_cluster)


def test_a_node_name_with_unicode_digits_is_refused(small_cluster):
    with pytest.raises(StateError, match=r"^m.csv:1: unknown node 'c\u0660\u0661'"):
        parse_mac_csv("c\u0660\u0661,52:54:00:00:00:01\n".encode(), "m.csv", small_cluster)
