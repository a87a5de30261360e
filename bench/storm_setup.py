"""The boot storm's image server, set up by dim itself as an administrator would
(bench/storm.py): cluster.xml, MACs, the image with every file of the recorded boot reads,
its boot build, ``dim apply --root`` per DHCP flavour; the C client compiled.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from storm_cluster import PER_SUBNET, node_mac, node_name, say

from dim.lab import images

LAYOUT = """<?xml version="1.0"?>
<!-- The boot storm's cluster (bench/storm.py): one server, {count} nodes in 10.77.0.0/16. -->
<cluster name="storm" domain="storm.dim">
  <network name="boot" subnet="10.77.0.0/16" gateway="10.77.0.1" dns="10.77.0.1"/>
  <server name="stormsrv" address="10.77.0.1" dhcp="{flavour}" nfs="ganesha" interface="br0"
          tftp-root="/srv/dim/tftp" http-root="/srv/dim/http"{loader}/>
  <image name="storm" kernel-args="console=ttyS0">
    <persist path="/etc"/> <persist path="/var"/> <persist path="/root"/>
    <volatile path="/tmp"/> <volatile path="/var/tmp"/>
  </image>
  <group name="nodes" nodes="n[00001-{count:05}]" image="storm">
    <interface network="boot" ip="10.77.{{1+(n1-1)//{per}}}.{{1+(n1-1)%{per}}}"/>
  </group>
</cluster>
"""


@dataclass(frozen=True)
class Operation:
    kind: str  # read, list, link
    export: str  # image, node
    path: str
    bytes: int = 0  # read by the boot
    size: int = 0  # of the file


def load_reads(path: Path) -> list[Operation]:
    operations = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        words = line.split()
        read, size = (int(words[3]), int(words[4])) if words[0] == "read" else (0, 0)
        operations.append(Operation(words[0], words[1], words[2], read, size))
    return operations


def storm_tree(dest: Path, operations: list[Operation]) -> list[Operation]:
    """The lab's tiny tree plus every file the boot reads at its size (random bytes), in
    ``dest``; the operations that this tree can answer (a recorded link where the tiny tree
    has a folder, /lib for one, is left out)."""
    shutil.rmtree(dest, ignore_errors=True)
    images.tiny_tree(dest, images.fetch_kernel())
    kept = []
    for op in operations:  # a node's files are seeded from the image's persistent paths
        target = dest / op.path
        try:
            if op.kind == "read":
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink():  # a busybox applet of the tiny tree: a file in Debian
                    target.unlink()
                if not target.is_dir():
                    target.write_bytes(random.randbytes(op.size))
            elif op.kind == "list":
                target.mkdir(parents=True, exist_ok=True)
            elif not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to("dim-storm-link")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
        if op.kind == "read" and (target.is_symlink() or not target.is_file()):
            continue
        kept.append(op)
    return kept


def write_reads(path: Path, operations: list[Operation]) -> None:
    path.write_text("".join(f"{op.kind} {op.export} {op.path} {op.bytes}\n" for op in operations))


def set_up(folder: Path, count: int, reads: Path, say=say) -> dict:
    """Layout, MACs, image, boot build and ``dim apply --root`` for ``count`` nodes."""
    from dim.actions import apply as applying
    from dim.actions import images as image_actions
    from dim.actions import nodes as node_actions
    from dim.actions.context import Context

    shutil.rmtree(folder, ignore_errors=True)
    for sub in ("logs", "state", "root"):
        (folder / sub).mkdir(parents=True)
    write_layout(folder, count, "dnsmasq")
    macs = folder / "macs.csv"
    macs.write_text("".join(f"{node_name(n)},{node_mac(n)}\n" for n in range(1, count + 1)))
    ctx = Context(config=folder / "cluster.xml", state=folder / "state")
    timings = {}
    started = time.monotonic()
    kept = storm_tree(folder / "tree", load_reads(reads))
    write_reads(folder / "reads.txt", kept)
    image_actions.import_image(ctx, "storm", str(folder / "tree"), incremental=False)
    image_actions.boot_build(ctx, "storm")
    timings["image"] = time.monotonic() - started
    started = time.monotonic()
    node_actions.import_macs(ctx, macs)
    timings["import_macs"] = time.monotonic() - started
    started = time.monotonic()
    applying.apply(ctx, root=folder / "root", do_reload=False)
    timings["apply"] = time.monotonic() - started
    say(
        "set up: image {image:.1f} s, import-macs {import_macs:.1f} s, apply {apply:.1f} s".format(
            **timings
        )
    )
    return {k: round(v, 2) for k, v in timings.items()}


# the loader DHCP sends a PXE ROM, by boot path: iPXE (dim's default) for the HTTP path; for
# the TFTP path PXELINUX, which reads its node's pxelinux.cfg/01-<mac> (dim renders that link
# only where a server sends PXELINUX, as a site on this path declares)
BIOS_LOADER = {"http": "", "tftp": ' bios-loader="lpxelinux.0"'}


def write_layout(folder: Path, count: int, flavour: str, boot: str = "http") -> None:
    text = LAYOUT.format(count=count, flavour=flavour, per=PER_SUBNET, loader=BIOS_LOADER[boot])
    (folder / "cluster.xml").write_text(text)


def apply_flavour(folder: Path, flavour: str, count: int, tftp_max: int, boot: str) -> None:
    from dim.actions import apply as applying
    from dim.actions.context import Context

    write_layout(folder, count, flavour, boot)
    ctx = Context(config=folder / "cluster.xml", state=folder / "state")
    applying.apply(ctx, root=folder / "root", do_reload=False)
    # dim renders dnsmasq's dhcp-lease-max and tftp-max for the nodes (services/limits.py);
    # --tftp-max overrides the second, to compare
    if tftp_max:
        for name in ("dim.conf", "dim-tftp.conf"):
            conf = folder / "root/etc/dnsmasq.d" / name
            if conf.exists():
                lines = [
                    ln for ln in conf.read_text().splitlines() if not ln.startswith("tftp-max=")
                ]
                conf.write_text("\n".join([*lines, f"tftp-max={tftp_max}"]) + "\n")


def export_paths(folder: Path) -> tuple[str, str]:
    """What a node mounts: the image's live tree (below the export of all images) and its
    own replica (below its own export), from the rendered ganesha.conf."""
    text = (folder / "root/etc/ganesha/ganesha.conf").read_text()
    paths = re.findall(r'Pseudo = "?([^";]+)"?;', text)
    images_export = next(p for p in paths if p.endswith("/images"))
    node_export = next(p for p in paths if p.endswith("/nodes/n00001"))
    return f"{images_export}/storm/live", node_export.replace("n00001", "{node}") + "/storm"


def reads_file(folder: Path, reads: bool) -> Path:
    """The boot reads to replay; without ``reads``, none (the stage ends at the mount)."""
    if reads:
        return folder / "reads.txt"
    empty = folder / "no-reads.txt"
    empty.write_text("")
    return empty


def client_binary(folder: Path) -> Path:
    binary = folder / "storm-client"
    source = Path(__file__).resolve().parent / "storm_client.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        command = ["cc", "-O2", "-o", str(binary), str(source), "-lnfs", "-ldl"]
        subprocess.run([*command, "-Wl,--export-dynamic"], check=True)
    return binary
