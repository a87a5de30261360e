"""Node-set expressions, checked and counted before anything is expanded.

ClusterShell's ``NodeSet`` is the reference for the syntax (``n[01-10]``, ``@group``, the
operators ``,`` ``!`` ``&`` ``^`` applied left to right), but it turns every range into a
Python set as it parses: ``n[1-100000000]`` takes minutes and gigabytes before anyone can say
it is too large. It also reads Unicode digits as numbers (``node٠١`` is ``node1``). So an
expression is scanned here first, into its operands, each with the number of names its ranges
make, counted from the ranges themselves::

    >>> [(t.op, t.text, t.size) for t in scan("@rack1!n[01-10]&n[1-3]b[1-2]")]
    [(',', '@rack1', 1), ('!', 'n[01-10]', 10), ('&', 'n[1-3]b[1-2]', 6)]
    >>> scan("n[1-100000000]")
    Traceback (most recent call last):
    NodeSetError: n[1-100000000] names 100000000 nodes, more than the limit of 2000000 (…)

Only then is an operand expanded (:func:`expand`): a plain pattern (``s[01-46]c[1-4]b[01-14]``:
ranges in brackets, a letter, dot or dash on each side of every bracket, one width per padded
bracket) here, as the product of its ranges in ClusterShell's order (:func:`product_names`);
anything else by ClusterShell, without any group resolver. ClusterShell's import (logging,
subprocess, configparser: 52 M instructions, a quarter of ``dim layout check``'s own work)
is then paid only by the layouts and command lines that need it. What an operand means in a
cluster (which groups and nodes exist) is for the caller: :func:`dim.inventory.select` on the
command line, :mod:`dim.layout.parser` for cluster.xml.
"""

from __future__ import annotations

import math
import re
import unicodedata
from itertools import product

from dim.structs import struct

ALL_GROUP = "all"  # @all: every node of the layout
DEFAULT_LIMIT = 2_000_000  # names in one node set; <cluster nodeset-limit="…"> changes it
MAX_DIGITS = 18  # digits in one number of a node name: beyond, no cluster has that many nodes
MAX_MASKS = 1000  # wildcard masks in one operand (each is matched against every node)
OPERATORS = ",!&^"
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+)(?:/([0-9]+))?)?")
_DIGITS = re.compile(r"[0-9]+")
# The text around and between the brackets of a plain pattern: ClusterShell takes digits next
# to a bracket into its bounds (n1[0-10] is n[10-110]), and gives % and the like meanings.
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9._-]*")


class NodeSetError(ValueError):
    """A node set that is malformed or too large; the caller adds where it comes from."""


@struct(frozen=True, slots=True)
class Term:
    """One operand of an expression, with the operator that joins it to those before it."""

    op: str  # "," union, "!" difference, "&" intersection, "^" symmetric difference
    text: str  # stripped: "n[01-10]", "@rack1", "s01*"
    size: int  # names its ranges make: nodes, groups (for "@…") or wildcard masks
    least: int = 1  # distinct names it makes for certain (size counts overlaps twice)

    @property
    def is_group(self) -> bool:
        return self.text.startswith("@")

    @property
    def is_wildcard(self) -> bool:
        return not self.is_group and ("*" in self.text or "?" in self.text)


def scan(text: str, limit: int = DEFAULT_LIMIT) -> tuple[Term, ...]:
    """The operands of ``text``, checked and counted; :class:`NodeSetError` if malformed.

    Refused: an empty expression or operand, a character that is not ASCII (a Unicode digit
    in particular), unbalanced brackets, a malformed or descending range, a number of more
    than :data:`MAX_DIGITS` digits, and more than ``limit`` names in all.
    """
    _check_ascii(text)
    if not text.strip():
        raise NodeSetError("an empty node set names no node")
    parts = _split(text)
    for index, (op, operand) in enumerate(parts):
        if not operand.strip():
            where = f"before {parts[1][0]!r}" if index == 0 else f"after {op!r}"
            raise NodeSetError(f"missing operand {where} in {_short(text)}")
    terms = tuple(_term(op, operand) for op, operand in parts)
    total = sum(t.size for t in terms)
    if total > limit:
        raise NodeSetError(
            f"{_short(text)} names {total} nodes, more than the limit of {limit} "
            '(<cluster nodeset-limit="…"> in cluster.xml raises it)'
        )
    masks = max((t.size for t in terms if t.is_wildcard), default=0)
    if masks > MAX_MASKS:
        raise NodeSetError(f"{_short(text)}: a wildcard pattern makes at most {MAX_MASKS} masks")
    return terms


