"""What the last ``dim apply`` rendered from: so that the next one re-renders only what changed.

Every file dim renders is a function of the layout (cluster.xml, template overrides, dim's own
code), of a little of the state folder (images stored, their boot builds) and, per node, of
what the state DB observed: the boot MAC and the image assigned. After each apply that wrote,
``<state>/applied/<digest>.tsv`` (one per server and root) records the first kind as one
fingerprint, and per node its expanded record and the observed values rendered::

    dim-applied 1<TAB><fingerprint><TAB><files rendered><TAB><secure boot 1|0><TAB><root stamp>
    <node><TAB><served 1|0><TAB><boot network><TAB><MAC or ""><TAB><image or ""><TAB><record>

The root stamp is the identity of the root's journal of installed files
(:mod:`dim.services.manifest`) as that apply left it: a root emptied, replaced or written by
another dim since does not match, and neither does its record. The next apply with the same
fingerprint and stamp compares each node's observed values with the
recorded ones (:meth:`Applied.changed`); only the nodes that differ are rebuilt from their
records (no expansion of cluster.xml) and rendered again (:mod:`dim.services.incremental`). A
different fingerprint, or a file that is missing or of another format, means a full apply::

    previous = Applied.read(paths.applied(server, str(root)), fingerprint)
    if previous is not None:
        changed = previous.changed(observed.macs, observed.images)

Values are those the layout parser checked (names, addresses, host names, BMC addresses):
none holds a tab, a newline or the unit separator (U+001F) that joins a node's interfaces.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dim.files import write_atomically
from dim.layout.model import Bmc, Interface, Node

FORMAT = "dim-applied 1"
_ITEM = "\x1f"  # between the fields of one interface or BMC
_LIST = "\x1e"  # between interfaces


def fingerprint(parts: Iterable[object]) -> str:
    """One digest of every input that is not a node's own (see the module's docstring)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else repr(part).encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def code_fingerprint() -> list[tuple[str, int, int]]:
    """Name, size and modification time of every file of the dim package: a dim that is not
    the one of the last apply (an upgrade, a developer's change) renders everything again."""
    package = Path(__file__).resolve().parent.parent
    found = []
    for folder, folders, files in os.walk(package):
        folders[:] = sorted(f for f in folders if f != "__pycache__")
        for name in sorted(files):
            st = os.stat(os.path.join(folder, name))
            found.append(
                (os.path.join(folder, name)[len(str(package)) :], st.st_size, st.st_mtime_ns)
            )
    return found


@dataclass(slots=True)
class NodeEntry:
    """One node as the last apply saw it."""

    served: bool  # by the server applied: DHCP and boot loader files name it
    network: str  # its boot network
    mac: str | None  # on its boot network
    image: str | None  # assigned in the state DB (None: the layout's)
    record: str  # the expanded node, encoded (:func:`encode`)


@dataclass(slots=True)
class Applied:
    """The inputs of one server's last apply into one root."""

    fingerprint: str
    files: int  # how many files (and links) that apply rendered
    nodes: dict[str, NodeEntry]  # in layout order
    secure_boot: bool = False  # whether a node the server boots is declared secure-boot
    stamp: str = ""  # the root's journal as the apply left it (root_stamp)

    @classmethod
    def read(cls, path: Path, fingerprint: str, stamp: str) -> Applied | None:
        """The record at ``path`` if it was made with ``fingerprint`` into a root whose journal
        is as it left it (``stamp``), else None."""
        try:
            with open(path, encoding="utf-8") as handle:
                head = handle.readline().rstrip("\n").split("\t")
                if head[:2] != [FORMAT, fingerprint] or head[4:] != [stamp]:
                    return None
                lines = handle.read().split("\n")  # not splitlines(): it splits at U+001E too
        except (OSError, UnicodeDecodeError):
            return None
        nodes = {}
        for line in lines[:-1]:  # once per node: the bare minimum (the last is "")
            name, served, network, mac, image, record = line.split("\t", 5)
            nodes[name] = NodeEntry(served == "1", network, mac or None, image or None, record)
        return cls(fingerprint, int(head[2]), nodes, head[3] == "1", stamp)

    def write(self, path: Path) -> None:
        secure = "1" if self.secure_boot else "0"
        head = (FORMAT, self.fingerprint, str(self.files), secure, self.stamp)
        lines = ["\t".join(head) + "\n"]
        lines += [
            f"{name}\t{'1' if e.served else '0'}\t{e.network}\t{e.mac or ''}\t{e.image or ''}"
            f"\t{e.record}\n"
            for name, e in self.nodes.items()
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, "".join(lines).encode(), 0o644)

    def changed(self, macs: Mapping[tuple[str, str], str], images: Mapping[str, str]) -> list[str]:
        """The nodes whose boot MAC or assigned image is not the one recorded, layout order."""
        changed = []
        for name, entry in self.nodes.items():
            if macs.get((name, entry.network)) != entry.mac or images.get(name) != entry.image:
                changed.append(name)
        return changed

    def node(self, name: str) -> Node:
        return decode(name, self.nodes[name].record)

    def update(
        self,
        names: Iterable[str],
        macs: Mapping[tuple[str, str], str],
        images: Mapping[str, str],
        files: int,
    ) -> None:
        """Record the observed values the nodes ``names`` were rendered with."""
        for name in names:
            entry = self.nodes[name]
            entry.mac, entry.image = macs.get((name, entry.network)), images.get(name)
        self.files = files


def root_stamp(journal: str) -> str:
    """The identity of a root's journal of installed files: inode, size, modification time."""
    try:
        st = os.stat(journal)
    except OSError:
        return "none"
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def snapshot(
    nodes: Iterable[Node],
    served: set[str],
    macs: Mapping[tuple[str, str], str],
    images: Mapping[str, str],
    fingerprint: str,
    files: int,
    stamp: str,
) -> Applied:
    """The record of an apply that rendered ``nodes`` with these observed values."""
    entries = {}
    secure_boot = False
    for node in nodes:
        secure_boot = secure_boot or (node.secure_boot and node.server in served)
        boot = node.interfaces[0].network if node.interfaces else ""
        entries[node.name] = NodeEntry(
            node.server in served,
            boot,
            macs.get((node.name, boot)),
            images.get(node.name),
            encode(node),
        )
    return Applied(fingerprint, files, entries, secure_boot, stamp)


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
