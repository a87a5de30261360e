"""The lab's QEMU command line per firmware kind (pure: nothing is started here; what each
kind does on the wire is in docs/dim.md, ``lab boot``)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from dim.cli import main
from dim.errors import LabError
from dim.lab import cluster
from dim.lab.qemu import (
    FIRMWARES,
    OVMF,
    OVMF_DIR,
    firmware_kind,
    foreign_command,
    foreign_macs,
    lab_macs,
    nvram_template,
    qemu_command,
)
from tests.conftest import require_root

MAC = "52:54:00:77:00:01"
CONSOLE = Path("/lab/logs/node01.console")
NVRAM = Path("/lab/nvram/node01.fd")


def command(firmware: str) -> list[str]:
    nvram = NVRAM if nvram_template(firmware) else None
    return qemu_command(MAC, "tap3", CONSOLE, firmware=firmware, memory=384, nvram=nvram)


def values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def nic(argv: list[str]) -> str:
    return next(d for d in values(argv, "-device") if d.startswith("virtio-net-pci"))


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_every_kind_boots_the_virtio_nic_on_the_tap_with_the_console_and_no_reboot(
    firmware: str,
) -> None:
    argv = command(firmware)
    assert argv[:3] == ["qemu-system-x86_64", "-accel", "tcg"]
    assert nic(argv).startswith(f"virtio-net-pci,netdev=n0,mac={MAC},bootindex=1")
    assert "tap,id=n0,ifname=tap3,script=no,downscript=no" in values(argv, "-netdev")
    assert values(argv, "-serial") == ["chardev:console"]
    assert f"logfile={CONSOLE}" in values(argv, "-chardev")[0]
    assert values(argv, "-boot") == ["n"] and "-no-reboot" in argv


def test_bios_ipxe_rom_is_seabios_with_the_nics_ipxe_rom_as_before() -> None:
    argv = command("bios-ipxe-rom")
    assert "-bios" not in argv and "-machine" not in argv and "pflash" not in " ".join(argv)
    assert "romfile" not in nic(argv)
    assert command("bios") == command("ipxe-rom") == argv
    assert qemu_command(MAC, "tap3", CONSOLE, memory=384) == argv  # the default


def test_uefi_ipxe_rom_is_the_single_ovmf_image_with_the_nics_ipxe_efi_rom() -> None:
    argv = command("uefi-ipxe-rom")
    assert values(argv, "-bios") == [str(OVMF)] and "romfile" not in nic(argv)
    assert "pflash" not in " ".join(argv) and command("uefi") == argv


@pytest.mark.parametrize(
    ("firmware", "code", "variables"),
    [
        ("uefi-pxe", "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        ("uefi-http", "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        ("uefi-secureboot", "OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
    ],
)
def test_ovmfs_own_network_stack_runs_from_flash_with_the_nic_rom_off(
    firmware: str, code: str, variables: str
) -> None:
    argv = command(firmware)
    assert nic(argv).endswith(",romfile=")  # no iPXE: OVMF's VirtioNetDxe and PXE/HTTP
    assert values(argv, "-drive") == [
        f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_DIR / code}",
        f"if=pflash,format=raw,unit=1,file={NVRAM}",
    ]
    assert nvram_template(firmware) == OVMF_DIR / variables
    assert "-bios" not in argv
    assert values(argv, "-machine")[0].startswith("q35")


def test_uefi_http_switches_ovmfs_pxe_off_and_the_others_keep_it() -> None:
    knobs = [
        "name=opt/org.tianocore/IPv4PXESupport,string=no",
        "name=opt/org.tianocore/IPv6PXESupport,string=no",
    ]
    assert values(command("uefi-http"), "-fw_cfg") == knobs
    for firmware in ("uefi-pxe", "uefi-secureboot", "bios-ipxe-rom", "uefi-ipxe-rom"):
        assert "-fw_cfg" not in command(firmware)


def test_secure_boot_has_smm_and_flash_writable_from_smm_only() -> None:
    argv = command("uefi-secureboot")
    assert values(argv, "-machine") == ["q35,smm=on"]
    assert values(argv, "-global") == ["driver=cfi.pflash01,property=secure,value=on"]
    assert "smm" not in " ".join(command("uefi-pxe"))


def test_a_flash_kind_without_the_nodes_nvram_and_an_unknown_kind_are_errors() -> None:
    with pytest.raises(ValueError, match="NVRAM"):
        qemu_command(MAC, "tap3", CONSOLE, firmware="uefi-pxe", memory=384)
    with pytest.raises(ValueError, match="unknown firmware 'pxe'"):
        firmware_kind("pxe")
    with pytest.raises(ValueError, match="no bios-pxe in the lab: SeaBIOS has no network stack"):
        firmware_kind("bios-pxe")
    assert nvram_template("bios-ipxe-rom") is None and nvram_template("uefi") is None


def test_lab_boot_passes_the_firmware_and_refuses_unknown_or_contradictory_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_root()  # dim lab refuses to run without root
    calls = []
    monkeypatch.setattr(cluster, "boot", lambda folder, names, **kw: calls.append(kw))
    monkeypatch.setattr("dim.cli.lab._lab_nodes", lambda folder, nodeset: ["node01"])
    monkeypatch.setattr("dim.cli.lab._folder", lambda folder: Path(folder))
    for argv, firmware, uefi in (
        (["--firmware", "uefi-http"], "uefi-http", False),
        (["--uefi"], None, True),
        ([], None, False),
    ):
        assert main(["lab", "boot", "--dir", str(tmp_path), "--no-watch", *argv]) == 0
        given = calls.pop()
        assert (given["firmware"], given["uefi"]) == (firmware, uefi) and not calls
    assert main(["lab", "boot", "--dir", str(tmp_path), "--firmware", "bios-pxe"]) == 2
    assert "no bios-pxe in the lab" in capsys.readouterr().err
    assert main(["lab", "boot", "--dir", str(tmp_path), "--firmware", "pxe"]) == 2
    assert "unknown firmware 'pxe'" in capsys.readouterr().err
    assert main(["lab", "boot", "--dir", str(tmp_path), "--uefi", "--firmware", "uefi-pxe"]) == 2
    assert not calls


def test_a_node_gets_its_own_nvram_per_kind_once_and_keeps_it(tmp_path: Path) -> None:
    if not (OVMF_DIR / "OVMF_VARS_4M.fd").exists():
        pytest.skip("no OVMF here (Debian package ovmf)")
    path = cluster._nvram(tmp_path, "node01", "uefi-pxe")
    assert path == tmp_path / "nvram" / "node01.uefi-pxe.fd"
    assert path.read_bytes() == (OVMF_DIR / "OVMF_VARS_4M.fd").read_bytes()
    path.write_bytes(b"boot entries")  # what OVMF wrote stays, as a server's NVRAM does
    assert cluster._nvram(tmp_path, "node01", "uefi-pxe").read_bytes() == b"boot entries"
    secure = cluster._nvram(tmp_path, "node01", "uefi-secureboot")
    assert secure.read_bytes() == (OVMF_DIR / "OVMF_VARS_4M.ms.fd").read_bytes()
    assert cluster._nvram(tmp_path, "node01", "bios-ipxe-rom") is None


def test_an_aarch64_node_runs_its_tables_qemu_machine_cpu_and_aavmf_from_flash() -> None:
    argv = foreign_command("aarch64", "52:54:00:77:0a:01", "tap4", CONSOLE, memory=384, nvram=NVRAM)
    assert argv[:3] == ["qemu-system-aarch64", "-accel", "tcg"]
    assert values(argv, "-machine") == ["virt"] and values(argv, "-cpu") == ["cortex-a57"]
    assert values(argv, "-drive") == [
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd",
        f"if=pflash,format=raw,unit=1,file={NVRAM}",
    ]
    # the firmware's own PXE: no option ROM (no iPXE for arm64), the same console and NIC
    assert nic(argv) == "virtio-net-pci,netdev=n0,mac=52:54:00:77:0a:01,bootindex=1,romfile="
    assert values(argv, "-serial") == ["chardev:console"] and "-no-reboot" in argv


def test_the_labs_aarch64_nodes_are_armNN_with_macs_of_their_own() -> None:
    assert foreign_macs("aarch64", 2) == {
        "arm01": "52:54:00:77:0a:01",
        "arm02": "52:54:00:77:0a:02",
    }
    every = lab_macs()
    assert every["node01"] == MAC and every["arm99"] == "52:54:00:77:0a:63"
    assert len(set(every.values())) == len(every) == 198


def test_an_aarch64_lab_declares_a_group_of_that_arch_with_its_own_image_and_addresses() -> None:
    from dim.layout.parser import parse

    layout = parse(cluster.layout_text("dnsmasq", 2, arches=("aarch64",)).encode(), "lab.xml")
    group = layout.groups["aarch64"]
    assert (group.nodeset, group.arch) == ("arm[01-02]", "aarch64")
    arm = layout.node("arm02")
    assert (arm.image, str(arm.boot.ip)) == ("tiny-aarch64", "10.77.0.202")
    assert layout.images["tiny-aarch64"].kernel_args == "console=ttyAMA0"
    assert "aarch64" not in parse(cluster.layout_text("dnsmasq", 2).encode(), "l.xml").groups
    paired = parse(cluster.layout_text("dnsmasq", 2, 2, arches=("aarch64",)).encode(), "l.xml")
    assert paired.node("arm01").server == "srv1"


def test_an_aarch64_node_boots_by_uefi_pxe_only() -> None:
    assert cluster._foreign_kind("arm01", "aarch64", "bios-ipxe-rom") == "uefi-pxe"  # default
    assert cluster._foreign_kind("arm01", "aarch64", "uefi-pxe") == "uefi-pxe"
    with pytest.raises(LabError, match=r"arm01 \(aarch64\) boots by its UEFI firmware's PXE"):
        cluster._foreign_kind("arm01", "aarch64", "uefi-http")


def test_lab_up_takes_architectures_by_name_or_alias_and_refuses_unknown_ones() -> None:
    from dim.cli.lab import _architectures

    assert _architectures("arm64") == ("x86_64", "aarch64")
    assert _architectures("x86_64,aarch64,amd64") == ("x86_64", "aarch64")
    with pytest.raises(click.BadParameter, match="unknown architecture riscv64"):
        _architectures("x86_64,riscv64")


def test_more_aarch64_nodes_than_their_addresses_is_refused_before_any_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab"
    argv = ["lab", "up", "--dir", str(lab), "--arch", "aarch64", "--nodes", "51"]
    assert main(argv) == 2
    assert "at most 50 with --arch x86_64,aarch64" in capsys.readouterr().err
    assert not lab.exists()
    with pytest.raises(LabError, match="at most 50 aarch64 nodes in the lab"):
        cluster.up(lab, nodes=51, arches=("aarch64",), say=print, bmcs=False)
    assert not lab.exists()
