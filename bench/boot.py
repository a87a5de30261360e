"""Benchmark: network boot of the lab's nodes, from QEMU start to the marker, stage by stage.

Run by hand, as root, never as a test::

    .venv/bin/python bench/boot.py [--nodes 1,2,4] [--firmware bios,uefi] [--repeat 3]
                                   [--images tiny,debian12,debian13] [--nfs-versions 4.1,4.2]
                                   [--arch x86_64,aarch64]
                                   [--dir /var/tmp/dim-bench-boot] [--namespace dimbench]
                                   [--markdown] [--keep]

It brings up a `dim lab` (examples/lab.xml, the tiny busybox image, and with ``--images`` the
Debian 12 and 13 images with systemd and their own kernels) in a namespace of its own, then,
for each image, NFS version, firmware and node count, powers that many nodes on together,
``--repeat`` times. ``--firmware`` takes `dim lab boot`'s kinds (bios-ipxe-rom,
uefi-ipxe-rom, uefi-pxe, uefi-http, uefi-secureboot) or their short names (bios, uefi: the
iPXE ROM ones); ``KIND+shim`` (``uefi-pxe+shim``) boots that firmware with the nodes
declared ``secure-boot="yes"`` (shim, GRUB, kernel and initrd over TFTP), which
``uefi-secureboot`` always does; the table names each as it was given. The loader stage is
iPXE's, so it is empty for GRUB. ``--nfs-versions`` adds ``vers=X``
to every image's nfs-options in the lab's cluster.xml (and reloads the lab) before that
version's runs; without it each image mounts with dim's default. A follower thread reads
the lab's logs every 20 ms and stamps each new line with the time it appeared, so the stages
need no clock on the node. ``--arch x86_64,aarch64`` adds the lab's aarch64 nodes (arm01…,
`dim lab up --arch`): each case then runs as many of them beside, powered on at the same time
as the x86-64 ones, booting the ``tiny-aarch64`` image by AAVMF's own PXE and GRUB whatever
the x86-64 nodes' firmware (the busybox image only: there is no Debian image of arm64 in the
lab yet); the table has a row per architecture:

    DHCP         dnsmasq's log: DHCPACK to the node's MAC (iPXE's, the first one)
    loader       dim serve's log: the node's own iPXE script fetched (GET /dim/nodes/<mac>.ipxe);
                 for GRUB (aarch64 nodes), the console: "Welcome to GRUB!"
    kernel       the node's console: the kernel's first line ("Linux version")
    initramfs    the console: dim's /init, "dim: step 1/9"
    switch_root  the console: "dim: step 9/9 switch_root"
    init         the console: the image's init says its first word (systemd's "systemd 2…"
                 or "Welcome to"; the busybox image has none)
    crng         the console: the kernel's "random: crng init done" (entropy ready)
    marker       the console: DIM-NODE-UP

Each is given in seconds since that node's QEMU was started; the table shows medians over
nodes and runs, and "all up" the median over runs of the slowest node's marker. The
initramfs's own steps are profiled from the same stamps (modules, DHCP, the NFS mounts).
Reference (../shared/NETBOOT-LAB.md): 9.6 s to the marker for one busybox node by a
hand-made setup on this kind of machine; target within 1.2x of it.

``--src DIR`` is not needed to compare two versions of dim: run the bench with
``PYTHONPATH=/tmp/snapshot/src`` (``git archive COMMIT src | tar -x -C /tmp/snapshot``), and
the lab's dim commands and ``dim serve`` use that snapshot.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dim.actions import nodes as node_actions
from dim.lab import cluster, console
from dim.lab.images import MARKER
from dim.lab.qemu import firmware_kind, lab_macs

STAGES = ("dhcp", "loader", "kernel", "initramfs", "switch_root", "init", "crng", "marker")
STEPS = {  # /init's profile: from one step line to the next
    "modules": ("dim: step 3/9", "dim: step 4/9"),
    "udhcpc": ("dim: step 4/9", "dim: step 5/9"),
    "nfs mounts": ("dim: step 5/9", "dim: step 9/9"),
}


@dataclass(slots=True)
class Follower:
    """Reads files as they grow; each complete line stamped with ``time.monotonic()``."""

    paths: list[Path]
    lines: list[tuple[float, Path, str]] = field(default_factory=list)
    _offsets: dict[Path, int] = field(default_factory=dict)
    _partial: dict[Path, bytes] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        for path in self.paths:  # only what comes from now on
            self._offsets[path] = path.stat().st_size if path.exists() else 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.poll()

    def poll(self) -> None:
        now = time.monotonic()
        for path in self.paths:
            try:
                with path.open("rb") as handle:
                    handle.seek(self._offsets.get(path, 0))
                    data = handle.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self._offsets[path] = self._offsets.get(path, 0) + len(data)
            data = self._partial.pop(path, b"") + data
            *complete, rest = data.split(b"\n")
            if rest:
                self._partial[path] = rest
            for line in complete:
                self.lines.append((now, path, line.decode(errors="replace").replace("\r", "")))

    def first(self, path: Path, pattern: str, after: float = 0.0) -> float | None:
        regex = re.compile(pattern)
        for stamp, where, line in self.lines:
            if where == path and stamp >= after and regex.search(line):
                return stamp
        return None


def _finished(text: str) -> bool:
    """The node is at its marker, or will never be: a kernel panic or /init's rescue shell."""
    return MARKER in text or "end Kernel panic" in text or "rescue shell on the console" in text


