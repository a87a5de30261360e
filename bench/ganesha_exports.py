"""Benchmark: how long nfs-ganesha takes to load one export per node, by the count of exports.

Run by hand, as root (minutes at 10,000 exports)::

    .venv/bin/python bench/ganesha_exports.py --conf ROOT/etc/ganesha/ganesha.conf \\
        [--counts 1000,2500,5000,10000] [--forms dim,quoted] [--dbus 500] \\
        [--namespace dsxg] [--dir /var/tmp/dsx-ganesha] [--timeout 1500] \\
        [--ganesha-root TREE] [--ganesha-option BLOCK.Name=Value]

``--conf`` is a ganesha.conf that ``dim apply`` rendered for at least the largest count (the
boot storm's set-up holds one: ``/var/tmp/dsx-storm-10000/root/etc/ganesha/ganesha.conf``);
its exports' paths must exist. For each count, its first that many node exports, each in one
of these forms:

- ``dim``: as dim renders them now (`dim.services.nfs`: no ``Access_Type = None``, path bare);
- ``quoted``: as dim rendered them before (quoted paths, ``Access_Type = None`` in each);

ganesha started on it in a namespace of its own (10.77.0.1 on its loopback), and timed until
it listens on 2049: wall seconds, and its CPU seconds (what the machine's other load disturbs
least). With ``--dbus B``: ganesha started with the image store's export only, then the
largest count's node exports added by D-Bus ``AddExport`` in files of B exports each (a
private dbus-daemon), the time and CPU after each file. Everything started is stopped by
process id and the namespace deleted at the end.

``--ganesha-root``: ganesha run from that Debian tree (chroot; another release, e.g. Debian
13's 6.5, see bench/storm_ganesha.py), the export paths' common folder and this bench's
``--dir`` bound at their own paths inside; ``--ganesha-option``: a setting changed (likewise).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from storm_ganesha import set_options

NODE_EXPORT = re.compile(
    r'EXPORT \{ Export_Id = (\d+); Path = "?([^";]+)"?; Pseudo = "?[^";]+"?; '
    r"(?:Access_Type = None; )?FSAL \{ Name = VFS; \} CLIENT \{ Clients = ([^;]+); "
    r"Access_Type = RW; \} \}"
)
FORMS = {
    "dim": "EXPORT {{ Export_Id = {0}; Path = {1}; Pseudo = {1}; FSAL {{ Name = VFS; }} "
    "CLIENT {{ Clients = {2}; Access_Type = RW; }} }}\n",
    "quoted": 'EXPORT {{ Export_Id = {0}; Path = "{1}"; Pseudo = "{1}"; Access_Type = None; '
    "FSAL {{ Name = VFS; }} CLIENT {{ Clients = {2}; Access_Type = RW; }} }}\n",
}
DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={socket}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>
<allow receive_sender="*"/></policy></busconfig>
"""


