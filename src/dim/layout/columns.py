"""A cluster's nodes kept as columns, one list per field, and made into objects only when asked.

At 100,000 nodes, building a :class:`~dim.layout.model.Node` with its interfaces and BMC
for every node is some 500,000 constructor calls, most of the expansion's time; the renderers
then read the same few fields back out of them, node by node. Here the parser's bulk build
(:mod:`dim.layout.bulk`) keeps each group's columns (:class:`GroupColumns`), and
:class:`Nodes`, the value of ``Cluster.nodes``, is a sequence that makes a node the first
time it is read, and all of them the first time it is iterated: every caller that reads nodes
gets the same objects, equal to those built one by one::

    >>> nodes = Nodes([columns_of_group])     # what the parser puts in Cluster.nodes
    >>> len(nodes), nodes[0].boot.ip           # one node made, not 100,000
    >>> served_columns(nodes).boot_ip          # what a renderer reads: no node made

:func:`served_columns` gives the flat columns a renderer needs (names, boot interface,
image, server…) from either form: a :class:`Nodes`' columns as they are, or any sequence of
nodes (a cluster read from the layout cache, or made by ``dataclasses.replace``) read field by
field. Either way the same lists, so a renderer gives the same bytes from both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import chain, compress, repeat
from operator import is_not

from dim.layout.model import Bmc, Interface, Node

Settings = tuple[str | None, str, bool]  # image, server, secure boot


class GroupColumns:
    """One group's nodes, field by field: each node's name, its interfaces' addresses and
    host names (one list per interface), its BMC's address, its image, server and Secure Boot
    setting (None: the group's, for every node)."""

    __slots__ = (
        "group",
        "line",
        "names",
        "networks",
        "ips",
        "hostnames",
        "bmc",
        "settings",
        "default",
        "_settings_columns",
    )

    def __init__(
        self,
        group: str,
        line: int,
        names: list[str],
        networks: tuple[str, ...],
        ips: list[list[str]],
        hostnames: list[list[str]],
        bmc: tuple[str, list[str], str | None] | None,
        settings: list[Settings] | None,
        default: Settings,
    ) -> None:
        self.group, self.line, self.names = group, line, names
        self.networks, self.ips, self.hostnames = networks, ips, hostnames
        self.bmc = bmc  # driver, addresses, credentials
        self.settings, self.default = settings, default
        self._settings_columns: tuple[list[str | None], list[str], list[bool]] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def node(self, index: int) -> Node:
        """The group's ``index``-th node, as :meth:`nodes` makes it."""
        image, server, secure = self.default if self.settings is None else self.settings[index]
        interfaces = tuple(
            Interface(network, ips[index], hostnames[index])
            for network, ips, hostnames in zip(self.networks, self.ips, self.hostnames, strict=True)
        )
        bmc = None
        if self.bmc is not None:
            driver, addresses, credentials = self.bmc
            bmc = Bmc(driver, addresses[index], credentials)
        return Node(
            self.names[index], self.group, index, interfaces, image, server, bmc, self.line, secure
        )

    def nodes(self) -> list[Node]:
        """Every node of the group, in order: a ``map`` per column, no Python loop."""
        count = len(self.names)
        columns = [
            list(map(Interface, repeat(network), ips, hostnames))
            for network, ips, hostnames in zip(self.networks, self.ips, self.hostnames, strict=True)
        ]
        interfaces = list(zip(*columns, strict=True)) if columns else list(repeat((), count))
        bmcs: Sequence[Bmc | None] = list(repeat(None, count))
        if self.bmc is not None:
            driver, addresses, credentials = self.bmc
            bmcs = list(map(Bmc, repeat(driver), addresses, repeat(credentials)))
        images, servers, secure = self._settings()
        return list(
            map(
                Node,
                self.names,
                repeat(self.group),
                range(count),
                interfaces,
                images,
                servers,
                bmcs,
                repeat(self.line),
                secure,
            )
        )

    def _settings(self) -> tuple[list[str | None], list[str], list[bool]]:
        """Each node's image, server and Secure Boot setting, a list each (made once: every
        renderer reads them)."""
        if self._settings_columns is None:
            count = len(self.names)
            if self.settings is None:
                image, server, secure = self.default
                columns = [image] * count, [server] * count, [secure] * count
            else:
                images, servers, secure_boot = zip(*self.settings, strict=True)
                columns = list(images), list(servers), list(secure_boot)
            self._settings_columns = columns
        return self._settings_columns


Block = GroupColumns | Sequence[Node]


class Nodes(Sequence[Node]):
    """The cluster's nodes in layout order, from blocks: a group's columns, or nodes made
    already (a group the parser expanded node by node). A node is made when first read."""

    __slots__ = ("blocks", "_nodes", "_starts")

    def __init__(self, blocks: Sequence[Block]) -> None:
        self.blocks = tuple(blocks)
        self._nodes: tuple[Node, ...] | None = None
        starts, start = [], 0
        for block in self.blocks:
            starts.append(start)
            start += len(block)
        self._starts = (*starts, start)  # the last: the count

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def made(self) -> bool:
        """Whether every node is made already (then read them, not the columns)."""
        return self._nodes is not None

    def all(self) -> tuple[Node, ...]:
        """Every node, made once (a group's with one ``map`` per column)."""
        if self._nodes is None:
            made = [b.nodes() if isinstance(b, GroupColumns) else b for b in self.blocks]
            self._nodes = tuple(chain.from_iterable(made))
        return self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(self.all())

    # no typing.overload: this module is on ``dim layout check``'s path, which imports no typing
    def __getitem__(self, index: int | slice) -> Node | tuple[Node, ...]:  # type: ignore[override]
        if self._nodes is not None or isinstance(index, slice):
            return self.all()[index]
        count = len(self)
        if not -count <= index < count:
            raise IndexError("node index out of range")
        index %= count
        for block, start, end in zip(self.blocks, self._starts, self._starts[1:], strict=False):
            if index < end:
                if isinstance(block, GroupColumns):
                    return block.node(index - start)
                return block[index - start]
        raise AssertionError("unreachable: the index is below the count")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Nodes):
            other = other.all()
        if not isinstance(other, tuple):
            return NotImplemented
        return self.all() == other

    def __hash__(self) -> int:
        return hash(self.all())

    def __repr__(self) -> str:
        return repr(self.all())

    def names(self) -> list[str]:
        """Every node's name, in order, without making a node."""
        if self.made or len(self.blocks) != 1:
            return list(chain.from_iterable(_names(b) for b in self.blocks))
        return list(_names(self.blocks[0]))

    def by_name(self) -> NodeIndex:
        """The nodes by name (``Cluster.by_name``), each made when first looked up."""
        return NodeIndex(self)


