"""Benchmark: image changes, against baselines run side by side in the same run.

Run by hand, as root, never as a test::

    .venv/bin/python bench/images.py [--replicas 2500,10000] [--where tmpfs,disk]
                                     [--minbase TAR] [--markdown]
                                     [--large 140000 [--large-bytes 5.5e9]]
    .venv/bin/python bench/images.py --where disk,cephfs,cephfs-cached --replicas 50 \
                                     --rounds 3 --rsync-sample 10 --no-minbase

1. **Propagation.** An image whose /etc holds ``--etc-files`` files (default 60, 4 kB each),
   ``R`` node replicas of it, and a new version with 20 of those files changed. Measured: the
   time of ``ImageChange.commit`` (new version, live, and every replica by the three-way rule), and,
   on a second set of ``R`` replicas of the same image in the same folder, a loop of
   ``rsync -a NEW/etc/ REPLICA/etc/`` (the baseline; run on at most ``--rsync-sample``
   replicas and extrapolated linearly, as said in the output). On tmpfs (a fresh mount), on
   the working disk (a folder under /var/tmp) and on ``cephfs``: a ceph-fuse mount, as
   client.dim, of a throwaway cluster of :mod:`dim.lab.ceph` (one monitor, manager and MDS,
   three OSDs; on loopback, its files in ``--ceph-dir``), made once for the run and removed
   at its end, mounted as the lab mounts it (no inode cache); ``cephfs-cached`` is a second
   mount of it with ceph-fuse's default cache, which loses hard links (docs/images.md, "On
   CephFS"): what the cure costs. ``--rounds N`` runs every place N times, alternating
   (disk, cephfs, disk…), and gives medians; the CPU seconds of the bench and its workers
   (``cpu``) and of ceph-fuse and the Ceph daemons (``ceph cpu``) during the commit are
   reported beside the wall time.
2. **A new version of a Debian minbase image with 20 files changed** (``--minbase``: a tarball
   of a debootstrap minbase tree; the test suite caches one at
   /var/cache/dim-tests/minbase-bookworm.tar): ``dim image sync`` from a directory that differs
   in 20 files, and ``dim image exec`` touching 20 files, vs ``cp -a`` of the whole tree; bytes
   the new version added as a share of the tree's bytes.
3. **exec installing one small package** (``--package``, default ``hello``) end to end, with
   the Debian mirror reachable; skipped with ``--no-network``.
4. **A large image** (``--large FILES``, e.g. 140000; ``--large-bytes``, default 5.5e9): a
   generated tree shaped like a full /usr and /etc (about one directory per 35 files, one
   symbolic link in 10, sizes drawn from a log-normal mix scaled to the total, a static
   busybox as /bin/sh), kept in ``--large-cache`` between runs, with ``--large-nodes`` replicas
   (default 100) of its /etc and /var. Measured: ``dim image exec`` writing two small files,
   ``dim image sync`` from the directory after one file changed, ``dim image rollback`` of one
   version; baselines in the same run: ``cp -al`` of the image's live tree (the least a
   whole snapshot costs) and ``rsync -aHAX --delete --link-dest`` of it to a fresh folder
   (what a sync that rebuilds the whole tree costs). ``--large-where tmpfs`` keeps the store
   on a fresh tmpfs.

Timings are medians of ``--repeat`` runs (default 3) where a run is cheap to repeat.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from proc_cpu import cpu_seconds as processes_cpu_seconds

from dim.images import operations, replicas, sources
from dim.images.commit import changing
from dim.images.store import Store
from dim.images.tree import scan
from dim.lab import ceph
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


@dataclass(frozen=True, slots=True)
class CephStore:
    """The run's CephFS: where it is mounted, and the processes whose CPU it costs."""

    mount: Path
    pids: tuple[int, ...]


@contextmanager
def ceph_store(folder: Path) -> dict[str, CephStore]:
    """A new cluster of dim.lab.ceph in ``folder``, its CephFS mounted twice with ceph-fuse:
    ``cephfs`` as the lab mounts it (no inode cache, docs/images.md "On CephFS") and
    ``cephfs-cached`` with ceph-fuse's default cache (which loses hard links: measured only,
    to show what the cure costs); all removed at the end, by process id."""
    if (folder / "cluster.json").exists():
        sys.exit(f"bench/images.py: {folder} holds a cluster already; remove it first")
    cluster = ceph.start(folder)
    mounts = []
    try:
        ceph.wait_healthy(cluster)
        daemons = tuple(d.pid for d in cluster.daemons)
        stores = {}
        for name, options in (("cephfs", ceph.FUSE_OPTIONS), ("cephfs-cached", ())):
            where = folder.with_name(f"{folder.name}-{name}")
            mounts.append(ceph.mount_fuse(cluster, where, options=options))
            stores[name] = CephStore(where, (mounts[-1].process.pid, *daemons))
        yield stores
    finally:
        for mount in mounts:
            ceph.unmount(mount)
            Path(mount.path).rmdir()
        ceph.remove(cluster)


