"""A lab node is a QEMU guest: its command line, firmware and MAC address.

TCG, not KVM (the nested /dev/kvm here hangs stock kernels). The node network-boots from its
virtio NIC on a tap device of the lab's bridge; a virtio-rng device gives it a random source;
its serial console is a Unix socket (to type into: `dim.lab.console`) logged to a file;
``-no-reboot`` makes a reboot or power-off end the process, a clean signal for the lab::

    macs = node_macs(2)          # {"node01": "52:54:00:77:00:01", "node02": …}
    command = qemu_command(macs["node01"], "tap0", Path("logs/node01.console"),
                           firmware="uefi-pxe", memory=384, nvram=Path("nvram/node01.fd"))

The firmware kinds (`FIRMWARES`), by what does the network boot:

``bios-ipxe-rom``   SeaBIOS with the NIC's option ROM, which is iPXE (Debian's ipxe-qemu):
                    the lab's default, and what every lab boot used before the others
``uefi-ipxe-rom``   OVMF (one flash image, ``-bios``) with the NIC's iPXE EFI ROM: iPXE
                    again, inside UEFI (``--uefi``)
``uefi-pxe``        OVMF with the NIC's ROM disabled: OVMF's own VirtioNetDxe, SNP and
                    PXE (DHCP with option 93 = 7, then TFTP), as a server's UEFI does
``uefi-http``       the same with OVMF's PXE switched off (fw_cfg), so that its HTTP boot
                    is the only network boot option (DHCP with vendor class HTTPClient,
                    option 93 = 16, then the loader over HTTP)
``uefi-secureboot`` OVMF built with Secure Boot and SMM, Microsoft's keys enrolled, PXE:
                    only Microsoft-signed loaders (shim) start

The UEFI kinds but ``uefi-ipxe-rom`` run the 4 MB OVMF pair as real machines have it: the
code read-only, the variables (NVRAM: boot entries, keys) a writable copy per node, which
`nvram_template` names and the caller copies once and keeps, as a server keeps its NVRAM.
There is no ``bios-pxe``: SeaBIOS has no network stack and every NIC ROM packaged for QEMU
here is iPXE, so a BIOS node's PXE client is always iPXE (see docs/dim.md, ``lab boot``).

A node of another architecture (the lab's ``armNN`` nodes: aarch64) runs that
architecture's QEMU, machine, CPU and UEFI firmware from its table in
``dim/architectures.toml`` (``qemu-system-aarch64 -M virt``, Debian's AAVMF), and boots by the
firmware's own PXE (``uefi-pxe``: DHCP with option 93 = 11, GRUB over TFTP), the one kind
there is for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dim import architectures

OVMF = Path("/usr/share/ovmf/OVMF.fd")
OVMF_DIR = Path("/usr/share/OVMF")

FIRMWARES = ("bios-ipxe-rom", "uefi-ipxe-rom", "uefi-pxe", "uefi-http", "uefi-secureboot")
DEFAULT_FIRMWARE = "bios-ipxe-rom"
# earlier names, still accepted: bench/boot.py's bios,uefi and the ipxe-rom
ALIASES = {"bios": "bios-ipxe-rom", "ipxe-rom": "bios-ipxe-rom", "uefi": "uefi-ipxe-rom"}

# code (read-only) and the variables template per kind that boots OVMF from flash
_FLASH = {
    "uefi-pxe": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    "uefi-http": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    "uefi-secureboot": ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
}


def firmware_kind(name: str) -> str:
    """The firmware kind ``name`` means (an alias resolved); ValueError if none."""
    kind = ALIASES.get(name, name)
    if kind == "bios-pxe":
        raise ValueError(
            "no bios-pxe in the lab: SeaBIOS has no network stack of its own and every NIC ROM "
            "packaged for QEMU is iPXE (bios-ipxe-rom); the BIOS PXE chain (undionly.kpxe over "
            "TFTP) is proven by tests/integration/test_boot_chain.py"
        )
    if kind not in FIRMWARES:
        known = ", ".join([*FIRMWARES, *ALIASES])
        raise ValueError(f"unknown firmware {name!r} (known: {known})")
    return kind


def nvram_template(firmware: str) -> Path | None:
    """The OVMF variables file a node of this kind starts its own NVRAM from; None if the
    kind has no writable NVRAM (SeaBIOS, and OVMF as a single ``-bios`` image)."""
    flash = _FLASH.get(firmware_kind(firmware))
    return OVMF_DIR / flash[1] if flash else None


def node_macs(count: int) -> dict[str, str]:
    """The MAC of nodeNN is 52:54:00:77:00:NN (in hex), for NN from 1 to ``count``."""
    return {f"node{n:02}": f"52:54:00:77:00:{n:02x}" for n in range(1, count + 1)}


# The lab's nodes of each other architecture: their names' prefix and their MACs' fifth byte.
FOREIGN_NODES = {"aarch64": ("arm", 0x0A)}


def foreign_macs(arch: str, count: int) -> dict[str, str]:
    """The lab's nodes of ``arch`` (another than x86-64): armNN is 52:54:00:77:0a:NN."""
    prefix, byte = FOREIGN_NODES[arch]
    return {f"{prefix}{n:02}": f"52:54:00:77:{byte:02x}:{n:02x}" for n in range(1, count + 1)}