def node_ip(name: str) -> str:
    """The lab's address of nodeNN (10.77.0.(10+N)) or of armNN (10.77.0.(200+N))."""
    if name.startswith("arm"):
        return f"10.77.0.{200 + int(name.removeprefix('arm'))}"
    return f"10.77.0.{10 + int(name.removeprefix('node'))}"


def trace(follower: Follower, t0: float, paths: list[Path]) -> str:
    """Every line the follower saw in ``paths``, stamped in seconds since ``t0``."""
    return "\n".join(
        f"{stamp - t0:6.2f} {path.stem:8} {line[:110]}"
        for stamp, path, line in follower.lines
        if path in paths and line.strip() and "sent size" not in line
    )


def run_once(
    folder: Path, names: list[str], *, firmware: str, timeout: float, show: bool = False
) -> list[dict]:
    """Power ``names`` on together; each node's stage times (s since its QEMU start)."""
    logs = folder / "logs"
    consoles = {n: logs / f"{n}.console" for n in names}
    follower = Follower([logs / "dnsmasq.log", logs / "serve.log", *consoles.values()])
    cluster.power_off(folder, names)
    for path in consoles.values():
        path.unlink(missing_ok=True)
    follower.start()
    started = {}
    for name in names:
        started[name] = time.monotonic()
        kind = "uefi-pxe" if name.startswith("arm") else firmware  # AAVMF's PXE: its only kind
        cluster.boot(folder, [name], firmware=kind, say=lambda _: None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_finished(console.read(folder, n)) for n in names):
            break
        time.sleep(0.1)
    time.sleep(0.1)
    follower.stop()
    cluster.power_off(folder, names)
    if show:
        print(trace(follower, started[names[0]], [consoles[names[0]], logs / "serve.log"]))
    macs = lab_macs()
    results = []
    for name in names:
        t0, mac, log = started[name], macs[name], consoles[name]
        found = {
            "dhcp": follower.first(
                logs / "dnsmasq.log", rf"DHCPACK\(br0\) {node_ip(name)} {mac}", t0
            ),
            "loader": follower.first(
                logs / "serve.log",
                rf"{node_ip(name)} GET /dim/nodes/{mac.replace(':', '-')}\.ipxe 200",
                t0,
            )
            or follower.first(log, r"Welcome to GRUB!"),
            "kernel": follower.first(log, r"Linux version"),
            "initramfs": follower.first(log, r"^dim: step 1/9"),
            "switch_root": follower.first(log, r"^dim: step 9/9"),
            "init": follower.first(log, r"systemd\[1\]: systemd \d|Welcome to (?!GRUB)"),
            "crng": follower.first(log, r"random: crng init done"),
            "marker": follower.first(log, rf"^{MARKER} "),
        }
        row = {k: (v - t0 if v is not None else None) for k, v in found.items()}
        for step, (start, end) in STEPS.items():
            a, b = follower.first(log, start), follower.first(log, end)
            row[step] = b - a if a is not None and b is not None else None
        row["node"] = name
        row["arch"] = "aarch64" if name.startswith("arm") else "x86_64"
        results.append(row)
    return results


def write_layout(folder: Path, layout: str, version: str, secure_boot: bool) -> None:
    """The lab's cluster.xml with ``vers=VERSION`` in every image's nfs-options ("": as made)
    and, with ``secure_boot``, every node declared ``secure-boot="yes"`` (sent shim)."""
    if version:
        pinned = f'nfs-options="actimeo=1,vers={version}" kernel-args='
        layout = re.sub(r'(?:nfs-options="[^"]*" )?kernel-args=', pinned, layout)
    if secure_boot:
        layout = layout.replace('<group name="nodes"', '<group name="nodes" secure-boot="yes"')
    (folder / "cluster.xml").write_text(layout)


def firmware_and_loader(name: str) -> tuple[str, bool]:
    """``uefi-pxe+shim``: the firmware kind, and whether the nodes are declared secure-boot
    (sent shim): for ``+shim``, and always for Secure Boot, which starts nothing else."""
    kind, plus, loader = name.partition("+")
    if plus and loader != "shim":
        raise ValueError(f"unknown loader {loader!r} in {name!r} (known: +shim)")
    kind = firmware_kind(kind)
    return kind, bool(plus) or kind == "uefi-secureboot"


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summarize(runs: list[list[dict]]) -> dict:
    rows = [row for run in runs for row in run]
    summary = {k: median([r[k] for r in rows]) for k in (*STAGES, *STEPS)}
    slowest = [max((r["marker"] or float("inf")) for r in run) for run in runs]
    summary["all_up"] = statistics.median(slowest)
    summary["failed"] = sum(1 for r in rows if r["marker"] is None)
    return summary