@contextmanager
def on_cephfs(store: CephStore) -> Path:
    """A new folder on the run's CephFS (left for the cluster's removal: deleting its
    thousands of files would cost the run minutes)."""
    yield Path(tempfile.mkdtemp(prefix="dim-bench-", dir=store.mount))


def cpu_seconds(pids: tuple[int, ...] = ()) -> float:
    """CPU seconds (user + system) of this process and its waited-for children, or of
    ``pids`` (/proc)."""
    if not pids:
        own, children = os.times(), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.user + own.system + children.ru_utime + children.ru_stime
    return processes_cpu_seconds(pids)


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


def place(where: str, cephfs: CephStore | None):
    """The context manager of a new folder on ``where`` (tmpfs, disk, cephfs or
    cephfs-cached)."""
    if where.startswith("cephfs"):
        assert cephfs is not None
        return on_cephfs(cephfs)
    return tmpfs() if where == "tmpfs" else disk()


def propagation(
    where: str, count: int, etc_files: int, sample: int, cephfs: CephStore | None = None
) -> dict:
    with place(where, cephfs) as root:
        store = Store(root / "state")
        source = make_source(root, etc_files)
        started = time.monotonic()
        operations.import_image(store, IMAGE, str(source), incremental=False)
        import_seconds = time.monotonic() - started
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
            origin = sources.parse_source(str(source))
            change.removed = sources.fill(origin, change.staging, change.live)
            started = time.monotonic()
            cpu, ceph_cpu = cpu_seconds(), cpu_seconds(cephfs.pids if cephfs else ())
            result = change.commit("bench")
            dim_seconds = time.monotonic() - started
            cpu = cpu_seconds() - cpu
            ceph_cpu = cpu_seconds(cephfs.pids) - ceph_cpu if cephfs else 0.0
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
        "import_s": import_seconds,
        "cpu_s": cpu,
        "ceph_cpu_s": ceph_cpu if cephfs else None,
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


LARGE_IMAGE = Image("large", persistent=("/etc", "/var"), keepout=("/etc/hostname",))


