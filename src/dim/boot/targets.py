"""The boot targets: what ``dim serve`` needs of the state DB, kept in a file for its outages.

``dim serve`` answers a node's boot script from the state DB (:meth:`StateDB.boot_target`).
So that nodes still boot while the DB cannot be reached (a PostgreSQL server down, the network
to it cut), ``dim apply`` and ``dim node switch`` also write every MAC the DB records, with its
node, network and image override, to ``<state>/boot-targets.json``; the service answers from
that file meanwhile, as it stood at the last of those commands::

    >>> write(StatePaths(state), inventory.macs, inventory.images)
    >>> Snapshot(StatePaths(state).boot_targets).target("52:54:00:00:00:01")
    BootTarget(node='node01', network='boot', image=None)

The file is JSON, written atomically (:func:`dim.files.write_atomically`)::

    {"version": 1, "targets": {"52:54:00:00:00:01": ["node01", "boot", null], …}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from dim.files import write_atomically
from dim.paths import StatePaths
from dim.records import BootTarget

FORMAT = 1


def render(macs: Mapping[tuple[str, str], str], images: Mapping[str, str]) -> bytes:
    """The file's content for the MACs per (node, network) and the image overrides per node."""
    targets = {mac: [node, network, images.get(node)] for (node, network), mac in macs.items()}
    return json.dumps({"version": FORMAT, "targets": dict(sorted(targets.items()))}).encode()


def write(
    paths: StatePaths, macs: Mapping[tuple[str, str], str], images: Mapping[str, str]
) -> None:
    write_atomically(paths.boot_targets, render(macs, images), 0o644)


class Snapshot:
    """The file, read again when it changes (``dim apply`` may rewrite it while we serve)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._targets: dict[str, BootTarget] = {}

    def target(self, mac: str) -> BootTarget | None:
        """What the file says of ``mac``, None if it does not know it; OSError without a file
        (no ``dim apply`` yet), ValueError if it is not one this dim wrote."""
        return self.targets().get(mac)

    def targets(self) -> dict[str, BootTarget]:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self._targets = parse(self.path.read_bytes())
            self._stamp = stamp
        return self._targets


def parse(data: bytes) -> dict[str, BootTarget]:
    """MAC -> target from the file's content; ValueError if it is not one this dim wrote."""
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("version") != FORMAT:
        raise ValueError(f"not a boot targets file of format {FORMAT}")
    try:
        return {mac: BootTarget(*fields) for mac, fields in document["targets"].items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"a malformed boot targets file ({exc})") from None