def table(results: dict[tuple[str, str, str, int, str], dict], markdown: bool) -> str:
    head = ["arch", "image", "nfs", "firmware", "nodes", *STAGES, "all up", *STEPS]
    lines = []
    for (image, version, firmware, count, arch), s in results.items():
        if arch != "x86_64":
            image, firmware = f"tiny-{arch}", "uefi-pxe"
        cells = [arch, image, version, firmware, str(count)]
        cells += [*(fmt(s[k]) for k in STAGES), fmt(s["all_up"])]
        cells += [fmt(s[k]) for k in STEPS]
        if s["failed"]:
            cells[-1] += f" ({s['failed']} not up)"
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    out += ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="1,2,4")
    parser.add_argument("--firmware", default="bios,uefi")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", default="tiny", help="tiny, debian12, debian13")
    parser.add_argument(
        "--nfs-versions", default="", help="e.g. 4.1,4.2 (default: each image's own options)"
    )
    parser.add_argument(
        "--arch", default="x86_64", help="x86_64,aarch64: also as many aarch64 nodes, beside"
    )
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--dir", default="/var/tmp/dim-bench-boot")
    parser.add_argument("--namespace", default="dimbench")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--keep", action="store_true", help="leave the lab's folder")
    parser.add_argument(
        "--trace", action="store_true", help="print node01's stamped console of each run"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (namespaces, QEMU taps, NFS server)")
    counts = [int(n) for n in args.nodes.split(",")]
    try:
        firmwares = {f: firmware_and_loader(f) for f in args.firmware.split(",")}
    except ValueError as error:
        parser.error(str(error))
    wanted = args.images.split(",")
    debian = tuple(i.removeprefix("debian") for i in wanted if i.startswith("debian"))
    versions = args.nfs_versions.split(",") if args.nfs_versions else [""]
    arches = tuple(a for a in args.arch.split(",") if a and a != "x86_64")
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    said = io.StringIO()  # dim's own output while the lab comes up: shown if it fails
    try:
        with contextlib.redirect_stdout(said):
            cluster.up(
                folder,
                nodes=max(counts),
                debian=debian,
                say=lambda m: print(f"  lab: {m}"),
                namespace=args.namespace,
                bmcs=False,  # the bench powers nodes itself; a hand lab may hold the BMC ports
                arches=arches,
            )
    except BaseException:
        print(said.getvalue())
        raise
    print(f"lab up in {folder} (namespace {args.namespace})", flush=True)
    layout = (folder / "cluster.xml").read_text()
    everyone = f"node[01-{max(counts):02}]"
    cases = [
        (image, version, firmware, count)
        for image in wanted
        for version in versions
        for firmware in firmwares
        for count in counts
    ]
    runs: dict[tuple[str, str, str, int], list[list[dict]]] = {case: [] for case in cases}
    try:
        # Repeats outermost: the cases alternate, so that a machine getting busier or quieter
        # during the bench weighs on each alike. Every run starts from a restarted ganesha.
        for repeat in range(args.repeat):
            for image, version, firmware, count in cases:
                kind, loader = firmwares[firmware]
                write_layout(folder, layout, version, loader)
                node_actions.switch(cluster.context(folder), everyone, image)
                cluster.reload(folder)
                names = [f"node{i:02}" for i in range(1, count + 1)]
                if arches and image == "tiny":  # the aarch64 nodes beside, at the same time
                    names += [f"arm{i:02}" for i in range(1, count + 1)]
                run = run_once(
                    folder,
                    names,
                    firmware=kind,
                    timeout=args.timeout,
                    show=args.trace,
                )
                runs[(image, version, firmware, count)].append(run)
                markers = ", ".join(fmt(r["marker"]) for r in run)
                what = f"{image} {version or 'default'} {firmware} x{count}"
                print(f"{what} #{repeat + 1}: marker at {markers} s", flush=True)
    finally:
        cluster.down(folder)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    results = {
        (image, version or "default", firmware, count, arch): summarize(
            [[row for row in run if row["arch"] == arch] for run in done]
        )
        for (image, version, firmware, count), done in runs.items()
        for arch in ("x86_64", *arches)
        if any(row["arch"] == arch for run in done for row in run)
    }
    print(f"\nseconds since QEMU start, medians of {args.repeat} runs (profile: durations)")
    print(table(results, args.markdown))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        every = {"-".join(map(str, key)): done for key, done in runs.items()}
        Path(args.json).write_text(json.dumps(every, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