def make_large_tree(root: Path, files: int, total_bytes: int, seed: int = 14) -> None:
    """A tree shaped like a full /usr and /etc: ``files`` entries, ``total_bytes`` of content."""
    import random

    rng = random.Random(seed)
    block = rng.randbytes(1 << 20)
    sizes = [int(rng.lognormvariate(8.0, 1.8)) for _ in range(files)]
    scale = total_bytes / max(1, sum(sizes))
    folders = ["usr/lib", "usr/share", "usr/bin", "usr/include"]  # /etc, /var: see below
    for folder in (*folders, "var/lib", "etc"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(sizes):
        if i % 14 == 0:  # a new folder, up to six levels deep (one in 35 files: some are not)
            parent = rng.choice(folders)
            if parent.count("/") < 5:
                folders.append(f"{parent}/d{i}")
                (root / folders[-1]).mkdir()
        # /etc and /var (the persistent part) get one file in 50, like a real system
        top = "etc" if i % 100 == 0 else "var/lib" if i % 100 == 1 else None
        folder = top or folders[-1 - int(rng.random() ** 2 * min(40, len(folders) - 1))]
        where = root / folder / f"f{i}"
        if i % 10 == 9:
            os.symlink(f"f{i - 1}", where)
            continue
        size = int(raw * scale) if top is None else raw % 4096  # configuration files
        with open(where, "wb") as handle:
            while size > 0:
                size -= handle.write(block[: min(size, len(block))])
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    os.symlink("busybox", root / "bin/sh")
    for folder in ("proc", "sys", "dev", "run", "tmp"):
        (root / folder).mkdir(exist_ok=True)


def large(files: int, total_bytes: int, cache: Path, nodes: int, repeat: int, where: str) -> dict:
    tree = cache / f"large-{files}-{total_bytes}"
    if not tree.is_dir():
        make_large_tree(tree.with_suffix(".new"), files, total_bytes)
        tree.with_suffix(".new").rename(tree)
    with tmpfs() if where == "tmpfs" else disk() as root:
        store = Store(root / "state")
        started = time.monotonic()
        operations.import_image(store, LARGE_IMAGE, str(tree), incremental=False)
        seconds = {"import": [time.monotonic() - started]}
        for k in range(nodes):
            replicas.create(store, LARGE_IMAGE, f"n{k:04}")

        def timed(what: str, action, *args, **kwargs) -> None:
            os.sync()
            started = time.monotonic()
            action(*args, **kwargs)
            seconds.setdefault(what, []).append(time.monotonic() - started)

        files = (tree / "usr").rglob("f*")
        changed = next(p for p in files if p.is_file() and not p.is_symlink())
        original = changed.read_bytes()
        copy = root / "copy"
        try:
            for run in range(repeat):
                script = f"echo {run} > /etc/bench-a; echo {run} > /usr/bench-b"
                timed("exec", operations.exec_in_image, store, LARGE_IMAGE, ["sh", "-c", script])
                changed.write_bytes(original + f"{run}".encode())
                timed(
                    "sync", operations.import_image, store, LARGE_IMAGE, str(tree), incremental=True
                )
                back = store.latest(LARGE_IMAGE.name) - 1
                timed("rollback", operations.rollback, store, LARGE_IMAGE, back)
                # the baselines snapshot the image's own tree (hard links need one file system)
                live = store.paths.live(LARGE_IMAGE.name)
                timed("cp -al", subprocess.run, ["cp", "-al", str(live), str(copy)], check=True)
                shutil.rmtree(copy)
                link_dest = ["rsync", "-aHAX", "--delete", f"--link-dest={live}", f"{live}/"]
                timed("rsync --link-dest", subprocess.run, [*link_dest, f"{copy}/"], check=True)
                shutil.rmtree(copy)
                print(
                    f"  run {run}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items())
                )
        finally:
            changed.write_bytes(original)
        entries = scan(store.paths.live(LARGE_IMAGE.name))
    return {
        "files": len(entries),
        "bytes": sum(e.size for e in entries.values() if e.kind == "f"),
        "nodes": nodes,
        **{what: statistics.median(runs) for what, runs in seconds.items()},
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
    parser.add_argument("--large", type=int, default=0, metavar="FILES")
    parser.add_argument("--large-bytes", type=float, default=5.5e9)
    parser.add_argument("--large-cache", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--large-nodes", type=int, default=100)
    parser.add_argument("--large-where", choices=("disk", "tmpfs"), default="disk")
    parser.add_argument("--large-only", action="store_true", help="only the large image")
    parser.add_argument("--rounds", type=int, default=1, help="propagation: runs per place")
    parser.add_argument("--ceph-dir", type=Path, default=Path("/var/tmp/dim-bench-images-ceph"))
    parser.add_argument("--no-minbase", action="store_true", help="propagation only")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/images.py needs root (tmpfs mounts, chown, overlay for exec)")
    if args.large:
        sizes = (args.large, int(args.large_bytes), args.large_cache, args.large_nodes)
        g = large(*sizes, args.repeat, args.large_where)
        print(
            f"# large image on {args.large_where} ({g['files']} paths, {g['bytes'] / 1e9:.2f} GB, "
            f"{g['nodes']} replicas), median of {args.repeat}: exec of 2 files {g['exec']:.2f} s, "
            f"sync of 1 file {g['sync']:.2f} s, rollback of 1 version {g['rollback']:.2f} s; "
            f"baselines: cp -al {g['cp -al']:.2f} s, "
            f"rsync --link-dest {g['rsync --link-dest']:.2f} s (import {g['import']:.1f} s)",
            flush=True,
        )
        if args.large_only:
            return
    print(f"# propagation of 20 changed files under /etc ({args.etc_files} files there)")
    print(f"load average at start: {os.getloadavg()}", flush=True)
    wheres = args.where.split(",") if args.where else []
    rows = []
    with ExitStack() as stack:
        ceph_wanted = any(w.startswith("cephfs") for w in wheres)
        cephfs = stack.enter_context(ceph_store(args.ceph_dir)) if ceph_wanted else {}
        for _ in range(args.rounds):
            for count in (int(c) for c in args.replicas.split(",")):
                for where in wheres:
                    on = cephfs.get(where)
                    row = propagation(where, count, args.etc_files, args.rsync_sample, on)
                    rows.append(row)
                    print(_propagation_line(row), flush=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)
    if args.rounds > 1:
        print(f"# medians of {args.rounds} rounds")
        for row in _medians(rows):
            print(_propagation_line(row), flush=True)
    if args.no_minbase:
        print("# minbase: left out (--no-minbase)")
    elif args.minbase.is_file():
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
        for r in _medians(rows) if args.rounds > 1 else rows:
            print(
                f"| {r['where']} | {r['replicas']:,} | {r['dim_s']:.2f} s | "
                f"{r['rsync_s']:.1f} s (sampled on {r['rsync_sampled']:,}) | "
                f"{r['ratio']:.1f}× |"
            )


def _propagation_line(row: dict) -> str:
    ceph_cpu = "" if row["ceph_cpu_s"] is None else f", ceph cpu {row['ceph_cpu_s']:.2f} s"
    return (
        f"{row['where']:6} {row['replicas']:6} replicas: dim {row['dim_s']:.2f} s "
        f"(cpu {row['cpu_s']:.2f} s{ceph_cpu}), rsync loop {row['rsync_s']:.1f} s (sampled on "
        f"{row['rsync_sampled']}), ratio {row['ratio']:.1f}x; import {row['import_s']:.2f} s "
        f"[setup {row['setup_s']:.0f} s]"
    )


def _medians(rows: list[dict]) -> list[dict]:
    """One row per place and replica count: the median of each figure over the rounds."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["where"], row["replicas"]), []).append(row)
    medians = []
    for (where, count), group in groups.items():
        row = {"where": where, "replicas": count, "rsync_sampled": group[0]["rsync_sampled"]}
        for key in ("dim_s", "rsync_s", "ratio", "setup_s", "import_s", "cpu_s", "ceph_cpu_s"):
            values = [r[key] for r in group if r[key] is not None]
            row[key] = statistics.median(values) if values else None
        medians.append(row)
    return medians


if __name__ == "__main__":
    main()
