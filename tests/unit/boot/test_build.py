"""dim boot build: kernel and initramfs per image version, reused while the inputs hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dim.boot.build import build, inside, latest_build, read_kernel_version
from dim.errors import BootError
from dim.layout.model import Image
from tests.image_trees import Dim, version_tree, write

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


def image_tree(
    root: Path,
    *,
    modules: dict[str, list[str]] = MODULES,
    lib: str = "lib",
    release: str = RELEASE,
) -> Path:
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{release}").write_bytes(bzimage(release))
    folder = root / lib / "modules" / release
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
    root = version_tree(dim.store, "tiny", 1)
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


# -- warnings about the image's kernel and its NFS root -----------------------------------------

NEW = "7.3.4-amd64"  # newer than every series dim is tested with
READ_PLUS_CONFIG = "CONFIG_NFS_V4_2=y\nCONFIG_NFS_V4_2_READ_PLUS=y\n"
TINY_42 = Image("tiny", persistent=("/etc",), nfs_options="actimeo=1,vers=4.2")


def new_kernel_tree(root: Path) -> Path:
    """An image whose kernel is newer than tested and reads with READ_PLUS; its config, as
    some distributions lay it out, is an absolute link to /usr/lib (inside the image)."""
    tree = image_tree(root, release=NEW)
    write(tree, f"usr/lib/linux/config-{NEW}", READ_PLUS_CONFIG)
    (tree / "boot" / f"config-{NEW}").symlink_to(f"/usr/lib/linux/config-{NEW}")
    return tree


def kernel_warnings(warnings: tuple[str, ...] | list[str]) -> list[str]:
    """The warnings about the kernel, without those about modules the fake image lacks."""
    return [w for w in warnings if not w.startswith("image tiny has no ")]


def test_a_kernel_newer_than_tested_with_read_plus_on_ganesha_is_warned_about_and_recorded(
    dim: Dim, busybox: Path, tmp_path: Path
) -> None:
    dim.ok("image", "import", "tiny", "--from", str(new_kernel_tree(tmp_path / "src")))
    built = build(dim.store, TINY_42, busybox=busybox, nfs_servers={"ganesha"})
    assert built.kernel_version == NEW
    newer, read_plus = kernel_warnings(built.warnings)
    assert newer.startswith(f"image tiny: kernel {NEW} (series 7.3) is newer than the series")
    assert 'nfs-options="actimeo=1,vers=4.1" is known to work' in newer
    assert read_plus.startswith("image tiny: its nfs-options ask for vers=4.2 and kernel")
    assert "READ_PLUS" in read_plus and "nfs-ganesha before 6.2" in read_plus
    manifest = json.loads(built.manifest.read_text())
    assert manifest["kernel_version"] == NEW
    assert manifest["warnings"] == list(built.warnings)
    assert manifest["warnings"][-2:] == [newer, read_plus]
    again = build(dim.store, TINY_42, busybox=busybox, nfs_servers={"ganesha"})
    assert again.reused and again.warnings == built.warnings
    found = latest_build(dim.store, "tiny")
    assert found is not None and found.warnings == built.warnings


def test_read_plus_is_not_warned_about_when_the_kernel_nfs_server_exports_the_image(
    dim: Dim, busybox: Path, tmp_path: Path
) -> None:
    dim.ok("image", "import", "tiny", "--from", str(new_kernel_tree(tmp_path / "src")))
    built = build(dim.store, TINY_42, busybox=busybox, nfs_servers={"kernel"})
    assert [w.split(": ", 1)[1].split()[0] for w in kernel_warnings(built.warnings)] == ["kernel"]


def test_a_tested_kernel_gets_no_warning(imported: Dim, busybox: Path) -> None:
    built = build(imported.store, TINY_42, busybox=busybox, nfs_servers={"ganesha"})
    assert kernel_warnings(built.warnings) == []


def test_warnings_follow_the_image_options_on_reuse_without_rebuilding(
    dim: Dim, busybox: Path, tmp_path: Path
) -> None:
    dim.ok("image", "import", "tiny", "--from", str(new_kernel_tree(tmp_path / "src")))
    first = build(dim.store, TINY_42, busybox=busybox, nfs_servers={"ganesha"})
    initrd = os.stat(first.initrd)
    tiny_41 = Image("tiny", persistent=("/etc",), nfs_options="actimeo=1,vers=4.1")
    again = build(dim.store, tiny_41, busybox=busybox, nfs_servers={"ganesha"})
    assert again.reused and len(kernel_warnings(again.warnings)) == 1  # the newer kernel's
    assert json.loads(again.manifest.read_text())["warnings"] == list(again.warnings)
    after = os.stat(again.initrd)
    assert (after.st_ino, after.st_mtime_ns) == (initrd.st_ino, initrd.st_mtime_ns)


def test_dim_boot_build_prints_its_warnings_on_stderr_and_in_json_built_or_reused(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, busybox: Path
) -> None:
    layout = LAYOUT.replace('<image name="tiny">', '<image name="tiny" nfs-options="vers=4.2">')
    dim = Dim(tmp_path, capsys, layout=layout)
    dim.ok("image", "import", "tiny", "--from", str(new_kernel_tree(tmp_path / "src")))
    monkeypatch.setattr("dim.boot.build.BUSYBOX", busybox)
    for args in ((), (), ("--json",)):
        run = dim("boot", "build", "tiny", *args)
        assert run.status == 0, run.err
        lines = run.err.splitlines()
        assert all(line.startswith("warning: image tiny") for line in lines), lines
        newer, read_plus = kernel_warnings([line.removeprefix("warning: ") for line in lines])
        assert f"kernel {NEW} (series 7.3) is newer" in newer
        assert "READ_PLUS" in read_plus
    record = json.loads(run.out)
    assert record["reused"] is True and record["kernel_version"] == NEW
    assert [f"warning: {w}" for w in record["warnings"]] == lines


def test_dim_boot_build_says_nothing_of_read_plus_when_the_kernel_nfs_server_exports_it(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, busybox: Path
) -> None:
    layout = LAYOUT.replace('nfs="ganesha"', 'nfs="kernel"').replace(
        '<image name="tiny">', '<image name="tiny" nfs-options="vers=4.2">'
    )
    dim = Dim(tmp_path, capsys, layout=layout)
    dim.ok("image", "import", "tiny", "--from", str(new_kernel_tree(tmp_path / "src")))
    monkeypatch.setattr("dim.boot.build.BUSYBOX", busybox)
    run = dim("boot", "build", "tiny")
    assert run.status == 0, run.err
    assert "is newer than the series dim is tested with" in run.err
    assert "READ_PLUS" not in run.err
