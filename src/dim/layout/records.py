"""A node as one line of text: what the records of expanded layouts store (the incremental
``dim apply``'s, :mod:`dim.services.applied`, and the validated-layout cache's,
:mod:`dim.layout_cache`), so that a node is read back without expanding cluster.xml::

    >>> decode("c01", encode(node)) == node
    True

Values are those the layout parser checked (names, addresses, host names, BMC addresses):
none holds a tab, a newline, or the separators U+001E and U+001F used here.
"""

from __future__ import annotations

from dim.layout.model import Bmc, Interface, Node

_ITEM = "\x1f"  # between the fields of one interface or BMC
_LIST = "\x1e"  # between interfaces


def encode(node: Node) -> str:
    """``group, interfaces, index, image, server, bmc, line, secure boot``, tab-separated."""
    interfaces = _LIST.join(_ITEM.join((i.network, i.ip, i.hostname)) for i in node.interfaces)
    bmc = node.bmc
    bmc_text = _ITEM.join((bmc.driver, bmc.address, bmc.credentials or "")) if bmc else ""
    return "\t".join(
        (
            node.group,
            interfaces,
            str(node.index),
            node.image or "",
            node.server,
            bmc_text,
            str(node.line),
            "1" if node.secure_boot else "0",
        )
    )


def decode(name: str, record: str) -> Node:
    group, interfaces, index, image, server, bmc_text, line, secure = record.split("\t")
    bmc = None
    if bmc_text:
        driver, address, credentials = bmc_text.split(_ITEM)
        bmc = Bmc(driver, address, credentials or None)
    return Node(
        name,
        group,
        int(index),
        tuple(Interface(*i.split(_ITEM)) for i in interfaces.split(_LIST) if i),
        image or None,
        server,
        bmc,
        int(line),
        secure == "1",
    )
