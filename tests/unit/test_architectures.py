"""dim.architectures: the table of architectures, and an image tree's architecture read from
its real binaries (this machine's static busybox, Debian's arm64 one)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dim import architectures, debs
from dim.boot.build import busybox_for
from dim.errors import BootError, DimError, UsageError
from dim.lab.images import CACHE
from tests.conftest import require

HOST_BUSYBOX = Path("/bin/busybox")


def arm64_busybox() -> Path:
    """Debian's busybox-static for arm64, unpacked once in the lab's cache."""
    try:
        return debs.unpacked("busybox-static:arm64", CACHE) / "bin" / "busybox"
    except Exception as exc:  # no arm64 in dpkg, no mirror: a laptop's state
        require(False, f"busybox-static:arm64 cannot be fetched: {exc}")
        raise


def usr_merged_tree(root: Path, busybox: Path) -> Path:
    """A tree as Debian's are: /bin a link to usr/bin (absolute, to be followed inside the
    tree), /bin/sh a link to busybox."""
    (root / "usr" / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "usr" / "bin" / "busybox")
    (root / "usr" / "bin" / "sh").symlink_to("busybox")
    (root / "bin").symlink_to("/usr/bin")
    (root / "etc").mkdir()
    return root


def test_the_table_knows_x86_64_and_aarch64_by_their_aliases_too():
    assert architectures.named("amd64").name == "x86_64"
    assert architectures.named("ARM64").name == "aarch64"
    arm = architectures.named("aarch64")
    assert (arm.debian, arm.elf_machine, arm.dhcp_uefi, arm.dhcp_uefi_http) == (
        "arm64",
        183,
        (11,),
        (19,),
    )
    assert Path(architectures.named("x86_64").firmware_code).name == "OVMF_CODE_4M.fd"


def test_an_unknown_architecture_is_an_error_naming_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown architecture 'sparc64'.*x86_64.*aarch64"):
        architectures.named("sparc64")


def test_a_tree_of_this_machines_binaries_is_x86_64(tmp_path):
    require(HOST_BUSYBOX.exists(), "busybox-static is not installed")
    assert architectures.detect([usr_merged_tree(tmp_path, HOST_BUSYBOX)]) == "x86_64"


def test_a_tree_of_debians_arm64_binaries_is_aarch64(tmp_path):
    assert architectures.detect([usr_merged_tree(tmp_path, arm64_busybox())]) == "aarch64"


def test_an_absolute_link_is_followed_inside_the_tree_never_to_this_machine(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sh").symlink_to("/bin/busybox")  # this machine has one; the tree not
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "env").symlink_to("../../../../../../bin/busybox")
    assert architectures.detect([tmp_path]) is None


def test_a_link_loop_ends_in_no_architecture(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sh").symlink_to("sh2")
    (tmp_path / "bin" / "sh2").symlink_to("/bin/sh")
    assert architectures.detect([tmp_path]) is None


def test_a_change_staged_over_a_live_tree_counts_first_and_removed_paths_are_gone(tmp_path):
    live = usr_merged_tree(tmp_path / "live", arm64_busybox())
    staging = tmp_path / "staging"
    (staging / "usr" / "bin").mkdir(parents=True)
    require(HOST_BUSYBOX.exists(), "busybox-static is not installed")
    shutil.copy2(HOST_BUSYBOX, staging / "usr" / "bin" / "env")
    assert architectures.detect([staging, live]) == "x86_64"
    assert architectures.detect([staging, live], removed={"usr/bin/env"}) == "aarch64"


def test_binaries_outside_the_probes_are_found_by_a_scan_of_usr_bin(tmp_path):
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "a-script").write_text("#!/bin/sh\n")
    shutil.copy2(arm64_busybox(), tmp_path / "usr" / "bin" / "tool")
    assert architectures.detect([tmp_path]) == "aarch64"


def test_a_tree_without_elf_binaries_has_none(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "motd").write_text("hello\n")
    assert architectures.detect([tmp_path]) is None


@pytest.mark.parametrize(
    ("machine", "data", "name"),
    [(243, 1, "riscv64"), (21, 1, "ppc64le"), (21, 2, "ppc64"), (9999, 1, "ELF machine 9999")],
)
def test_machines_dim_does_not_boot_are_named_for_the_messages(tmp_path, machine, data, name):
    order = "little" if data == 1 else "big"
    header = b"\x7fELF\x02" + bytes([data]) + bytes(12) + machine.to_bytes(2, order)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sh").write_bytes(header + bytes(44))
    assert architectures.detect([tmp_path]) == name


def test_debians_arm64_busybox_runs_here_through_qemu_user(tmp_path):
    """What `dim image exec` on an arm64 image relies on: binfmt_misc's qemu-aarch64."""
    require(
        Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
        "qemu-user-static's qemu-aarch64 is not registered with binfmt_misc",
    )
    done = subprocess.run(
        [str(arm64_busybox()), "uname", "-m"], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "aarch64", done.stderr


def test_a_package_apt_does_not_know_is_one_error_naming_it(tmp_path):
    with pytest.raises(DimError, match=r"apt-get download dim-no-such-package:arm64 failed"):
        debs.unpacked("dim-no-such-package:arm64", tmp_path)
    assert not any((tmp_path / "debs").iterdir())  # no half-unpacked folder left


def test_the_initramfs_busybox_is_of_the_images_architecture(tmp_path):
    require(HOST_BUSYBOX.exists(), "busybox-static is not installed")
    assert busybox_for("x86_64", tmp_path) == HOST_BUSYBOX
    assert busybox_for(None, tmp_path) == HOST_BUSYBOX  # an image without ELF binaries
    arm = busybox_for("aarch64", CACHE)
    assert architectures.elf_machine(arm) == (183, True)
    with pytest.raises(BootError, match="riscv64, which dim does not boot"):
        busybox_for("riscv64", tmp_path, "rv")
