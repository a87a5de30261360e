"""What ``dim apply`` installed under a root: a journal, so that a small change stays small.

``<root>/etc/dim/applied.list`` holds one line per event, the later line winning::

    = /etc/dim/hosts                                  a file dim installed
    = /srv/dim/tftp/pxelinux.cfg/01-52-…\tdim-rhel9  a link dim installed, with its target
    ? /srv/dim/http/dim/nodes/52-….ipxe             about to be installed (crash safety)
    - /srv/dim/tftp/pxelinux.cfg/01-52-…            removed

Appending a few lines costs microseconds where rewriting 300,000 (100,000 nodes, three loader
links each) costs a second; the file is rewritten whole only when it holds more than twice as
many lines as entries. Recorded link targets spare ``apply`` 300,000 ``readlink`` calls: a link
whose recorded target is the rendered one, and which is still a link, is taken as unchanged.
``?`` lines make sure that a file a killed ``apply`` may have created is known, and removed by
the next apply if no longer rendered. A manifest of an older dim (bare paths) reads as ``?``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from dim.files import write_atomically

PATH = "/etc/dim/applied.list"


class Manifest:
    """The journal of one root, read into a dict ``path -> Installed``."""

    def __init__(self, location: str, entries: dict[str, str | None], lines: int) -> None:
        # path -> the link's target, "" for a file, None when not confirmed
        self.location = location
        self.entries = entries
        self.lines = lines

    @classmethod
    def read(cls, location: str) -> Manifest:
        try:
            with open(location) as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            lines = []
        entries: dict[str, str | None] = {}
        for line in lines:  # 300,000 lines at 100,000 nodes: kept to the bare minimum
            _apply_line(entries, line)
        return cls(location, entries, len(lines))

    @classmethod
    def appending(cls, location: str) -> Manifest:
        """The journal, not read: for an apply that knows which paths it installs and removes
        (an incremental one). Nothing is known of the paths it holds; it is not compacted."""
        return cls(location, {}, -1)

    def link_target(self, path: str) -> str | None:
        return self.entries.get(path) or None

    def paths(self) -> set[str]:
        return set(self.entries)

    def intend(self, paths: Iterable[str]) -> None:
        """Note paths about to be created, before creating them."""
        entries = self.entries
        new = dict.fromkeys(p for p in paths if p not in entries)  # path -> None: unconfirmed
        self._append([f"? {p}\n" for p in new])
        entries.update(new)

    def record(self, installed: Iterable[tuple[str, str | None]], removed: Iterable[str]) -> None:
        """Note what was installed (path, link target or None) and removed."""
        confirmed = {p: t or "" for p, t in installed}
        removed = list(removed)
        entries = self.entries
        entries.update(confirmed)
        for path in removed:
            entries.pop(path, None)
        count = len(confirmed) + len(removed)
        if self.lines >= 0 and self.lines + count > len(entries) + max(1000, len(entries) // 2):
            # the journal would be compacted right after: write it compact at once (a first
            # full apply at 100,000 nodes appends 300,000 lines less)
            self.compact()
            return
        lines = [_line(p, t) + "\n" for p, t in confirmed.items()]
        self._append(lines + [f"- {p}\n" for p in removed])

    def compact(self) -> None:
        """Rewrite the journal as one line per entry, atomically."""
        lines = [
            f"= {p}\t{e}\n" if e else f"= {p}\n" if e == "" else f"? {p}\n"
            for p, e in sorted(self.entries.items())
        ]
        write_atomically(self.location, "".join(lines).encode())
        self.lines = len(self.entries)

    def _append(self, lines: list[str]) -> None:
        """Append ``lines`` (each with its newline) and fsync; the caller updates entries."""
        if not lines:
            return
        os.makedirs(os.path.dirname(self.location), exist_ok=True)
        fd = os.open(self.location, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.lines >= 0:
            self.lines += len(lines)


def _apply_line(entries: dict[str, str | None], line: str) -> None:
    kind = line[:2]
    if kind == "= ":
        path, _, link = line[2:].partition("\t")
        entries[path] = link
    elif kind == "- ":
        entries.pop(line[2:], None)
    elif line:
        path = line[2:] if kind == "? " else line  # bare paths: an older dim's manifest
        if path not in entries:  # never downgrades a confirmed entry
            entries[path] = None


def _line(path: str, target: str | None) -> str:
    if target is None:
        return f"? {path}"
    return f"= {path}\t{target}" if target else f"= {path}"
