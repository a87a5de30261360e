"""The processor architectures dim boots, and the architecture of an image's tree.

What differs between architectures is data, in ``architectures.toml`` beside this module (the
Debian name, the ELF machine, the busybox package, DHCP's option 93 values, QEMU's system and
firmware): :func:`known` reads it once. An image's architecture is that of the ELF binaries of
its tree (:func:`detect`), read at each change of the image; a group's is cluster.xml's
``arch=`` (:data:`DEFAULT` when unstated)::

    >>> named("arm64").name, named("arm64").dhcp_uefi
    ('aarch64', (11,))
    >>> detect([Path("/var/lib/dim/images/rhel9/live")])
    'x86_64'
"""

from __future__ import annotations

import collections
import os
import stat
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from dim.errors import UsageError
from dim.structs import struct

DEFAULT = "x86_64"  # a group that states no arch=: what dim assumed before it knew others

# The binaries whose ELF header tells an image's architecture, most telling first (below the
# tree's root; /bin is usually a link to usr/bin). A tree holding none of them, and no ELF
# file in its first SCANNED entries of usr/bin and bin, has no architecture dim can tell.
PROBES = (
    "usr/lib/systemd/systemd",
    "sbin/init",
    "usr/bin/env",
    "bin/sh",
    "bin/busybox",
    "usr/bin/ls",
    "bin/ls",
)
SCANNED = 64
_LINKS = 16  # symbolic links followed from one probe before giving up (a loop)

# ELF machines dim does not boot, named for the messages (little-endian ones where the
# endianness makes the name: ppc64 is big-endian, ppc64le little).
_OTHER_MACHINES = {
    (3, True): "i386",
    (40, True): "armhf",
    (21, True): "ppc64le",
    (21, False): "ppc64",
    (22, False): "s390x",
    (243, True): "riscv64",
    (258, True): "loongarch64",
}


@struct(frozen=True, slots=True)
class Architecture:
    """One table of ``architectures.toml``: what booting nodes of this processor needs."""

    name: str
    aliases: tuple[str, ...]
    debian: str
    elf_machine: int
    qemu_user: str
    busybox: str
    dhcp_bios: tuple[int, ...]
    dhcp_uefi: tuple[int, ...]
    dhcp_uefi_http: tuple[int, ...]
    uefi_loader: str
    uefi_http_loader: str
    qemu_system: str
    qemu_machine: str
    qemu_cpu: str
    firmware_package: str
    firmware_code: str
    firmware_vars: str
    console: str


@cache
def known() -> dict[str, Architecture]:
    """Every architecture of the table, by its name."""
    import tomllib  # here: dim's start does not pay for it

    path = Path(__file__).with_name("architectures.toml")
    table = tomllib.loads(path.read_text())
    found = {}
    for name, facts in table.items():
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in facts.items()}
        found[name] = Architecture(name=name, **values)
    return found


def canonical(name: str) -> str | None:
    """The table's name of ``name`` or one of its aliases (case-insensitive); None if none."""
    wanted = name.strip().lower()
    for arch in known().values():
        if wanted == arch.name or wanted in arch.aliases:
            return arch.name
    return None


def named(name: str) -> Architecture:
    """The architecture ``name`` (or an alias); a usage error naming the known ones."""
    found = canonical(name)
    if found is None:
        raise UsageError(f"unknown architecture {name!r}: dim boots {', '.join(choices())}")
    return known()[found]


def choices() -> list[str]:
    """The names and aliases accepted, for messages and --help."""
    return [f"{a.name} ({', '.join(a.aliases)})" if a.aliases else a.name for a in known().values()]


def machine_name(machine: int, little_endian: bool) -> str:
    """The architecture of an ELF machine number: the table's, else a well-known name, else
    ``ELF machine N``."""
    for arch in known().values():
        if arch.elf_machine == machine:
            return arch.name
    return _OTHER_MACHINES.get((machine, little_endian), f"ELF machine {machine}")


def elf_machine(path: str | os.PathLike) -> tuple[int, bool] | None:
    """(e_machine, little-endian) of the ELF file ``path``; None if it is not one (or cannot
    be read: a special file, a dangling link)."""
    try:
        with open(path, "rb", buffering=0) as handle:
            head = handle.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return None
    little = head[5] == 1
    return int.from_bytes(head[18:20], "little" if little else "big"), little


def detect(roots: Sequence[Path], removed: Iterable[str] = ()) -> str | None:
    """The architecture of the tree that ``roots`` make together, the first root that holds a
    path winning (a change's staging folder over the live tree it changes); paths of
    ``removed`` are gone. None when it holds no ELF binary where one is looked for."""
    gone = set(removed)
    for probe in PROBES:
        found = _machine_of(roots, probe, gone)
        if found is not None:
            return machine_name(*found)
    for folder in ("usr/bin", "bin"):
        for name in _listed(roots, folder, gone)[:SCANNED]:
            found = _machine_of(roots, f"{folder}/{name}", gone)
            if found is not None:
                return machine_name(*found)
    return None


def _machine_of(roots: Sequence[Path], path: str, gone: set[str]) -> tuple[int, bool] | None:
    """The ELF machine of the regular file ``path`` of the layered tree."""
    found = _walk(roots, path, gone)
    return elf_machine(found[0]) if found and stat.S_ISREG(found[1]) else None


def _listed(roots: Sequence[Path], folder: str, gone: set[str]) -> list[str]:
    """The names in ``folder`` of the layered tree."""
    names: set[str] = set()
    for root in roots:
        found = _walk([root], folder, gone)
        if found is not None and stat.S_ISDIR(found[1]):
            try:
                names.update(os.listdir(found[0]))
            except OSError:
                continue
    return sorted(n for n in names if f"{folder}/{n}" not in gone)


def _walk(roots: Sequence[Path], path: str, gone: set[str]) -> tuple[Path, int] | None:
    """Where ``path`` of the tree that ``roots`` make lies, and its mode: each component's
    symbolic link followed inside the tree (an absolute target is the tree's, never this
    machine's; ``..`` stops at the tree's root), the first root holding a component winning;
    None if it leads nowhere, into ``gone``, or loops."""
    pending = collections.deque(path.split("/"))
    done: list[str] = []
    links = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        current = "/".join([*done, part])
        found = None if current in gone else _lstat(roots, current)
        if found is None:
            return None
        if stat.S_ISLNK(found[1]):
            links += 1
            if links > _LINKS:
                return None
            target = os.readlink(found[0])
            if target.startswith("/"):
                done = []
            pending.extendleft(reversed(target.split("/")))
            continue
        done.append(part)
    return _lstat(roots, "/".join(done)) if done else (roots[0], stat.S_IFDIR)


def _lstat(roots: Sequence[Path], path: str) -> tuple[Path, int] | None:
    """The first root's ``path`` and its mode (a link's own)."""
    for root in roots:
        where = root / path
        try:
            return where, os.lstat(where).st_mode
        except OSError:
            continue
    return None