def _names(block: Block) -> Sequence[str]:
    if isinstance(block, GroupColumns):
        return block.names
    return [node.name for node in block]


class NodeIndex(Mapping[str, Node]):
    """The nodes by name, in layout order: a name's position is found when first asked."""

    __slots__ = ("_nodes", "_positions")

    def __init__(self, nodes: Nodes) -> None:
        self._nodes = nodes
        self._positions: dict[str, int] | None = None

    def _index(self) -> dict[str, int]:
        if self._positions is None:
            names = self._nodes.names()
            self._positions = dict(zip(names, range(len(names)), strict=True))
        return self._positions

    def __getitem__(self, name: str) -> Node:
        return self._nodes[self._index()[name]]

    def __contains__(self, name: object) -> bool:
        return name in self._index()

    def __iter__(self) -> Iterator[str]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class ServedColumns:
    """What the renderers read of the nodes a server serves, one list per field, in layout
    order: each node's name, server, image (the layout's), Secure Boot setting, its boot
    interface's network, address and host name, and how many addresses it has (interfaces
    and BMC). A plain class, not a dataclass: this module is on ``dim layout check``'s path,
    where each dataclass made at import costs (docs/benchmarks.md)."""

    __slots__ = (
        "name",
        "server",
        "image",
        "secure_boot",
        "boot_network",
        "boot_ip",
        "boot_hostname",
        "addresses",
    )

    def __init__(
        self,
        name: list[str],
        server: list[str],
        image: list[str | None],
        secure_boot: list[bool],
        boot_network: list[str],
        boot_ip: list[str],
        boot_hostname: list[str],
        addresses: list[int],
    ) -> None:
        self.name, self.server, self.image, self.secure_boot = name, server, image, secure_boot
        self.boot_network, self.boot_ip, self.boot_hostname = boot_network, boot_ip, boot_hostname
        self.addresses = addresses

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServedColumns):
            return NotImplemented
        return _fields(self) == _fields(other)

    __hash__ = None  # type: ignore[assignment]  # lists inside


def served_columns(nodes: Sequence[Node], servers: set[str] | None = None) -> ServedColumns:
    """The columns of ``nodes`` whose server is one of ``servers`` (None: every node)."""
    if isinstance(nodes, Nodes) and not nodes.made and nodes.blocks:
        parts = [_block_columns(b) for b in nodes.blocks]
        columns = parts[0] if len(parts) == 1 else _concatenated(parts)
    else:  # built nodes, or a layout without any (no blocks to concatenate)
        columns = _block_columns(nodes)
    if servers is None or servers.issuperset(set(columns.server)):
        return columns
    chosen = list(map(servers.__contains__, columns.server))
    return ServedColumns(*(list(compress(column, chosen)) for column in _fields(columns)))


def _block_columns(block: Block) -> ServedColumns:
    if isinstance(block, GroupColumns):
        count = len(block.names)
        images, servers, secure = block._settings()
        return ServedColumns(
            block.names,
            servers,
            images,
            secure,
            [block.networks[0]] * count,
            block.ips[0],
            block.hostnames[0],
            [len(block.networks) + (block.bmc is not None)] * count,
        )
    boots = [node.interfaces[0] for node in block]  # Node.boot, without a property's call
    return ServedColumns(
        [node.name for node in block],
        [node.server for node in block],
        [node.image for node in block],
        [node.secure_boot for node in block],
        [boot.network for boot in boots],
        [boot.ip for boot in boots],
        [boot.hostname for boot in boots],
        list(
            map(
                int.__add__,
                map(len, [node.interfaces for node in block]),
                map(is_not, [node.bmc for node in block], repeat(None)),
            )
        ),
    )


def _fields(columns: ServedColumns) -> list[list]:
    return [getattr(columns, name) for name in ServedColumns.__slots__]


def _concatenated(parts: list[ServedColumns]) -> ServedColumns:
    return ServedColumns(
        *(list(chain.from_iterable(c)) for c in zip(*map(_fields, parts), strict=True))
    )
