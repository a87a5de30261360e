"""dim boot build: kernel and initramfs per image version, reused while the inputs hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dim.boot.build import build, inside, latest_build, read_kernel_version
from dim.errors import BootError
from dim.layout.model import Image
from tests.image_trees import Dim

LAYOUT = """<?xml version="1.0"?>
<cluster name="boottest" domain="boottest.dim">
  <network name="boot" subnet="10.78.0.0/24" gateway="10.78.0.1"/>
  <server name="srv" address="10.78.0.1" dhcp="none" nfs="ganesha"/>
  <image name="tiny"><persist path="/etc"/></image>
</cluster>
"""
RELEASE = "6.1.0-t-amd64"
MODULES = {
    "kernel/net/sunrpc/sunrpc.ko": [],
    "kernel/fs/nfs/nfs.ko": ["kernel/net/sunrpc/sunrpc.ko"],
    "kernel/fs/nfs/nfsv3.ko": ["kernel/fs/nfs/nfs.ko", "kernel/net/sunrpc/sunrpc.ko"],
    "kernel/fs/nfs/nfsv4.ko": ["kernel/fs/nfs/nfs.ko", "kernel/net/sunrpc/sunrpc.ko"],
    "kernel/drivers/net/virtio_net.ko": [],
    "kernel/drivers/virtio/virtio_pci.ko": [],
    "kernel/drivers/net/ethernet/intel/e1000/e1000.ko": [],
}


def bzimage(release: str, size: int = 4096) -> bytes:
    """Enough of a bzImage for its setup header to name its release."""
    data = bytearray(size)
    data[0x202:0x206] = b"HdrS"
    text_at = 0x400
    data[0x20E:0x210] = (text_at - 0x200).to_bytes(2, "little")
    version = f"{release} (dim@test) #1 SMP\0".encode()
    data[text_at : text_at + len(version)] = version
    return bytes(data)


def image_tree(root: Path, *, modules: dict[str, list[str]] = MODULES, lib: str = "lib") -> Path:
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{RELEASE}").write_bytes(bzimage(RELEASE))
    folder = root / lib / "modules" / RELEASE
    for path in modules:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(b"\x7fELF " + path.encode())
    dep = "".join(f"{path}: {' '.join(deps)}\n" for path, deps in modules.items())
    (folder / "modules.dep").write_text(dep)
    (folder / "modules.builtin").write_text("kernel/net/packet/af_packet.ko\n")
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("tiny\n")
    return root


@pytest.fixture
def busybox(tmp_path: Path) -> Path:
    """A stand-in for busybox: it lists its applets, which is all the build asks of it."""
    path = tmp_path / "busybox"
    path.write_text('#!/bin/sh\n[ "$1" = --list-full ] && printf "bin/sh\\nsbin/switch_root\\n"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def dim(tmp_path: Path, capsys) -> Dim:
    return Dim(tmp_path, capsys, layout=LAYOUT)


@pytest.fixture
def imported(dim: Dim, tmp_path: Path) -> Dim:
    dim.ok("image", "import", "tiny", "--from", str(image_tree(tmp_path / "src")))
    return dim


TINY = Image("tiny", persistent=("/etc",))


def test_kernel_initrd_and_manifest_land_in_state_boot_image_version(
    imported: Dim, busybox: Path
) -> None:
    artifacts = build(imported.store, TINY, busybox=busybox)
    folder = imported.state / "boot" / "tiny" / "1"
    assert (artifacts.folder, artifacts.kernel, artifacts.initrd) == (
        folder,
        folder / "vmlinuz",
        folder / "initrd.img",
    )
    assert artifacts.kernel.read_bytes() == bzimage(RELEASE)
    assert artifacts.initrd.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert artifacts.kernel_version == RELEASE
    assert not artifacts.reused
    assert artifacts.modules == (
        "sunrpc",
        "nfs",
        "nfsv3",
        "nfsv4",
        "virtio_pci",
        "virtio_net",
        "e1000",
    )
    manifest = json.loads(artifacts.manifest.read_text())
    assert manifest["inputs"]["kernel_version"] == RELEASE
    assert set(manifest["inputs"]["modules"]) == set(MODULES)
    assert {"kernel", "busybox", "init.sh", "udhcpc.sh", "builder"} <= set(manifest["inputs"])
    assert manifest["outputs"]["initrd.img"]["bytes"] == artifacts.initrd_bytes


def test_a_second_build_with_the_same_inputs_reuses_the_same_files(
    imported: Dim, busybox: Path
) -> None:
    first = build(imported.store, TINY, busybox=busybox)
    before = {p: os.stat(p) for p in (first.kernel, first.initrd, first.manifest)}
    second = build(imported.store, TINY, busybox=busybox)
    assert second.reused
    for path, stat in before.items():
        after = os.stat(path)
        assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def test_a_rebuild_from_scratch_is_byte_identical(imported: Dim, busybox: Path) -> None:
    first = build(imported.store, TINY, busybox=busybox)
    initrd = first.initrd.read_bytes()
    first.initrd.unlink()
    again = build(imported.store, TINY, busybox=busybox)
    assert not again.reused
    assert again.initrd.read_bytes() == initrd


def test_a_damaged_output_is_rebuilt(imported: Dim, busybox: Path) -> None:
    first = build(imported.store, TINY, busybox=busybox)
    good = first.initrd.read_bytes()
    first.initrd.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    again = build(imported.store, TINY, busybox=busybox)
    assert not again.reused
    assert again.initrd.read_bytes() == good


def test_a_changed_busybox_rebuilds(imported: Dim, busybox: Path) -> None:
    build(imported.store, TINY, busybox=busybox)
    busybox.write_text(busybox.read_text() + "# another busybox\n")
    assert not build(imported.store, TINY, busybox=busybox).reused


def test_a_new_image_version_is_built_in_its_own_folder(
    imported: Dim, busybox: Path, tmp_path: Path
) -> None:
    first = build(imported.store, TINY, busybox=busybox)
    module = tmp_path / "src" / "lib" / "modules" / RELEASE / "kernel" / "fs" / "nfs" / "nfs.ko"
    module.write_bytes(b"\x7fELF a new nfs")
    imported.ok("image", "sync", "tiny", "--from", str(tmp_path / "src"))
    second = build(imported.store, TINY, busybox=busybox)
    assert second.version == 2 and not second.reused
    assert second.folder == imported.state / "boot" / "tiny" / "2"
    assert first.initrd.exists()  # version 1's build stays for nodes that booted it
    assert second.initrd.read_bytes() != first.initrd.read_bytes()


def test_latest_build_is_the_intact_build_of_the_latest_version(
    imported: Dim, busybox: Path
) -> None:
    assert latest_build(imported.store, "tiny") is None
    built = build(imported.store, TINY, busybox=busybox)
    found = latest_build(imported.store, "tiny")
    assert found is not None
    assert (found.kernel, found.initrd, found.modules) == (
        built.kernel,
        built.initrd,
        built.modules,
    )


def test_the_newest_kernel_of_the_image_is_taken(dim: Dim, busybox: Path, tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "src")
    (tree / "boot" / f"vmlinuz-{RELEASE}").unlink()
    (tree / "boot" / "vmlinuz-6.1.0-9").write_bytes(bzimage("6.1.0-9"))
    (tree / "boot" / "vmlinuz-6.1.0-10").write_bytes(bzimage("6.1.0-10"))
    (tree / "lib" / "modules" / RELEASE).rename(tree / "lib" / "modules" / "6.1.0-10")
    dim.ok("image", "import", "tiny", "--from", str(tree))
    assert build(dim.store, TINY, busybox=busybox).kernel_version == "6.1.0-10"


def test_a_usr_merged_image_is_read_through_its_own_links(
    dim: Dim, busybox: Path, tmp_path: Path
) -> None:
    tree = image_tree(tmp_path / "src", lib="usr/lib")
    (tree / "lib").symlink_to("/usr/lib")  # absolute: inside the image, not the host's /usr/lib
    dim.ok("image", "import", "tiny", "--from", str(tree))
    artifacts = build(dim.store, TINY, busybox=busybox)
    assert len(artifacts.modules) == len(MODULES)
    root = dim.store.paths.version("tiny", 1)
    assert inside(root, "/lib/modules") == root / "usr" / "lib" / "modules"


def test_a_given_kernel_names_its_release_in_its_header(
    imported: Dim, busybox: Path, tmp_path: Path
) -> None:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(bzimage(RELEASE, size=8192))
    artifacts = build(imported.store, TINY, kernel=kernel, busybox=busybox)
    assert artifacts.kernel.read_bytes() == kernel.read_bytes()
    assert read_kernel_version(kernel) == RELEASE


def test_a_kernel_without_header_or_version_in_its_name_is_refused(tmp_path: Path) -> None:
    kernel = tmp_path / "kernel"
    kernel.write_bytes(b"not a kernel")
    with pytest.raises(BootError, match="is not a bzImage kernel"):
        read_kernel_version(kernel)
    named = tmp_path / "vmlinuz-5.10.0-x"
    named.write_bytes(b"not a bzImage")
    assert read_kernel_version(named) == "5.10.0-x"


# -- the command -------------------------------------------------------------------------------


def test_dim_boot_build_prints_what_it_built_then_reused(
    imported: Dim, monkeypatch: pytest.MonkeyPatch, busybox: Path
) -> None:
    monkeypatch.setattr("dim.boot.build.BUSYBOX", busybox)
    out = imported.ok("boot", "build", "tiny")
    assert out.startswith(f"tiny: version 1, kernel {RELEASE}, 7 modules, initrd ")
    assert "built in" in out
    assert imported.ok("boot", "build", "tiny").splitlines()[0].endswith(": reused")
    record = json.loads(imported.ok("boot", "build", "tiny", "--json"))
    assert record["reused"] is True
    assert record["initrd"] == str(imported.state / "boot" / "tiny" / "1" / "initrd.img")


def test_an_image_without_kernel_is_one_error_line_and_exit_2(dim: Dim, tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "src")
    (tree / "boot" / f"vmlinuz-{RELEASE}").unlink()
    dim.ok("image", "import", "tiny", "--from", str(tree))
    run = dim("boot", "build", "tiny")
    assert run.status == 2
    lines = run.err.splitlines()
    assert len(lines) == 2, run.err  # the error and its hint
    assert lines[0] == "dim: error: image tiny (version 1) has no kernel: no /boot/vmlinuz-* in it"
    assert lines[1].startswith("hint: install a kernel in the image")


def test_an_image_without_its_nfs_module_is_refused_naming_it(
    dim: Dim, busybox: Path, tmp_path: Path
) -> None:
    modules = {k: v for k, v in MODULES.items() if "nfsv4" not in k}
    dim.ok("image", "import", "tiny", "--from", str(image_tree(tmp_path / "src", modules=modules)))
    with pytest.raises(BootError, match="image tiny lacks the kernel module nfsv4"):
        build(dim.store, TINY, busybox=busybox)


def test_an_image_without_modules_for_its_kernel_names_where_it_looked(
    dim: Dim, busybox: Path, tmp_path: Path
) -> None:
    tree = image_tree(tmp_path / "src")
    (tree / "lib" / "modules" / RELEASE).rename(tree / "lib" / "modules" / "other")
    dim.ok("image", "import", "tiny", "--from", str(tree))
    with pytest.raises(BootError, match=f"/lib/modules/{RELEASE} and /usr/lib/modules/{RELEASE}"):
        build(dim.store, TINY, busybox=busybox)


def test_an_image_without_a_version_cannot_be_built(dim: Dim) -> None:
    run = dim("boot", "build", "tiny")
    assert run.status == 2
    assert "image tiny has no version yet" in run.err
