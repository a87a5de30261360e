"""The initramfs archive: newc format, reproducible bytes, and what dim puts in it."""

from __future__ import annotations

import gzip
import lzma
import stat
import subprocess
from dataclasses import dataclass

import pytest

from dim.boot.initramfs import Archive, contents, decompress, package_file
from dim.boot.modules import REQUIRED, WARN, parse, select
from dim.errors import BootError
from tests.conftest import require_binary


@dataclass(frozen=True, slots=True)
class Member:
    inode: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    rdev: tuple[int, int]
    data: bytes


def read_newc(data: bytes) -> dict[str, Member]:
    """Parse a newc archive as the kernel does (the test's own reader, not dim's writer)."""
    members, offset = {}, 0
    while True:
        assert data[offset : offset + 6] == b"070701", f"bad magic at {offset}"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        inode, mode, uid, gid, nlink, mtime, size, _, _, rmajor, rminor, namesize, _ = fields
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        assert data[name_start + namesize - 1] == 0
        data_start = (name_start + namesize + 3) & ~3
        body = data[data_start : data_start + size]
        offset = (data_start + size + 3) & ~3
        if name == "TRAILER!!!":
            assert offset == len(data)
            return members
        members[name] = Member(inode, mode, uid, gid, nlink, mtime, (rmajor, rminor), body)


def sample() -> Archive:
    archive = Archive()
    archive.file("init", b"#!/bin/sh\n", 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("lib/modules/6.1/kernel/fs/nfs/nfs.ko", b"\x7fELF" + b"x" * 5)
    archive.device("dev/console", 5, 1)
    archive.folder("tmp", 0o1777)
    return archive


def test_newc_entries_are_sorted_with_parents_first_and_fixed_metadata() -> None:
    members = read_newc(sample().cpio())
    assert list(members) == [
        "bin",
        "bin/sh",
        "dev",
        "dev/console",
        "init",
        "lib",
        "lib/modules",
        "lib/modules/6.1",
        "lib/modules/6.1/kernel",
        "lib/modules/6.1/kernel/fs",
        "lib/modules/6.1/kernel/fs/nfs",
        "lib/modules/6.1/kernel/fs/nfs/nfs.ko",
        "tmp",
    ]
    assert [m.inode for m in members.values()] == list(range(1, 14))
    assert all((m.uid, m.gid, m.mtime) == (0, 0, 0) for m in members.values())


def test_newc_kinds_modes_targets_and_devices() -> None:
    members = read_newc(sample().cpio())
    assert members["init"].mode == stat.S_IFREG | 0o755
    assert members["init"].data == b"#!/bin/sh\n"
    assert stat.S_ISLNK(members["bin/sh"].mode) and members["bin/sh"].data == b"busybox"
    assert members["dev/console"].mode == stat.S_IFCHR | 0o600
    assert members["dev/console"].rdev == (5, 1)
    assert members["tmp"].mode == stat.S_IFDIR | 0o1777
    assert members["lib/modules/6.1/kernel/fs/nfs/nfs.ko"].data == b"\x7fELFxxxxx"


def test_the_same_entries_give_the_same_bytes_in_any_order_of_adding() -> None:
    other = Archive()
    other.folder("tmp", 0o1777)
    other.device("dev/console", 5, 1)
    other.file("lib/modules/6.1/kernel/fs/nfs/nfs.ko", b"\x7fELF" + b"x" * 5)
    other.symlink("bin/sh", "busybox")
    other.file("init", b"#!/bin/sh\n", 0o755)
    assert other.gzip() == sample().gzip()
    assert gzip.decompress(sample().gzip()) == sample().cpio()


def test_the_host_cpio_lists_the_archive() -> None:
    cpio = require_binary("cpio", "cpio")
    listing = subprocess.run(
        [cpio, "-it", "--quiet"], input=sample().cpio(), capture_output=True, check=True
    )
    assert listing.stdout.decode().split() == list(read_newc(sample().cpio()))


def test_paths_leaving_the_archive_are_refused() -> None:
    with pytest.raises(ValueError):
        Archive().file("../etc/passwd", b"")


def test_compressed_modules_are_decompressed() -> None:
    elf = b"\x7fELF module"
    assert decompress("a.ko.xz", lzma.compress(elf)) == elf
    assert decompress("a.ko.gz", gzip.compress(elf)) == elf
    assert decompress("a.ko", elf) == elf
    with pytest.raises(BootError, match="cannot decompress the module a.ko.xz"):
        decompress("a.ko.xz", b"not xz")


def test_zstd_modules_are_decompressed_with_zstd() -> None:
    zstd = require_binary("zstd", "zstd")
    elf = b"\x7fELF module"
    packed = subprocess.run([zstd, "-c"], input=elf, capture_output=True, check=True).stdout
    assert decompress("a.ko.zst", packed) == elf


def test_contents_hold_busybox_init_modules_and_their_load_order() -> None:
    index = parse("kernel/nfs.ko.xz: kernel/sunrpc.ko\nkernel/sunrpc.ko:\nkernel/e1000.ko:\n")
    modules = select(index, image="t", wanted=(("nfs", REQUIRED), ("e1000", WARN))).modules
    files = {
        "kernel/nfs.ko.xz": lzma.compress(b"nfs elf"),
        "kernel/sunrpc.ko": b"sunrpc elf",
        "kernel/e1000.ko": b"e1000 elf",
    }
    archive = contents(
        busybox=b"busybox elf",
        applets=["bin/busybox", "bin/sh", "sbin/switch_root", "usr/bin/udhcpc"],
        kernel_version="6.1.0-t",
        index=index,
        modules=modules,
        module_files=files,
        init=package_file("init.sh"),
        dhcp_script=package_file("udhcpc.sh"),
    )
    members = read_newc(archive.cpio())
    assert members["bin/busybox"].data == b"busybox elf"
    assert members["bin/busybox"].mode == stat.S_IFREG | 0o755
    assert members["sbin/switch_root"].data == b"/bin/busybox"
    assert members["init"].data.startswith(b"#!/bin/sh\n")
    assert members["init"].mode == stat.S_IFREG | 0o755
    assert members["etc/dim/udhcpc.sh"].mode == stat.S_IFREG | 0o755
    assert members["dev/console"].rdev == (5, 1)
    assert members["dev/null"].rdev == (1, 3)
    base = "lib/modules/6.1.0-t"
    assert members[f"{base}/kernel/nfs.ko"].data == b"nfs elf"
    assert f"{base}/kernel/nfs.ko.xz" not in members
    assert members[f"{base}/modules.dep"].data == (
        b"kernel/e1000.ko:\nkernel/nfs.ko: kernel/sunrpc.ko\nkernel/sunrpc.ko:\n"
    )
    assert members["etc/dim/modules"].data == (
        b"required kernel/sunrpc.ko\nrequired kernel/nfs.ko\noptional kernel/e1000.ko\n"
    )
    assert members["etc/dim/kernel"].data == b"6.1.0-t\n"
    for folder in ("proc", "sys", "newroot", "run", "tmp"):
        assert stat.S_ISDIR(members[folder].mode)
