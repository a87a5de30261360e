"""A group's nodes built column by column, for a group whose every node is valid.

The parser's per-node loop (:meth:`dim.layout.parser._Parser._expand`) checks each node's
name, addresses and host names in turn and raises the error of the first one that is wrong.
At 100,000 nodes that loop is most of the expansion's time: a few dozen bytecodes per node
between the calls that do the work. Here the same checks run once per column, each in one C
call or one ``map`` (a name column checked by one regular expression over the names joined by
newlines, which no accepted value holds), and the columns are kept as they are: a
:class:`~dim.layout.columns.GroupColumns`, whose nodes are made only when something reads
them (:mod:`dim.layout.columns`)::

    >>> columns = build(group, line, names, uses_numbers, interfaces, bmc, default, overrides,
    ...                 rooms)     # the group's nodes as columns, or None

None means "some check failed, or a template raised": the caller then runs its per-node loop,
which finds the first faulty node and raises its error, word for word as before. So this
module never raises a layout error of its own, and the two paths give the same nodes.
"""

from __future__ import annotations

import re
from _socket import AF_INET, inet_pton
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import repeat
from typing import TYPE_CHECKING

from dim.layout.columns import GroupColumns
from dim.layout.expressions import render_column
from dim.names import BMC_ADDRESS, HOST_NAME

if TYPE_CHECKING:  # aliases for the annotations only: nothing to build at import
    from dim.layout.expressions import Template

    # One interface of the group: its network, the first and last address allowed, its
    # templates (the host name's None: the node's name).
    InterfaceColumns = tuple[str, int, int, Template, Template | None]
    # A BMC: its address's template, its driver and credentials.
    BmcColumns = tuple[Template, str, str | None]
    Settings = tuple[str | None, str, bool]  # image, server, secure boot


@cache
def _whole_column(pattern: str) -> re.Pattern[str]:
    """Every line one value (a host name, a BMC address), a newline after each: compiled when
    first used, not when ``layout check`` imports the parser. Neither pattern accepts a
    newline, so the joined text matches exactly when every value does."""
    return re.compile(rf"(?:(?:{pattern})\n)*")


def build(
    group: str,
    line: int,
    names: Iterable[str],
    uses_numbers: bool,
    interfaces: Sequence[InterfaceColumns],
    bmc: BmcColumns | None,
    default: Settings,
    overrides: dict[str, Settings],
    rooms: tuple[int, int, int],
) -> GroupColumns | None:
    """The group's nodes in order, as columns; None when a node needs the per-node checks.

    ``rooms``: the longest node name, host name, and node name whose ``<name>-bmc`` fits.
    """
    try:
        return _build(
            group, line, list(names), uses_numbers, interfaces, bmc, default, overrides, rooms
        )
    except Exception:  # a template's IndexError or ZeroDivisionError, a bad address…
        return None  # …the per-node loop raises it again, with its file, line and node


def _build(group, line, names, uses_numbers, interfaces, bmc, default, overrides, rooms):
    name_room, room, bmc_room = rooms
    count = len(names)
    networks = tuple(i[0] for i in interfaces)
    if not count:
        empty = [[] for _ in networks]
        return GroupColumns(group, line, [], networks, empty, empty, None, None, default)
    if max(map(len, names)) > name_room or not _all_host_names(names):
        return None
    if uses_numbers:
        numbers = _NUMBERS.findall
        nums: Sequence[tuple[int, ...]] = [tuple(map(int, numbers(n))) for n in names]
    else:
        nums = list(repeat((), count))
    ips_columns, hostname_columns = [], []
    shared: dict[str, Sequence[str]] = {}  # the group's fields, each computed once
    for _network, first, last, ip_template, hostname_template in interfaces:
        ips = render_column(ip_template, nums, names, shared)
        values = list(map(int.from_bytes, map(inet_pton, repeat(AF_INET), ips), repeat("big")))
        if min(values) < first or max(values) > last:
            return None
        hostnames = names
        if hostname_template is not None:
            hostnames = render_column(hostname_template, nums, names, shared)
            if max(map(len, hostnames)) > room or not _all_host_names(hostnames):
                return None
        ips_columns.append(ips)
        hostname_columns.append(hostnames)
    bmc_columns = None
    if bmc is not None:
        address, driver, credentials = bmc
        addresses = render_column(address, nums, names, shared)
        if max(map(len, names)) > bmc_room or not _all_match(
            _whole_column(BMC_ADDRESS.pattern), addresses
        ):
            return None
        bmc_columns = (driver, addresses, credentials)
    settings = list(map(overrides.get, names, repeat(default))) if overrides else None
    return GroupColumns(
        group,
        line,
        names,
        networks,
        ips_columns,
        hostname_columns,
        bmc_columns,
        settings,
        default,
    )


_NUMBERS = re.compile(r"[0-9]+")


def _all_host_names(values: list[str]) -> bool:
    """Whether every value is an RFC 1123 host name (:data:`dim.names.HOST_NAME`): in C, not
    that pattern's backtracking over 300,000 names. Labels of at most 63 characters when no
    value is longer; otherwise the pattern decides."""
    if max(map(len, values)) > 63:
        return _all_match(_whole_column(HOST_NAME.pattern), values)
    text = "\n".join(values) + "\n"
    if text.count("\n") != len(values) or text[0] in ".-\n":
        return False
    if any(pair in text for pair in _NOT_IN_HOST_NAMES):
        return False  # an empty label, or one that starts or ends with '-'
    return not text.encode("utf-8", "surrogatepass").translate(None, _HOST_NAME_BYTES)


_HOST_NAME_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.\n"
_NOT_IN_HOST_NAMES = ("..", ".\n", "\n.", "\n\n", "-.", ".-", "-\n", "\n-")


def _all_match(pattern: re.Pattern[str], values: list[str]) -> bool:
    """Whether every value matches: one newline after each, none inside one (a value
    ``"a\\nb"`` would pass as two)."""
    text = "\n".join(values) + "\n"
    return text.count("\n") == len(values) and pattern.fullmatch(text) is not None