def lab_macs(count: int = 99, arches: Iterable[str] = tuple(FOREIGN_NODES)) -> dict[str, str]:
    """The names and MACs of ``count`` lab nodes of x86-64 and of each of ``arches`` (by
    default every name a lab node may have)."""
    found = node_macs(count)
    for arch in arches:
        found |= foreign_macs(arch, count)
    return found


def foreign_command(
    arch: str, mac: str, tap: str, console: Path, *, memory: int, nvram: Path
) -> list[str]:
    """QEMU for a node of ``arch`` (another than x86-64), from its table: its system, machine,
    CPU, UEFI firmware (code read-only, ``nvram`` the node's own variables), booting by the
    firmware's PXE; the same console, NIC (its ROM off) and random source as `qemu_command`."""
    facts = architectures.named(arch)
    machine = ["-machine", facts.qemu_machine, "-cpu", facts.qemu_cpu]
    return [
        *_guest(facts.qemu_system, machine, mac, tap, console, memory, ",romfile="),
        "-no-reboot",
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={facts.firmware_code}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={nvram}",
    ]


def _guest(
    system: str, machine: list[str], mac: str, tap: str, console: Path, memory: int, rom: str
) -> list[str]:
    """What every lab node's QEMU has, whatever its architecture and firmware: TCG, one CPU,
    its memory, the console, the NIC on its tap (``rom``: its option ROM's setting) and a
    random source."""
    return [
        system,
        "-accel",
        "tcg",
        *machine,
        "-m",
        str(memory),
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        # the console: a socket to type into (tests, `dim lab run`), logged to a file
        "-chardev",
        f"socket,id=console,path={console.with_suffix('.sock')},server=on,wait=off,"
        f"logfile={console},logappend=on",
        "-serial",
        "chardev:console",
        "-netdev",
        f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={mac},bootindex=1{rom}",
        # a hardware random source, as servers have: without one a systemd image waits for
        # entropy under TCG (Debian 13: crng ready 46 s after power-on)
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
    ]


def qemu_command(
    mac: str,
    tap: str,
    console: Path,
    *,
    firmware: str = DEFAULT_FIRMWARE,
    memory: int,
    nvram: Path | None = None,
) -> list[str]:
    """QEMU for one node with the firmware kind asked (see the module's table).

    ``nvram`` is the node's own copy of `nvram_template` (required for the kinds that have
    one, ignored by the others).
    """
    kind = firmware_kind(firmware)
    flash = _FLASH.get(kind)
    if flash and nvram is None:
        raise ValueError(f"firmware {kind} needs the node's NVRAM file (nvram=)")
    # without its option ROM the NIC is left to the firmware's own driver and PXE
    rom = ",romfile=" if flash else ""
    command = [
        *_guest("qemu-system-x86_64", _machine(kind), mac, tap, console, memory, rom),
        "-boot",
        "n",
        "-no-reboot",
    ]
    if kind == "uefi-ipxe-rom":
        command += ["-bios", str(OVMF)]
    if flash:
        code = OVMF_DIR / flash[0]
        command += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={nvram}",
        ]
    if kind == "uefi-http":
        # OVMF's PXE off (edk2's OvmfPkg PxeBcPcdLib reads these at start): HTTP boot, which
        # OVMF lists after PXE for the same NIC, is then the only network boot option left
        command += [
            "-fw_cfg",
            "name=opt/org.tianocore/IPv4PXESupport,string=no",
            "-fw_cfg",
            "name=opt/org.tianocore/IPv6PXESupport,string=no",
        ]
    return command


def _machine(kind: str) -> list[str]:
    """The flash-booted OVMF kinds run on q35 (PCIe, as servers are); Secure Boot's code
    needs SMM and its flash writable only from SMM, or QEMU refuses or OVMF stops."""
    if kind == "uefi-secureboot":
        return [
            "-machine",
            "q35,smm=on",
            "-global",
            "driver=cfi.pflash01,property=secure,value=on",
        ]
    if kind in _FLASH:
        return ["-machine", "q35"]
    return []
