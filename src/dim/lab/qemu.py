"""A lab node is a QEMU guest: its command line, firmware and MAC address.

TCG, not KVM (the nested /dev/kvm here hangs stock kernels). The node PXE-boots from its
virtio NIC on a tap device of the lab's bridge; a virtio-rng device gives it a random source;
its serial console is a Unix socket (to type into: `dim.lab.console`) logged to a file;
``-no-reboot`` makes a reboot or power-off end the process, a clean signal for the lab::

    macs = node_macs(2)          # {"node01": "52:54:00:77:00:01", "node02": …}
    command = qemu_command(macs["node01"], "tap0", Path("logs/node01.console"),
                           uefi=False, memory=384)
"""

from __future__ import annotations

from pathlib import Path

OVMF = Path("/usr/share/ovmf/OVMF.fd")


def node_macs(count: int) -> dict[str, str]:
    """The MAC of nodeNN is 52:54:00:77:00:NN (in hex), for NN from 1 to ``count``."""
    return {f"node{n:02}": f"52:54:00:77:00:{n:02x}" for n in range(1, count + 1)}


def qemu_command(mac: str, tap: str, console: Path, *, uefi: bool, memory: int) -> list[str]:
    """QEMU for one node: BIOS (SeaBIOS with iPXE's ROM) or UEFI (OVMF with iPXE EFI)."""
    command = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
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
        f"virtio-net-pci,netdev=n0,mac={mac},bootindex=1",
        # a hardware random source, as servers have: without one a systemd image waits for
        # entropy under TCG (Debian 13: crng ready 46 s after power-on)
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
        "-boot",
        "n",
        "-no-reboot",
    ]
    if uefi:
        command += ["-bios", str(OVMF)]
    return command
