"""The initramfs: a newc cpio archive, gzip-compressed, byte-identical for identical inputs.

::

    archive = Archive()
    archive.file("init", init_script, mode=0o755)
    archive.symlink("bin/sh", "busybox")
    data = archive.gzip()          # sorted, every time 0, owner root, inodes numbered in order

:func:`contents` fills an archive for dim's network boot: busybox with a link per applet, the
modules chosen by :mod:`dim.boot.modules` (decompressed), a modules.dep for just those, the
list ``/etc/dim/modules`` that /init loads in order, /init and its DHCP script, and the two
device nodes the kernel needs before /init mounts devtmpfs (/dev/console, /dev/null).

The newc format (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst):
per entry a 110-byte ASCII header (magic ``070701`` and 13 eight-digit hex fields), the NUL-
terminated name padded to 4 bytes, the data padded to 4 bytes; ``TRAILER!!!`` ends it.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import stat
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from dim import processes
from dim.boot.modules import Module, ModuleIndex, modules_dep, uncompressed_path
from dim.errors import BootError

#: Folders /init uses before the root is mounted.
FOLDERS = ("dev", "etc/dim", "newroot", "proc", "root", "run", "sys", "tmp")
INIT = "init.sh"  # package data: the initramfs's /init
DHCP_SCRIPT = "udhcpc.sh"  # package data: udhcpc's script, /etc/dim/udhcpc.sh


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative, no leading slash
    mode: int  # with the file type bits
    data: bytes = b""  # a file's content, or a symbolic link's target
    rdev: tuple[int, int] = (0, 0)


class Archive:
    """Entries of a cpio archive; parents are added as folders (0755) when written."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def folder(self, path: str, mode: int = 0o755) -> None:
        self._add(Entry(_clean(path), stat.S_IFDIR | mode))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(Entry(_clean(path), stat.S_IFREG | mode, data))

    def symlink(self, path: str, target: str) -> None:
        self._add(Entry(_clean(path), stat.S_IFLNK | 0o777, target.encode()))

    def device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(Entry(_clean(path), stat.S_IFCHR | mode, rdev=(major, minor)))

    def cpio(self) -> bytes:
        """The newc archive: entries sorted by path, parents before children."""
        entries = dict(self.entries)
        for path in list(entries):
            for parent in PurePosixPath(path).parents:
                name = str(parent)
                if name != "." and name not in entries:
                    entries[name] = Entry(name, stat.S_IFDIR | 0o755)
        out = bytearray()
        for inode, path in enumerate(sorted(entries), start=1):
            _write(out, entries[path], inode)
        _write(out, Entry("TRAILER!!!", 0), 0)
        return bytes(out)

    def gzip(self) -> bytes:
        """The archive compressed as the kernel reads it; ``mtime=0`` keeps it reproducible."""
        return gzip.compress(self.cpio(), compresslevel=6, mtime=0)

    def _add(self, entry: Entry) -> None:
        self.entries[entry.path] = entry


def contents(
    *,
    busybox: bytes,
    applets: list[str],
    kernel_version: str,
    index: ModuleIndex,
    modules: tuple[Module, ...],
    module_files: dict[str, bytes],
    init: bytes,
    dhcp_script: bytes,
) -> Archive:
    """Everything dim's initramfs holds; ``module_files`` maps a module's path to its bytes."""
    archive = Archive()
    for folder in FOLDERS:
        archive.folder(folder)
    archive.folder("tmp", 0o1777)
    archive.device("dev/console", 5, 1)
    archive.device("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", busybox, 0o755)
    for applet in applets:
        if applet.strip("/") != "bin/busybox":
            archive.symlink(applet, "/bin/busybox")
    archive.file("init", init, 0o755)
    archive.file("etc/dim/udhcpc.sh", dhcp_script, 0o755)
    base = f"lib/modules/{kernel_version}"
    order = []
    for module in modules:
        path = uncompressed_path(module.path)
        archive.file(f"{base}/{path}", decompress(module.path, module_files[module.path]))
        order.append(f"{'required' if module.required else 'optional'} {path}\n")
    archive.file(f"{base}/modules.dep", modules_dep(index, modules).encode())
    archive.file("etc/dim/modules", "".join(order).encode())
    archive.file("etc/dim/kernel", f"{kernel_version}\n".encode())
    return archive


def package_file(name: str) -> bytes:
    """One of dim.boot's data files (init.sh, udhcpc.sh)."""
    return resources.files("dim.boot").joinpath(name).read_bytes()


def busybox_applets(busybox: Path) -> list[str]:
    """Where each applet of ``busybox`` belongs (``bin/sh``, ``sbin/switch_root``…), sorted."""
    try:
        result = processes.run([str(busybox), "--list-full"], timeout=30)
        failure = f"exit status {result.returncode}" if result.returncode else None
    except (OSError, subprocess.SubprocessError) as exc:
        failure = str(exc)
    if failure is not None:
        raise BootError(
            f"cannot run {busybox} --list-full: {failure}",
            hint="install busybox-static (apt-get install busybox-static)",
        )
    return sorted({line.strip().lstrip("/") for line in result.stdout.splitlines() if line.strip()})


def decompress(path: str, data: bytes) -> bytes:
    """A module's plain ELF: busybox's insmod loads neither .ko.xz nor .ko.zst."""
    try:
        if path.endswith(".ko.xz"):
            return lzma.decompress(data)
        if path.endswith(".ko.gz"):
            return gzip.decompress(data)
        if path.endswith(".ko.zst"):
            return _unzstd(path, data)
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise BootError(f"cannot decompress the module {path}: {exc}") from exc
    return data


def _unzstd(path: str, data: bytes) -> bytes:
    program = shutil.which("zstd")
    if program is None:
        raise BootError(
            f"the module {path} is zstd-compressed and zstd is not installed",
            hint="apt-get install zstd",
        )
    result = processes.run([program, "-dc"], input=data, text=False)
    if result.returncode != 0:
        raise BootError(f"cannot decompress the module {path}: {result.stderr.decode().strip()}")
    return result.stdout


def _clean(path: str) -> str:
    clean = str(PurePosixPath("/", path)).lstrip("/")
    if not clean or ".." in PurePosixPath(clean).parts:
        raise ValueError(f"bad path in an archive: {path!r}")
    return clean


def _write(out: bytearray, entry: Entry, inode: int) -> None:
    name = entry.path.encode() + b"\0"
    kind = stat.S_IFMT(entry.mode)
    data = entry.data if kind in (stat.S_IFREG, stat.S_IFLNK) else b""
    fields = (
        inode,
        entry.mode,
        0,  # uid
        0,  # gid
        2 if kind == stat.S_IFDIR else 1,  # nlink
        0,  # mtime
        len(data),
        0,  # dev major
        0,  # dev minor
        entry.rdev[0],
        entry.rdev[1],
        len(name),
        0,  # check
    )
    out += b"070701" + b"".join(b"%08X" % value for value in fields)
    out += name
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
