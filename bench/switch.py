"""Benchmark: what switching every node to another image costs, at cluster scale (issue 12).

Run by hand, as root (ganesha runs in a network namespace of its own), never as a test::

    .venv/bin/python bench/switch.py [--sizes 2500,10000] [--repeat 3]
                                     [--baseline-src /work/wt/base/src] [--markdown]

For each size the bench writes a cluster.xml (one server with dnsmasq and nfs-ganesha, N
nodes with a MAC each, two images that persist /etc), imports a small tree as both images,
gives every node its image and applies into a root, then measures, per code (this checkout's,
and with ``--baseline-src`` another checkout's ``src``, e.g. the commit before the exports
stopped depending on the nodes' images), alternated, ``--repeat`` times:

- ``switch``: ``dim node switch @all IMAGE`` (one transaction; a replica per node);
- ``apply``: ``dim apply --root ROOT`` after it: with exports that depend on the image, the
  new exports rendered, validated and written (then ganesha must restart); with exports that
  do not, nothing for NFS to do;
- the exports: ganesha.conf's size and number of exports, and whether the switch changed it;
- ``ganesha start``: the seconds from starting nfs-ganesha (Debian's) on that configuration
  in a namespace until it has loaded every export and listens on port 2049: what a restart
  costs the old way, and nothing the new way.

Medians are printed; the machine is noisy, so compare the two codes' rows of the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
NAMESPACE = "dimswitch"
SERVER = "10.0.0.1"

LAYOUT = """<?xml version="1.0"?>
<cluster name="sw" domain="sw.example">
  <network name="boot" subnet="10.0.0.0/16"/>
  <server name="srv" address="{server}" dhcp="dnsmasq" nfs="ganesha"
          tftp-root="/srv/dim/tftp" http-root="/srv/dim/http"/>
  <image name="alpha"><persist path="/etc"/></image>
  <image name="beta"><persist path="/etc"/></image>
  <group name="nodes" nodes="n[00001-{last:05}]" image="alpha">
    <interface network="boot" ip="10.0.{{1+(n1-1)//250}}.{{1+(n1-1)%250}}"/>
  </group>
</cluster>
"""


def dim(src: Path, folder: Path, *args: str) -> float:
    """``dim`` with the code of ``src`` on the bench's layout and state: seconds it took."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    config, state = folder / "cluster.xml", folder / "state"
    argv = [sys.executable, "-m", "dim", "--config", str(config), "--state", str(state), *args]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"dim {' '.join(args)}: {done.stderr.strip()}")
    return took


def make_site(folder: Path, size: int, src: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "cluster.xml").write_text(LAYOUT.format(server=SERVER, last=size))
    macs = "".join(f"n{i:05},52:54:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:"
                   f"{i >> 8 & 255:02x}:{i & 255:02x}\n" for i in range(1, size + 1))  # fmt: skip
    (folder / "macs.csv").write_text(macs)
    tree = folder / "tree"
    for path, text in (("etc/hostname", "x\n"), ("etc/motd", "hello\n"), ("usr/bin/tool", "#")):
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)
    dim(src, folder, "node", "import-macs", str(folder / "macs.csv"))
    for image in ("alpha", "beta"):
        dim(src, folder, "image", "import", image, "--from", str(tree))
    dim(src, folder, "node", "switch", "@all", "alpha")
    dim(src, folder, "apply", "--root", str(folder / "root"))


def ganesha_start(conf: Path, log: Path) -> float:
    """Seconds from starting ganesha on ``conf`` in the bench's namespace until it says "NFS
    SERVER INITIALIZED" (every export loaded) and listens on port 2049."""
    log.unlink(missing_ok=True)
    script = (
        "mkdir -p /run/ganesha && mount -t tmpfs tmpfs /var/lib/nfs && "
        f"exec ganesha.nfsd -F -f {conf} -L {log} -p /run/ganesha/bench.pid"
    )
    argv = ["ip", "netns", "exec", NAMESPACE, "unshare", "--mount", "sh", "-c", script]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < 300:
            if process.poll() is not None:
                raise SystemExit(f"ganesha exited {process.returncode}: see {log}")
            if "NFS SERVER INITIALIZED" in _text(log) and _listening():
                return time.perf_counter() - started
            time.sleep(0.05)
        raise SystemExit(f"ganesha not listening after 300 s: see {log}")
    finally:
        process.terminate()
        process.wait()


def _text(log: Path) -> str:
    try:
        return log.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _listening() -> bool:
    done = subprocess.run(
        ["ip", "netns", "exec", NAMESPACE, "ss", "-Htln", "sport", "= :2049"],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(done.stdout.strip())


def namespace() -> None:
    subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)
    for command in (
        ["ip", "netns", "add", NAMESPACE],
        ["ip", "-n", NAMESPACE, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        ["ip", "-n", NAMESPACE, "addr", "add", f"{SERVER}/16", "dev", "v0"],
        ["ip", "-n", NAMESPACE, "link", "set", "v0", "up"],
        ["ip", "-n", NAMESPACE, "link", "set", "v1", "up"],
    ):
        subprocess.run(command, check=True)


def one_run(src: Path, folder: Path, image: str) -> dict:
    conf = folder / "root/etc/ganesha/ganesha.conf"
    before = conf.read_bytes()
    switch = dim(src, folder, "node", "switch", "@all", image)
    apply = dim(src, folder, "apply", "--root", str(folder / "root"))
    after = conf.read_bytes()
    start = ganesha_start(conf, folder / "ganesha.log")
    return {
        "switch": switch,
        "apply": apply,
        "changed": before != after,
        "bytes": len(after),
        "exports": after.count(b"EXPORT {"),
        "ganesha": start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2500,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src, side by side")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (a network namespace for ganesha)")
    codes = {"this": HERE / "src"}
    if args.baseline_src:
        codes["baseline"] = args.baseline_src.resolve()
    namespace()
    rows = []
    top = Path(tempfile.mkdtemp(prefix="dim-bench-switch-", dir=args.dir))
    try:
        for size in map(int, args.sizes.split(",")):
            sites = {}
            for name, src in codes.items():
                sites[name] = top / f"{name}-{size}"
                make_site(sites[name], size, src)
            runs: dict[str, list[dict]] = {name: [] for name in codes}
            for repeat in range(args.repeat):
                image = ("beta", "alpha")[repeat % 2]
                for name, src in codes.items():  # alternated: a noisy moment weighs on both
                    run = one_run(src, sites[name], image)
                    runs[name].append(run)
                    print(f"{size} {name} #{repeat + 1}: {run}", flush=True)
            for name, done in runs.items():
                rows.append(
                    [str(size), name]
                    + [f"{statistics.median(r[k] for r in done):.2f}" for k in ("switch", "apply")]
                    + [
                        "yes" if any(r["changed"] for r in done) else "no",
                        str(done[-1]["exports"]),
                        f"{done[-1]['bytes'] / 1024:.0f}",
                        f"{statistics.median(r['ganesha'] for r in done):.2f}",
                    ]
                )
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)
        shutil.rmtree(top, ignore_errors=True)
    head = ["nodes", "code", "switch s", "apply s", "exports changed", "exports", "KiB"]
    head.append("ganesha start s")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in [head, *rows]:
            print("  ".join(f"{c:>15}" for c in row))
    print(f"socket host: {socket.gethostname()}, load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