def expand(term: Term) -> list[str]:
    """The names ``term``'s pattern makes: nodes, group names (without ``@``) or masks.

    Call it only on a term :func:`scan` returned: its size is bounded then.
    """
    pattern = term.text[1:] if term.is_group else term.text
    names = None if term.is_wildcard else product_names(pattern)
    if names is not None:
        return names
    # here: most node sets are plain patterns, which need none of ClusterShell's imports
    from ClusterShell.NodeSet import NOGROUP_RESOLVER, NodeSet, NodeSetException
    from ClusterShell.RangeSet import RangeSetException

    try:
        return list(NodeSet(pattern, resolver=NOGROUP_RESOLVER))
    except (NodeSetException, RangeSetException, ValueError) as exc:
        raise NodeSetError(f"{term.text}: {exc}") from None


def product_names(pattern: str) -> list[str] | None:
    """The names of a plain pattern, in the order ClusterShell's ``NodeSet`` gives them; None
    for any other pattern (ClusterShell's to expand).

    Plain: text (letters, digits, ``.``, ``_``, ``-``; no digit next to a bracket, some text
    between two brackets) and brackets of ranges (``1``, ``1-10``, ``1-10/2``) whose bounds
    are unpadded, or all of one width when one is padded; :func:`scan` checked them and
    their count. ClusterShell sorts each bracket's numbers and iterates the brackets'
    product, the last bracket fastest::

        >>> product_names("s[01-02]c[1-2]")
        ['s01c1', 's01c2', 's02c1', 's02c2']
        >>> product_names("n[01-10,100]") is None      # two widths: ClusterShell decides
        True
    """
    plain = _plain(pattern)
    if plain is None:
        return None
    texts, axes, widths = plain
    numbers = [[str(n).zfill(w) for n in axis] for axis, w in zip(axes, widths, strict=True)]
    # each text a factor of one value: a name is one tuple of the product joined, in C
    # (bench/layout.py's 100,000 names: 196 M fewer instructions than a format call each)
    factors = [[texts[0]]]
    for column, text in zip(numbers, texts[1:], strict=True):
        factors += [column, [text]]
    return list(map("".join, product(*factors)))


def fold_plain(pattern: str) -> str | None:
    """A plain pattern (:func:`product_names`) as ClusterShell's ``str(NodeSet(pattern))``
    writes it: each bracket's numbers in runs, a bracket of one number written bare; None for
    any other pattern::

        >>> fold_plain("n[1-3,2,5]c[1]")
        'n[1-3,5]c1'
    """
    plain = _plain(pattern)
    if plain is None:
        return None
    texts, axes, widths = plain
    folded = [texts[0]]
    for axis, width, text in zip(axes, widths, texts[1:], strict=True):
        runs = []
        start = previous = axis[0]
        for number in [*axis[1:], None]:
            if number is not None and number == previous + 1:
                previous = number
                continue
            first, last = str(start).zfill(width), str(previous).zfill(width)
            runs.append(first if start == previous else f"{first}-{last}")
            if number is not None:
                start = previous = number
        ranges = ",".join(runs)
        folded += [ranges if len(axis) == 1 else f"[{ranges}]", text]
    return "".join(folded)


def _plain(pattern: str) -> tuple[list[str], list[list[int]], list[int]] | None:
    """A plain pattern's texts, each bracket's numbers (sorted, each once) and width (0:
    unpadded); None for any other pattern."""
    pieces = pattern.split("[")
    texts, brackets = [pieces[0]], []
    for piece in pieces[1:]:
        ranges, bracket, text = piece.partition("]")
        if not bracket or "]" in text:
            return None
        brackets.append(ranges)
        texts.append(text)
    if not all(_PLAIN_TEXT.fullmatch(t) for t in texts) or not all(texts[1:-1]):
        return None
    if any(t[-1:].isdigit() for t in texts[:-1]) or any(t[:1].isdigit() for t in texts[1:]):
        return None
    axes, widths = [], []
    for ranges in brackets:
        bracket = _bracket(ranges)
        if bracket is None:
            return None
        axes.append(bracket[0])
        widths.append(bracket[1])
    return texts, axes, widths


def _bracket(ranges: str) -> tuple[list[int], int] | None:
    """``"01-03,05"`` -> ``([1, 2, 3, 5], 2)``: the numbers, sorted, each once, and the
    bracket's one width (0: unpadded); None if its bounds are padded to different widths (or
    some padded, some not)."""
    numbers: set[int] = set()
    bounds = []
    for item in ranges.split(","):
        match = _RANGE.fullmatch(item.strip())
        if match is None:
            return None
        first, last, step = match.groups()
        bounds += [first, last or first]
        numbers.update(range(int(first), int(last or first) + 1, int(step or 1)))
    width = 0
    if any(len(bound) > 1 and bound[0] == "0" for bound in bounds):
        widths = {len(bound) for bound in bounds}
        if len(widths) > 1:
            return None
        width = widths.pop()
    return sorted(numbers), width


