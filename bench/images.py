"""Benchmark: image changes, against baselines run side by side in the same run.

Run by hand, as root, never as a test::

    .venv/bin/python bench/images.py [--replicas 2500,10000] [--where tmpfs,disk]
                                     [--minbase TAR] [--markdown]

1. **Propagation.** An image whose /etc holds ``--etc-files`` files (default 60, 4 kB each),
   ``R`` node replicas of it, and a new version with 20 of those files changed. Measured: the
   time of ``ImageChange.commit`` (new version, live, and every replica by the three-way rule), and,
   on a second set of ``R`` replicas of the same image in the same folder, a loop of
   ``rsync -a NEW/etc/ REPLICA/etc/`` (the baseline; run on at most ``--rsync-sample``
   replicas and extrapolated linearly, as said in the output). On tmpfs (a fresh mount) and on
   the working disk (a folder under /var/tmp).
2. **A new version of a Debian minbase image with 20 files changed** (``--minbase``: a tarball
   of a debootstrap minbase tree; the test suite caches one at
   /var/cache/dim-tests/minbase-bookworm.tar): ``dim image sync`` from a directory that differs
   in 20 files, and ``dim image exec`` touching 20 files, vs ``cp -a`` of the whole tree; bytes
   the new version added as a share of the tree's bytes.
3. **exec installing one small package** (``--package``, default ``hello``) end to end, with
   the Debian mirror reachable; skipped with ``--no-network``.

Timings are medians of ``--repeat`` runs (default 3) where a run is cheap to repeat.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from dim.images import operations, replicas, sources
from dim.images.commit import changing
from dim.images.store import Store
from dim.images.tree import scan
from dim.layout.model import Image

IMAGE = Image("bench", persistent=("/etc", "/var"), volatile=("/tmp",), keepout=("/etc/hostname",))


@contextmanager
def tmpfs() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="dim-bench-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


@contextmanager
def disk() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="dim-bench-disk-", dir="/var/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def make_source(root: Path, files: int) -> Path:
    source = root / "source"
    for sub in ("etc", "usr/bin", "var/lib", "tmp"):
        (source / sub).mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (source / "etc" / f"file{i:03}.conf").write_bytes(os.urandom(2048).hex().encode())
    (source / "etc" / "hostname").write_text("master\n")
    for i in range(200):
        (source / "usr/bin" / f"tool{i}").write_bytes(b"x" * 8192)
    return source


def copy_replicas(template: Path, folder: Path, count: int) -> list[Path]:
    """``count`` real copies of ``template`` (a replica), fast: contents read once."""
    files = {p.relative_to(template): p.read_bytes() for p in template.rglob("*") if p.is_file()}
    dirs = sorted({p.relative_to(template) for p in template.rglob("*") if p.is_dir()})
    made = []
    for n in range(count):
        target = folder / f"n{n:05}" / IMAGE.name
        target.mkdir(parents=True)
        for d in dirs:
            (target / d).mkdir(parents=True, exist_ok=True)
        for relative, content in files.items():
            fd = os.open(target / relative, os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, content)
            os.close(fd)
            st = (template / relative).stat()
            os.utime(target / relative, ns=(st.st_atime_ns, st.st_mtime_ns))
        made.append(target)
    return made


def propagation(where: str, count: int, etc_files: int, sample: int) -> dict:
    context = tmpfs() if where == "tmpfs" else disk()
    with context as root:
        store = Store(root / "state")
        source = make_source(root, etc_files)
        operations.import_image(store, IMAGE, str(source), incremental=False)
        replicas.create(store, IMAGE, "template")
        template = store.paths.replica("template", IMAGE.name)
        started = time.monotonic()
        nodes_dir = store.paths.nodes
        made = copy_replicas(template, nodes_dir, count)
        for replica in made:
            store.paths.replica_marker(replica.parent.name, IMAGE.name).write_text("1\n")
        baseline = copy_replicas(template, root / "baseline", min(count, sample))
        setup = time.monotonic() - started
        os.sync()
        for i in range(20):
            (source / "etc" / f"file{i:03}.conf").write_bytes(os.urandom(2048).hex().encode())
        with changing(store, IMAGE) as change:
            sources.fill(sources.parse_source(str(source)), change.staging, change.latest_path)
            started = time.monotonic()
            result = change.commit("bench")
            dim_seconds = time.monotonic() - started
        assert result.replicas_updated == count + 1, result
        new_etc = store.paths.version(IMAGE.name, 2) / "etc"
        os.sync()
        started = time.monotonic()
        for replica in baseline:
            subprocess.run(["rsync", "-a", f"{new_etc}/", f"{replica}/etc/"], check=True)
        rsync_sampled = time.monotonic() - started
        rsync_seconds = rsync_sampled * count / len(baseline)
    return {
        "where": where,
        "replicas": count,
        "dim_s": dim_seconds,
        "rsync_s": rsync_seconds,
        "rsync_sampled": len(baseline),
        "ratio": rsync_seconds / dim_seconds,
        "setup_s": setup,
    }


def minbase(tarball: Path, repeat: int) -> dict:
    with disk() as root:
        tree = root / "tree"
        tree.mkdir()
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-xpf", str(tarball), "-C", str(tree)],
            check=True,
        )
        store = Store(root / "state")
        image = Image("minbase", persistent=("/etc", "/var", "/root"))
        operations.import_image(store, image, str(tree), incremental=False)
        entries = scan(store.paths.version("minbase", 1))
        tree_bytes = sum(e.size for e in entries.values() if e.kind == "f")
        targets = sorted(
            p for p, e in entries.items() if e.kind == "f" and p.startswith("usr/share/doc/")
        )[:20]
        sync_times, exec_times, cp_times, added = [], [], [], []
        for run in range(repeat):
            for path in targets:
                with open(tree / path, "ab") as handle:
                    handle.write(f"change {run}\n".encode())
            started = time.monotonic()
            result = operations.import_image(store, image, str(tree), incremental=True)
            sync_times.append(time.monotonic() - started)
            added.append(result.delta["bytes_added"])
            script = "; ".join(f"echo {run} >> /{p}" for p in targets)
            started = time.monotonic()
            operations.exec_in_image(store, image, ["/bin/sh", "-c", script])
            exec_times.append(time.monotonic() - started)
            copy = root / f"cp-{run}"
            os.sync()
            started = time.monotonic()
            subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
            cp_times.append(time.monotonic() - started)
            shutil.rmtree(copy)
        return {
            "files": sum(1 for e in entries.values() if e.kind == "f"),
            "tree_bytes": tree_bytes,
            "sync_s": statistics.median(sync_times),
            "exec_s": statistics.median(exec_times),
            "cp_s": statistics.median(cp_times),
            "added_bytes": statistics.median(added),
        }


def package(tarball: Path, name: str) -> dict:
    with disk() as root:
        tree = root / "tree"
        tree.mkdir()
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-xpf", str(tarball), "-C", str(tree)],
            check=True,
        )
        store = Store(root / "state")
        image = Image("minbase", persistent=("/etc", "/var", "/root"))
        operations.import_image(store, image, str(tree), incremental=False)
        started = time.monotonic()
        operations.exec_in_image(
            store,
            image,
            [
                "sh",
                "-c",
                f"apt-get update -q >/dev/null && apt-get install -y -q {name} >/dev/null",
            ],
        )
        seconds = time.monotonic() - started
        result = operations.diff(store, "minbase", 1, 2)
        return {
            "package": name,
            "exec_s": seconds,
            "added": len(result.added),
            "changed": len(result.changed),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="2500,10000")
    parser.add_argument("--where", default="tmpfs,disk")
    parser.add_argument("--etc-files", type=int, default=60)
    parser.add_argument("--rsync-sample", type=int, default=1000)
    parser.add_argument(
        "--minbase", type=Path, default=Path("/var/cache/dim-tests/minbase-bookworm.tar")
    )
    parser.add_argument("--package", default="hello")
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/images.py needs root (tmpfs mounts, chown, overlay for exec)")
    print(f"# propagation of 20 changed files under /etc ({args.etc_files} files there)")
    rows = []
    for where in args.where.split(","):
        for count in (int(c) for c in args.replicas.split(",")):
            row = propagation(where, count, args.etc_files, args.rsync_sample)
            rows.append(row)
            print(
                f"{where:5} {count:6} replicas: dim {row['dim_s']:.2f} s, rsync loop "
                f"{row['rsync_s']:.1f} s (sampled on {row['rsync_sampled']}), "
                f"ratio {row['ratio']:.1f}x  [setup {row['setup_s']:.0f} s]",
                flush=True,
            )
    if args.minbase.is_file():
        m = minbase(args.minbase, args.repeat)
        print(
            f"# minbase ({m['files']} files, {m['tree_bytes'] / 1e6:.0f} MB): new version with "
            f"20 files changed: sync {m['sync_s']:.2f} s, exec {m['exec_s']:.2f} s, cp -a "
            f"{m['cp_s']:.2f} s; added {m['added_bytes']} bytes = "
            f"{100 * m['added_bytes'] / m['tree_bytes']:.4f}% of the tree",
            flush=True,
        )
        if not args.no_network:
            p = package(args.minbase, args.package)
            print(
                f"# exec apt-get install {p['package']}: {p['exec_s']:.1f} s end to end "
                f"({p['added']} paths added, {p['changed']} changed)"
            )
    else:
        print(f"# {args.minbase} missing: run the image tests once to build it")
    if args.markdown:
        print("\n| where | replicas | dim | rsync loop | ratio |\n|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['where']} | {r['replicas']:,} | {r['dim_s']:.2f} s | "
                f"{r['rsync_s']:.1f} s (sampled on {r['rsync_sampled']:,}) | "
                f"{r['ratio']:.1f}× |"
            )


if __name__ == "__main__":
    main()
