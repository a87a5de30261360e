"""Splicing lines into an installed file (dim.services.incremental): the searches' hints."""

from __future__ import annotations

from dim.services import incremental


def test_a_line_is_found_before_the_hint_as_after_it():
    # A hint is where a node's old line was; other nodes' cuts and insertions move lines
    # around it, so the line looked for may now start before it, or hold it.
    text = b"host a { x; }\nhost b { y; }\nhost c { z; }\n"
    assert incremental._find_entry(text, b"{ x;", near=23) == 0
    assert incremental._find_entry(text, b"{ y;", near=23) == 14
    assert incremental._find_entry(text, b"{ z;", near=23) == 28
    assert incremental._find_entry(text, b"{ q;", near=23) == -1