def _check_ascii(text: str) -> None:
    for char in text:
        if not char.isascii():
            name = unicodedata.name(char, "unnamed character")
            if char.isdigit():
                raise NodeSetError(
                    f"{char!r} (U+{ord(char):04X}, {name}) is not an ASCII digit: "
                    "node names use the digits 0-9"
                )
            raise NodeSetError(f"{char!r} (U+{ord(char):04X}, {name}) is not ASCII")


def _split(text: str) -> list[tuple[str, str]]:
    """``"a[1,2]!b"`` -> ``[(",", "a[1,2]"), ("!", "b")]``: operators outside brackets."""
    parts: list[tuple[str, str]] = []
    op, start, inside = ",", 0, False
    for position, char in enumerate(text):
        if char == "[":
            if inside:
                raise NodeSetError(f"{_short(text)}: '[' inside brackets")
            inside = True
        elif char == "]":
            if not inside:
                raise NodeSetError(f"{_short(text)}: ']' without '['")
            inside = False
        elif char in OPERATORS and not inside:
            parts.append((op, text[start:position]))
            op, start = char, position + 1
    if inside:
        raise NodeSetError(f"{_short(text)}: '[' without ']'")
    parts.append((op, text[start:]))
    return parts


def _term(op: str, operand: str) -> Term:
    text = operand.strip()
    pieces = re.split(r"\[([^\]]*)\]", text)  # text, ranges, text, ranges, …, text
    for number in _DIGITS.findall("[]".join(pieces[::2])):
        _check_digits(number)
    counts = []
    for index in range(1, len(pieces), 2):
        # ClusterShell joins digits just before a bracket to each bound: n1[0-10] is n[10-110].
        # Digits right after a bracket join the bracket before (n[1-2]0 is n[10-20/10]).
        lead = re.search(r"[0-9]+$", pieces[index - 1])
        joined = lead is not None and (index == 1 or not pieces[index - 1].isdigit())
        counts.append(_count(pieces[index], lead.group() if joined else ""))
    size = math.prod(total for total, _ in counts)
    # One range of a bracket makes distinct numbers; with the others fixed, distinct names.
    # All brackets' longest ranges together make distinct names when a non-digit separates
    # each bracket from the next (n[1-10]-[1-3]); n[1-10]0[1-3] could make one name twice.
    least = max((longest for _, longest in counts), default=1)
    separators = pieces[2:-1:2]
    if all(sep and _DIGITS.fullmatch(sep) is None for sep in separators):
        least = math.prod(longest for _, longest in counts)
    return Term(op, text, size, least)


def _count(ranges: str, lead: str = "") -> tuple[int, int]:
    """``"01-10,20-30/5,40"`` -> (14, 10): numbers in all (at most), and in the longest
    single range (at least). With ``lead`` digits joined to every bound, the numbers lie
    between the smallest and the largest joined bound: that span is the count (times the
    widths they may be written in, when zero-padded)."""
    total = longest = 0
    bounds: list[int] = []
    for item in ranges.split(","):
        match = _RANGE.fullmatch(item.strip())
        if match is None:
            raise NodeSetError(f"invalid range {item.strip()!r} (use e.g. [1-10,12,20-30/2])")
        first, last, step = match.groups()
        for number in (first, last or "", step or ""):
            _check_digits(number)
        bounds += [lead + first, lead + (last or first)]
        count = 1
        if last is not None:
            low, high, stride = int(first), int(last), int(step or 1)
            if high < low or stride == 0:
                raise NodeSetError(f"invalid range {item.strip()!r}: it names no number")
            count = (high - low) // stride + 1
        total += count
        longest = max(longest, count)
    if lead:
        numbers = [int(bound) for bound in bounds]
        span = max(numbers) - min(numbers) + 1
        if any(len(bound) > 1 and bound[0] == "0" for bound in bounds):
            # zero-padded: a number may come in each width between the bounds' (0 and 00)
            span *= max(map(len, bounds)) - min(map(len, bounds)) + 1
        return span, 1
    return total, longest


def _check_digits(number: str) -> None:
    if len(number) > MAX_DIGITS:
        raise NodeSetError(
            f"the number {_short(number)} has {len(number)} digits; at most {MAX_DIGITS}"
        )


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else f"{text[: width - 1]}…"
