"""A table's rows held as columns: what a renderer gives a template for 100,000 nodes.

A per-node template (a reservation per node in dnsmasq's hosts file, an export per node) used
to get one small object per node, built by a Python ``__init__`` each: some 1,900
instructions an object, more than formatting its line. :class:`Rows` keeps the columns
instead. A compiled template (:mod:`dim.services.compiled`) formats them with one
comprehension over ``zip(*columns)``, no object per row; Jinja2 (an administrator's override,
or a template without a compiled function: Kea's, ISC dhcpd's) iterates the rows, each built
when it is reached, the same objects as before::

    >>> hosts = Rows(tuple, ["n1", "n2"], ["10.0.0.1", "10.0.0.2"])
    >>> len(hosts), list(hosts), hosts[1], hosts.columns[1]
    (2, [('n1', '10.0.0.1'), ('n2', '10.0.0.2')], ('n2', '10.0.0.2'), ['10.0.0.1', '10.0.0.2'])

``make`` takes one value of each column, in order (a dataclass with its fields in the
columns' order); for ``tuple``, the rows are tuples of the values.

:func:`affixed` builds a column of strings that share a prefix and a suffix (paths, fully
qualified names) in C: one join and one split instead of a Python step per value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import chain, repeat
from typing import Generic, TypeVar, overload

Row = TypeVar("Row")


class Rows(Sequence[Row], Generic[Row]):
    """Rows made by ``make`` from the values of ``columns`` (each as long as the others)."""

    __slots__ = ("columns", "make")

    def __init__(self, make: Callable[..., Row], *columns: Sequence[object]) -> None:
        if len({len(column) for column in columns}) > 1:
            raise ValueError("columns of different lengths")
        self.make = make
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def __iter__(self) -> Iterator[Row]:
        if self.make is tuple:
            return zip(*self.columns, strict=True)  # type: ignore[return-value]
        return map(self.make, *self.columns)

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> Rows[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | Rows[Row]:
        if isinstance(index, slice):
            return Rows(self.make, *(column[index] for column in self.columns))
        values = [column[index] for column in self.columns]
        return tuple(values) if self.make is tuple else self.make(*values)  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to a list or a tuple of the same rows

    def __repr__(self) -> str:
        return f"Rows({list(self)!r})"


def affixed(prefix: str, values: list[str], suffix: str) -> list[str]:
    """``[prefix + value + suffix for value in values]``, built by one ``join`` and one
    ``split`` in C: a third of the comprehension's time at 100,000 values. A value holding a
    newline would split in two: then the comprehension, as it would have been.

    >>> affixed("/srv/", ["n1", "n2"], ".cfg")
    ['/srv/n1.cfg', '/srv/n2.cfg']
    """
    if not values:
        return []
    if "\n" not in prefix and "\n" not in suffix:
        found = (prefix + (suffix + "\n" + prefix).join(values) + suffix).split("\n")
        if len(found) == len(values):
            return found
    return [prefix + value + suffix for value in values]


def joined(*parts: Sequence[str] | str) -> str:
    """The rows of ``parts`` (columns of strings, or one string for every row) side by
    side, one row after another, in one ``join`` over them in C: no f-string per row::

        >>> joined(["10.0.0.1", "10.0.0.2"], " ", ["n1", "n2"], ";")
        '10.0.0.1 n1;10.0.0.2 n2;'
    """
    columns = [repeat(part) if isinstance(part, str) else part for part in parts]
    return "".join(chain.from_iterable(zip(*columns, strict=False)))  # repeat() never ends


# Columns of one part of a hosts file: addresses, names, and what follows each name ("-bmc").
HostColumns = tuple[Sequence[str], Sequence[str], str]


class HostRows(Sequence[tuple[str, str, str]]):
    """The hosts file's rows, (address, fully qualified name, short name), kept as parts of
    columns: in each part, row ``k`` of every column triple in turn (a node's interfaces, then
    its BMC), the short name ``names[k] + extra``, the long one that and ``suffix``. A compiled
    template joins them in C (:meth:`text`); Jinja2 iterates the rows::

        >>> rows = HostRows(".x", [[(["10.0.0.1"], ["n1"], ""), (["10.1.0.1"], ["n1"], "-bmc")]])
        >>> list(rows)
        [('10.0.0.1', 'n1.x', 'n1'), ('10.1.0.1', 'n1-bmc.x', 'n1-bmc')]
        >>> rows.text()
        '10.0.0.1\\tn1.x n1\\n10.1.0.1\\tn1-bmc.x n1-bmc\\n'
    """

    __slots__ = ("suffix", "parts", "_rows")

    def __init__(self, suffix: str, parts: Sequence[Sequence[HostColumns]]) -> None:
        self.suffix, self.parts = suffix, parts
        self._rows: list[tuple[str, str, str]] | None = None

    def __len__(self) -> int:
        return sum(len(part[0][0]) * len(part) for part in self.parts if part)

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        suffix = self.suffix
        for part in self.parts:
            for row in zip(*[zip(ips, names, strict=True) for ips, names, _ in part], strict=True):
                for (ip, name), (_, _, extra) in zip(row, part, strict=True):
                    short = name + extra
                    yield ip, short + suffix, short

    @overload
    def __getitem__(self, index: int) -> tuple[str, str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, str, str]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, str, str] | list[tuple[str, str, str]]:
        if self._rows is None:
            self._rows = list(self)
        return self._rows[index]

    def text(self) -> str:
        """Every row as the hosts file's line: ``address<TAB>long short``, or with no suffix
        ``address<TAB>short``."""
        texts = []
        for part in self.parts:
            columns: list[Sequence[str] | str] = []
            for ips, names, extra in part:
                if self.suffix:
                    columns += [ips, "\t", names, f"{extra}{self.suffix} ", names, f"{extra}\n"]
                else:
                    columns += [ips, "\t", names, f"{extra}\n"]
            texts.append(joined(*columns))
        return "".join(texts)