def split_conf(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The settings and the image store's export; each node export's id, path and client."""
    head, nodes = [], []
    for line in text.splitlines(keepends=True):
        found = NODE_EXPORT.fullmatch(line.strip())
        if found:
            nodes.append(found.groups())
        else:
            head.append(line)
    return "".join(head), nodes


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listening(namespace: str) -> bool:
    command = ["ip", "netns", "exec", namespace, "ss", "-ltnH", "sport = :2049"]
    return bool(subprocess.run(command, capture_output=True, text=True).stdout.strip())


@dataclass(frozen=True)
class Ganesha:
    """Which ganesha: the host's (``root`` None) or one in a Debian tree, run by chroot with
    ``exports`` (the folder of every export path) bound inside; ``options`` changed."""

    root: Path | None = None
    exports: str = ""
    options: tuple[str, ...] = ()


def start_ganesha(
    folder: Path, namespace: str, conf: str, ganesha: Ganesha, env: dict | None = None
):
    for sub in ("lib", "run/dbus"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "ganesha.conf").write_text(set_options(conf, list(ganesha.options)))
    root, chroot = (str(ganesha.root), f"chroot {ganesha.root} ") if ganesha.root else ("", "")
    binds = [(f"{folder}/lib", "/var/lib/nfs"), (f"{folder}/run", "/run")]
    if root:  # the same paths inside the tree: this bench's folder, the exports, /proc, /dev
        binds = [(str(folder), str(folder)), (ganesha.exports, ganesha.exports), *binds]
        binds += [("/proc", "/proc"), ("/dev", "/dev")]
    mounts = [f"mkdir -p {root}{target} && mount --bind {source} {root}{target}"
              for source, target in binds]  # fmt: skip
    script = " && ".join([
        *mounts,
        f"exec {chroot}ganesha.nfsd -F -f {folder}/ganesha.conf -L {folder}/ganesha.log "
        f"-p {folder}/run/ganesha.pid",
    ])  # fmt: skip
    command = ["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation",
               "private", "sh", "-c", script]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def until_listening(process, namespace: str, began: float, timeout: float) -> dict:
    while not listening(namespace):
        if process.poll() is not None:
            return {"error": f"ganesha exited ({process.returncode})"}
        if time.monotonic() - began > timeout:
            return {"error": f"not listening after {timeout:.0f} s",
                    "cpu_s": round(cpu_seconds(process.pid), 2)}  # fmt: skip
        time.sleep(0.1)
    return {"wall_s": round(time.monotonic() - began, 2), "cpu_s": cpu_seconds(process.pid)}


def stop(process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def load_at_start(
    folder: Path, namespace: str, head: str, nodes, form: str, timeout: float, ganesha: Ganesha
):
    conf = head + "".join(FORMS[form].format(*node) for node in nodes)
    shutil.rmtree(folder, ignore_errors=True)
    began = time.monotonic()
    process = start_ganesha(folder, namespace, conf, ganesha)
    try:
        return until_listening(process, namespace, began, timeout)
    finally:
        stop(process)


def load_by_dbus(
    folder: Path, namespace: str, head: str, nodes, batch: int, timeout: float, ganesha: Ganesha
):
    shutil.rmtree(folder, ignore_errors=True)
    socket = folder / "run/dbus/system_bus_socket"
    socket.parent.mkdir(parents=True)
    (folder / "dbus.conf").write_text(DBUS_CONF.format(socket=socket))
    bus = subprocess.Popen(["dbus-daemon", f"--config-file={folder}/dbus.conf", "--nofork",
                            "--nopidfile"], stderr=subprocess.DEVNULL)  # fmt: skip
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={socket}")
    time.sleep(0.5)
    began = time.monotonic()
    process = start_ganesha(folder, namespace, head, ganesha, env)
    steps = []
    try:
        steps.append(until_listening(process, namespace, began, timeout))
        for first in range(0, len(nodes), batch):
            part = folder / f"exports-{first}.conf"
            part.write_text("".join(FORMS["dim"].format(*n) for n in nodes[first : first + batch]))
            call = ["dbus-send", f"--bus=unix:path={socket}", "--print-reply",
                    "--reply-timeout=900000", "--type=method_call", "--dest=org.ganesha.nfsd",
                    "/org/ganesha/nfsd/ExportMgr", "org.ganesha.nfsd.exportmgr.AddExport",
                    f"string:{part}", "string:EXPORT(Export_Id=*)"]  # fmt: skip
            reply = subprocess.run(call, capture_output=True, text=True, env=env)
            added = re.search(r'"(\d+) exports added', reply.stdout)
            steps.append({
                "exports": first + (int(added.group(1)) if added else 0),
                "wall_s": round(time.monotonic() - began, 2),
                "cpu_s": cpu_seconds(process.pid),
                "error": "" if added else (reply.stdout + reply.stderr).strip()[-200:],
            })  # fmt: skip
            print(f"    by D-Bus: {steps[-1]}", flush=True)
            if not added:
                break
        return steps
    finally:
        stop(process)
        stop(bus)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", type=Path, required=True)
    parser.add_argument("--counts", default="1000,2500,5000,10000")
    parser.add_argument("--forms", default="dim,quoted")
    parser.add_argument("--dbus", type=int, default=0, help="AddExport files of this many")
    parser.add_argument("--namespace", default="dsxg")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/dsx-ganesha"))
    parser.add_argument("--timeout", type=float, default=1500.0)
    parser.add_argument("--ganesha-root", type=Path, help="run ganesha.nfsd from this tree")
    parser.add_argument("--ganesha-option", action="append", default=[], help="BLOCK.Name=Value")
    args = parser.parse_args()
    head, nodes = split_conf(args.conf.read_text())
    image_paths = re.findall(r'Path = "?([^";]+)"?;', head)
    exports = os.path.commonpath([*image_paths, *(path for _, path, _ in nodes)])
    ganesha = Ganesha(args.ganesha_root, exports, tuple(args.ganesha_option))
    subprocess.run(["ip", "netns", "add", args.namespace], check=True)
    try:
        subprocess.run(["ip", "-n", args.namespace, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", args.namespace, "addr", "add", "10.77.0.1/16", "dev", "lo"],
                       check=True)  # fmt: skip
        for count in (int(c) for c in args.counts.split(",")):
            for form in filter(None, args.forms.split(",")):
                result = load_at_start(args.dir, args.namespace, head, nodes[:count], form,
                                       args.timeout, ganesha)  # fmt: skip
                print(f"{count:6} exports, {form:6}: {result}", flush=True)
        if args.dbus:
            largest = nodes[: max(int(c) for c in args.counts.split(","))]
            steps = load_by_dbus(
                args.dir, args.namespace, head, largest, args.dbus, args.timeout, ganesha
            )
            print(f"{len(largest):6} exports by D-Bus in files of {args.dbus}: {steps[-1]}")
    finally:
        subprocess.run(["ip", "netns", "delete", args.namespace], check=False)


if __name__ == "__main__":
    main()
