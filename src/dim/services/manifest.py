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
from dataclasses import dataclass

PATH = "/etc/dim/applied.list"


@dataclass(slots=True)
class Installed:
    confirmed: bool
    target: str | None = None  # of a link


class Manifest:
    """The journal of one root, read into a dict ``path -> Installed``."""

    def __init__(self, location: str, entries: dict[str, Installed], lines: int) -> None:
        self.location = location
        self.entries = entries
        self.lines = lines

    @classmethod
    def read(cls, location: str) -> Manifest:
        entries: dict[str, Installed] = {}
        lines = 0
        try:
            with open(location) as handle:
                for line in handle:
                    lines += 1
                    _apply_line(entries, line.rstrip("\n"))
        except FileNotFoundError:
            pass
        return cls(location, entries, lines)

    def link_target(self, path: str) -> str | None:
        installed = self.entries.get(path)
        return installed.target if installed is not None and installed.confirmed else None

    def paths(self) -> set[str]:
        return set(self.entries)

    def intend(self, paths: Iterable[str]) -> None:
        """Note paths about to be created, before creating them."""
        self._append([f"? {p}" for p in paths if p not in self.entries], sync=True)

    def record(self, installed: Iterable[tuple[str, str | None]], removed: Iterable[str]) -> None:
        """Note what was installed (path, link target or None) and removed."""
        lines = [f"= {p}\t{t}" if t is not None else f"= {p}" for p, t in installed]
        lines += [f"- {p}" for p in removed]
        self._append(lines, sync=True)
        if self.lines > 2 * len(self.entries) + 1000:
            self.compact()

    def compact(self) -> None:
        """Rewrite the journal as one line per entry, atomically."""
        text = "".join(_line(p, e) + "\n" for p, e in sorted(self.entries.items()))
        temporary = f"{self.location}.dim-{os.getpid()}"
        os.makedirs(os.path.dirname(self.location), exist_ok=True)
        with open(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.location)
        self.lines = len(self.entries)

    def _append(self, lines: list[str], *, sync: bool) -> None:
        if not lines:
            return
        os.makedirs(os.path.dirname(self.location), exist_ok=True)
        fd = os.open(self.location, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, "".join(f"{ln}\n" for ln in lines).encode())
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        for line in lines:
            _apply_line(self.entries, line)
        self.lines += len(lines)


def _apply_line(entries: dict[str, Installed], line: str) -> None:
    if not line:
        return
    kind, _, rest = line.partition(" ") if line[1:2] == " " else ("?", "", line)
    if kind == "-":
        entries.pop(rest, None)
    elif kind == "=":
        path, _, link = rest.partition("\t")
        entries[path] = Installed(True, link or None)
    elif rest not in entries:  # "?": known, not confirmed; never downgrades a confirmed entry
        entries[rest] = Installed(False)


def _line(path: str, installed: Installed) -> str:
    if not installed.confirmed:
        return f"? {path}"
    return f"= {path}\t{installed.target}" if installed.target is not None else f"= {path}"
