"""Benchmark: expand cluster.xml, render every config, and `dim apply`, at cluster scale.

Run by hand, never as a test::

    .venv/bin/python bench/layout.py [--sizes 2576,10000,100000] [--repeat N] [--markdown]

For each size the bench writes, in a temporary folder on the working disk, a cluster.xml per
DHCP flavour (dnsmasq, kea, isc; two interfaces and a BMC per node), a MAC CSV and a state
folder filled by ``dim node import-macs``. Then it measures:

- in memory, in a fresh subprocess per run: the time to expand the layout
  (``dim.layout.parser.load``) and to render every file (``dim.services.render.render_all``
  with a MAC for every node), the peak resident memory of that process
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: interpreter and imports included), and a
  trivial baseline that formats the same number of host, DHCP, export and link lines with
  plain f-strings;
- whole commands, ``.venv/bin/dim …`` in a subprocess: a full ``dim apply`` into an empty root
  on tmpfs, per flavour; ``dim node set NODE --mac NEW`` then ``dim apply`` (the one-node
  change); and, with the first flavour, a full apply with ``--skip-validation`` on tmpfs and a
  full apply (validated) into an empty root on the working disk. Every command runs with a
  ``sitecustomize`` hook (on ``PYTHONPATH``) that times dim's phases (expand, state DB,
  render, plan, validate, write) in the same run; it wraps six functions and adds
  microseconds.

Medians are reported. Sizes above 20,000 nodes run each full apply ``--repeat-big`` times
(default 2) to keep the whole bench under about ten minutes; one-node changes and the
in-memory runs are repeated ``--repeat`` times (default 3) at every size.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAVOURS = ("dnsmasq", "kea", "isc")
GANESHA_MAX_NODES = 65535 - 1000  # nfs-ganesha numbers exports up to 65,535; nodes from 1,000
BIG = 20_000  # sizes above this use --repeat-big
# issue 14: expand + render in memory within twice the f-string baseline of the same run
TARGETS = {"nodes": 100_000, "memory_x": 2.0, "memory_mb": 500.0, "full_s": 5.0, "one_s": 0.5}

# -- the generated cluster ---------------------------------------------------------------------

BLADECENTER = """\
<?xml version="1.0"?>
<!-- dim bench: 2,576 blades, 46 racks x 4 chassis x 14 blades (examples/bladecenter.xml). -->
<cluster name="bc" domain="bc.example">
  <network name="boot" subnet="10.0.0.0/16" gateway="10.0.0.1" dns="10.0.0.2" ntp="10.0.0.2"/>
  <network name="ib"   subnet="10.2.0.0/16"/>
  <network name="bmc"  subnet="10.1.0.0/16"/>
  <server name="img1" address="10.0.0.2" dhcp="{dhcp}" nfs="{nfs}"/>
  <image name="rhel9">
    <persist path="/etc"/> <persist path="/var"/> <persist path="/root"/>
    <volatile path="/tmp"/> <volatile path="/var/tmp"/>
    <keepout path="/etc/hostname"/> <keepout path="/var/log"/>
  </image>
  <image name="sles15"><persist path="/etc"/> <volatile path="/tmp"/></image>
  <group name="blades" nodes="s[01-46]c[1-4]b[01-14]" image="rhel9">
    <interface network="boot" ip="10.0.{{n1}}.{{(n2-1)*14+n3}}"/>
    <interface network="ib"   ip="10.2.{{n1}}.{{(n2-1)*14+n3}}" hostname="{{name}}-ib"/>
    <bmc driver="redfish" address="10.1.{{n1}}.{{(n2-1)*14+n3}}" credentials="default"/>
    <node name="s46c4b[01-14]" image="sles15"/>
  </group>
</cluster>
"""

# Any other size: racks of 500 nodes (r[001-200]n[001-500]) or one flat set (n[000001-N]);
# addresses from the node's index, in three /14 networks (up to 261,886 nodes).
RACKS = """\
<?xml version="1.0"?>
<!-- dim bench: {size:,} nodes, two interfaces and a BMC each. -->
<cluster name="bench" domain="bench.example">
  <network name="boot" subnet="10.0.0.0/14" gateway="10.0.0.1" dns="10.0.0.2" ntp="10.0.0.2"/>
  <network name="ib"   subnet="10.4.0.0/14"/>
  <network name="bmc"  subnet="10.8.0.0/14"/>
  <server name="img1" address="10.0.0.2" dhcp="{dhcp}" nfs="{nfs}"/>
  <image name="rhel9">
    <persist path="/etc"/> <persist path="/var"/> <persist path="/root"/>
    <volatile path="/tmp"/> <volatile path="/var/tmp"/>
    <keepout path="/etc/hostname"/> <keepout path="/var/log"/>
  </image>
  <image name="sles15"><persist path="/etc"/> <volatile path="/tmp"/></image>
  <group name="compute" nodes="{nodes}" image="rhel9">
    <interface network="boot" ip="{ip0}"/>
    <interface network="ib"   ip="{ip4}" hostname="{{name}}-ib"/>
    <bmc driver="redfish" address="{ip8}" credentials="default"/>
    <node name="{override}" image="sles15"/>
  </group>
</cluster>
"""
MAX_SIZE = 4 * 65536 - 256 - 2


def _index_ip(first_octet: int) -> str:
    return f"10.{{{first_octet}+(i+256)//65536}}.{{(i+256)//256%256}}.{{(i+256)%256}}"


def cluster_xml(size: int, dhcp: str, nfs: str) -> str:
    if size == 2576:
        return BLADECENTER.format(dhcp=dhcp, nfs=nfs)
    if size % 500 == 0:
        nodes, override = f"r[001-{size // 500:03}]n[001-500]", "r001n[001-014]"
    else:
        nodes, override = f"n[000001-{size:06}]", "n[000001-000014]"
    return RACKS.format(
        size=size,
        dhcp=dhcp,
        nfs=nfs,
        nodes=nodes,
        override=override,
        ip0=_index_ip(0),
        ip4=_index_ip(4),
        ip8=_index_ip(8),
    )


def node_names(size: int) -> list[str]:
    """The names the layout declares, in its order."""
    if size == 2576:
        return [
            f"s{s:02}c{c}b{b:02}" for s in range(1, 47) for c in range(1, 5) for b in range(1, 15)
        ]
    if size % 500 == 0:
        return [f"r{r:03}n{n:03}" for r in range(1, size // 500 + 1) for n in range(1, 501)]
    return [f"n{k:06}" for k in range(1, size + 1)]


def mac(prefix: str, number: int) -> str:
    return f"{prefix}:{number >> 24 & 255:02x}:{number >> 16 & 255:02x}:" + (
        f"{number >> 8 & 255:02x}:{number & 255:02x}"
    )


def nfs_flavour(size: int, requested: str) -> str:
    if requested != "auto":
        return requested
    return "ganesha" if size <= GANESHA_MAX_NODES else "kernel"


# -- in memory: a fresh subprocess per run -----------------------------------------------------


def inmemory_worker(config: str, csv: str) -> dict:
    """Expand, render, measure peak RSS; then the f-string baseline. Prints one JSON line."""
    started = time.perf_counter()
    from dim.layout.model import Inventory
    from dim.layout.parser import load
    from dim.services.render import render_all
    from dim.services.rendering import RenderContext

    imports = time.perf_counter() - started
    rss_imports = _maxrss_mb()
    macs = {}
    with open(csv) as handle:
        for line in handle:
            name, address = line.rstrip("\n").split(",")
            macs[(name, "boot")] = address

    cpu = time.process_time()
    started = time.perf_counter()
    cluster = load(config)
    expand = time.perf_counter() - started
    server = next(iter(cluster.servers))
    started = time.perf_counter()
    files = render_all(RenderContext(Inventory(cluster, macs, {}), server, Path("/var/lib/dim")))
    render = time.perf_counter() - started
    cpu = time.process_time() - cpu
    rss = _maxrss_mb()
    size = len(cluster.nodes)
    written = sum(len(f.content) for f in files if f.content is not None)
    links = sum(1 for f in files if f.link is not None)
    del files, cluster

    started = time.perf_counter()
    # the links per MAC are rendered only where a loader reads them (i14-apply6, i14-links7)
    lines = baseline(node_names(size), macs, per_node=links // size)
    base = time.perf_counter() - started
    return {
        "imports": imports,
        "expand": expand,
        "render": render,
        "cpu": cpu,
        "rss_mb": rss,
        "rss_imports_mb": rss_imports,
        "bytes": written,
        "links": links,
        "baseline": base,
        "baseline_lines": lines,
    }


def baseline(names: list[str], macs: dict[tuple[str, str], str], per_node: int) -> int:
    """Plain string formatting of the same lines: 3 hosts, 1 DHCP, 1 export, and the links
    per node that dim renders (``per_node``: none with the default loaders, PXELINUX's and
    GRUB's with theirs, iPXE's too with ``http="none"``)."""
    hosts, dhcp, exports, links = [], [], [], []
    for index, name in enumerate(names):
        k = index + 256
        high, tail = k >> 16, f"{k >> 8 & 255}.{k & 255}"
        boot, ib, bmc = f"10.{high}.{tail}", f"10.{4 + high}.{tail}", f"10.{8 + high}.{tail}"
        hosts.append(f"{boot}\t{name}.bench.example {name}\n")
        hosts.append(f"{ib}\t{name}-ib.bench.example {name}-ib\n")
        hosts.append(f"{bmc}\t{name}-bmc.bench.example {name}-bmc\n")
        address = macs[(name, "boot")]
        dhcp.append(f"{address},set:boot,{boot},{name},infinite\n")
        exports.append(f"/var/lib/dim/nodes/{name}/rhel9 {boot}(rw,no_root_squash,sync)\n")
        hyphens = address.replace(":", "-")
        node_links = [
            (f"/srv/dim/tftp/pxelinux.cfg/01-{hyphens}", "dim-rhel9"),
            (f"/srv/dim/tftp/grub/nodes/{address}.cfg", "../dim-rhel9.cfg"),
            (f"/srv/dim/http/dim/nodes/{hyphens}.ipxe", "../images/rhel9.ipxe"),
        ]
        links += node_links[:per_node]
    for chunk in (hosts, dhcp, exports):
        "".join(chunk).encode()
    return len(hosts) + len(dhcp) + len(exports) + len(links)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- whole commands --------------------------------------------------------------------------

HOOK = '''\
"""dim bench: time dim's phases inside a `dim` command, and its peak RSS (DIM_BENCH_PHASES)."""
import atexit, json, os, time

_path = os.environ.get("DIM_BENCH_PHASES")
if _path:
    import dim.layout.parser, dim.services.apply, dim.services.render, dim.state

    _phases = {}

    def _wrap(owner, name, phase):
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                _phases[phase] = _phases.get(phase, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed)

    _wrap(dim.layout.parser, "parse", "expand")
    _wrap(dim.state.StateDB, "observed", "state")
    _wrap(dim.services.render, "render_all", "render")
    _wrap(dim.services.apply, "plan", "plan")
    _wrap(dim.services.apply, "validate", "validate")
    _wrap(dim.services.apply, "write", "write")

    def _save():
        import resource

        _phases["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with open(_path, "w") as handle:
            json.dump(_phases, handle)

    atexit.register(_save)
'''
PHASES = ("expand", "state", "render", "plan", "validate", "write")
SUMMARY = re.compile(r"(\d+) files (?:would change|changed) .*?, (\d+) unchanged")


class BenchError(RuntimeError):
    pass


@dataclass
class Runner:
    dim: str
    work: Path
    timeout: float
    verbose: bool
    src: Path | None = None
    count: int = 0

    def run(self, config: Path, *args: str) -> tuple[float, dict[str, float], str]:
        """Run one dim command; (wall seconds, phases, stdout). Fails loudly on error."""
        self.count += 1
        phases_file = self.work / f"phases-{self.count}.json"
        # bytecode written by the first command and read by the others, as an installed
        # wheel's (this environment may set PYTHONDONTWRITEBYTECODE: 0.3 s a command)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            PYTHONPATH=python_path(self.src, self.work / "hook"),
            PYTHONPYCACHEPREFIX=str(self.work / "pycache"),
            DIM_BENCH_PHASES=str(phases_file),
        )
        command = [self.dim, "--config", str(config), "--state", str(self.work / "state"), *args]
        before = _children_cpu()
        started = time.perf_counter()
        try:
            run = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=self.timeout
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"timed out after {self.timeout:.0f} s: {' '.join(command)}") from None
        seconds = time.perf_counter() - started
        if run.returncode != 0:
            raise BenchError(f"{' '.join(command)} exited {run.returncode}:\n{run.stderr}")
        phases = json.loads(phases_file.read_text()) if phases_file.exists() else {}
        phases["cpu"] = _children_cpu() - before  # dim and the daemons it ran, user + system
        phases_file.unlink(missing_ok=True)
        if self.verbose:
            last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
            split = " ".join(f"{p} {phases[p]:.2f}" for p in PHASES if p in phases)
            print(
                f"    {seconds:7.2f} s  dim {' '.join(args[:2])}  [{split}]  | {last[:70]}",
                file=sys.stderr,
            )
        return seconds, phases, run.stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def python_path(*folders: Path | None) -> str:
    """PYTHONPATH with ``folders`` first (--src, the phase hook), then the caller's own."""
    parts = [str(f) for f in folders if f is not None]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def changed_files(stdout: str) -> int:
    match = SUMMARY.search(stdout)
    if match is None:
        raise BenchError(f"unexpected dim apply output: {stdout[-300:]}")
    return int(match.group(1))


# -- results -------------------------------------------------------------------------------------


@dataclass
class Timings:
    """Runs of one measurement: wall seconds and dim's phases per run."""

    seconds: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)

    def add(self, seconds: float, phases: dict[str, float], changed: int | None = None) -> None:
        self.seconds.append(seconds)
        self.phases.append(phases)
        if changed is not None:
            self.changed.append(changed)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    def phase(self, name: str) -> float:
        """Median time in one phase; NaN (shown as "-") when no run went through it."""
        if not any(name in p for p in self.phases):
            return float("nan")
        return statistics.median(p.get(name, 0.0) for p in self.phases)


@dataclass
class SizeResult:
    size: int
    nfs: str
    shape: str
    import_macs: Timings = field(default_factory=Timings)
    memory: list[dict] = field(default_factory=list)
    full: dict[str, Timings] = field(default_factory=dict)  # flavour -> full apply on tmpfs
    node_set: dict[str, Timings] = field(default_factory=dict)
    one: dict[str, Timings] = field(default_factory=dict)  # flavour -> one-node change
    skip_tmpfs: Timings = field(default_factory=Timings)  # first flavour, --skip-validation
    disk: Timings = field(default_factory=Timings)  # first flavour, root on the working disk
    skip_flavour: str = ""

    def mem(self, key: str) -> float:
        return statistics.median(m[key] for m in self.memory)


# -- the bench -----------------------------------------------------------------------------------


def bench_size(size: int, args, dim: str, disk: Path, tmpfs: Path) -> SizeResult:
    nfs = nfs_flavour(size, args.nfs)
    repeat = args.repeat if size <= BIG else args.repeat_big
    names = node_names(size)
    shape = cluster_xml(size, "dnsmasq", nfs)
    shape = re.search(r'nodes="([^"]+)"', shape).group(1)
    result = SizeResult(size, nfs, shape)
    work = Path(tempfile.mkdtemp(prefix=f"dim-bench-{size}-", dir=disk))
    roots = Path(tempfile.mkdtemp(prefix=f"dim-bench-{size}-", dir=tmpfs))
    say = (lambda text: print(text, file=sys.stderr)) if not args.quiet else (lambda text: None)
    try:
        (work / "hook").mkdir()
        (work / "hook" / "sitecustomize.py").write_text(HOOK)
        configs = {}
        for flavour in args.flavours:
            configs[flavour] = work / f"cluster-{flavour}.xml"
            configs[flavour].write_text(cluster_xml(size, flavour, nfs))
        csv = work / "macs.csv"
        csv.write_text("".join(f"{n},{mac('52:54', k)}\n" for k, n in enumerate(names, 1)))
        first = args.flavours[0]
        runner = Runner(dim, work, args.timeout, not args.quiet, args.src)

        say(f"== {size:,} nodes ({shape}, nfs={nfs}), work {work}, roots {roots}")
        seconds, phases, _ = runner.run(configs[first], "node", "import-macs", str(csv))
        result.import_macs.add(seconds, phases)

        say(f"  in memory: expand + render_all, {args.repeat} fresh subprocesses")
        for _ in range(args.repeat):
            run = subprocess.run(
                [sys.executable, __file__, "--inmemory-worker", str(configs[first]), str(csv)],
                capture_output=True,
                text=True,
                timeout=args.timeout,
                env=dict(os.environ, PYTHONPATH=python_path(args.src)),
            )
            if run.returncode != 0:
                raise BenchError(f"in-memory worker failed:\n{run.stderr}")
            result.memory.append(json.loads(run.stdout))
            m = result.memory[-1]
            say(
                f"    expand {m['expand']:.2f} s, render {m['render']:.2f} s, "
                f"peak RSS {m['rss_mb']:.0f} MB, baseline {m['baseline']:.3f} s"
            )

        changes = 0
        for flavour in args.flavours:
            say(f"  {flavour}: full apply into an empty root on tmpfs, then one-node changes")
            full = result.full[flavour] = Timings()
            root = None
            for run_number in range(repeat):
                if root is not None:
                    shutil.rmtree(root)
                root = roots / f"{flavour}-{run_number}"
                seconds, phases, out = runner.run(
                    configs[flavour], "apply", "--root", str(root), "--no-reload"
                )
                full.add(seconds, phases, changed_files(out))
                # into an empty root, every file is created: the files per node vary with the
                # server's loaders (none with the defaults), so no count tells a full apply
                if SUMMARY.search(out).group(2) != "0":  # type: ignore[union-attr]
                    raise BenchError(f"a full apply found files unchanged: {out[-300:]}")
            node = names[len(names) // 2]
            one = result.one[flavour] = Timings()
            node_set = result.node_set[flavour] = Timings()
            for _ in range(args.repeat):  # cheap enough to repeat fully at every size
                changes += 1
                seconds, phases, _ = runner.run(
                    configs[flavour], "node", "set", node, "--mac", mac("02:00", changes)
                )
                node_set.add(seconds, phases)
                seconds, phases, out = runner.run(
                    configs[flavour], "apply", "--root", str(root), "--no-reload"
                )
                one.add(seconds, phases, changed_files(out))
                if not 0 < one.changed[-1] <= 10:
                    raise BenchError(f"one-node change touched {one.changed[-1]} files")
            shutil.rmtree(root)

        result.skip_flavour = first
        for label, where, timings, options in (
            ("tmpfs, --skip-validation", roots, result.skip_tmpfs, ["--skip-validation"]),
            ("the working disk", work, result.disk, []),
        ):
            say(f"  {first}: full apply into an empty root on {label}")
            for run_number in range(repeat):
                root = where / f"root-{run_number}"
                seconds, phases, out = runner.run(
                    configs[first], "apply", "--root", str(root), "--no-reload", *options
                )
                timings.add(seconds, phases, changed_files(out))
                shutil.rmtree(root)
    finally:
        if args.keep:
            say(f"  kept {work} and {roots}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(roots, ignore_errors=True)
    return result


# -- environment -------------------------------------------------------------------------------


def _first_line(command: list[str]) -> str:
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (run.stdout or run.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def mount_of(path: Path) -> str:
    text = _first_line(["findmnt", "-no", "SOURCE,FSTYPE,OPTIONS", "-T", str(path)])
    return " ".join(text.split())


def dim_source(src: Path | None) -> str:
    """Which dim the bench measures: its folder, and the git commit with local changes if any."""
    run = subprocess.run(
        [sys.executable, "-c", "import dim; print(dim.__file__)"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=python_path(src)),
    )
    folder = Path(run.stdout.strip()).parent.parent if run.returncode == 0 else Path("?")
    repo = Path(__file__).resolve().parent.parent
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if src is not None:
        return f"{folder} (--src)"
    return f"{folder} (git {commit}{', with uncommitted changes' if dirty else ''})"


def environment(disk: Path, tmpfs: Path, src: Path | None) -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, "
        f"Linux {platform.release()}",
        "python": platform.python_version(),
        "dim": dim_source(src),
        "daemons": "; ".join(
            (
                _first_line(["dnsmasq", "--version"]),
                "kea-dhcp4 " + _first_line(["kea-dhcp4", "-V"]),
                _first_line(["dhcpd", "--version"]),
            )
        ),
        "load": f"load average at start {_load()}",
        "tmpfs": f"{tmpfs}: {mount_of(tmpfs)}",
        "disk": f"{disk}: {mount_of(disk)}",
    }


# -- output ------------------------------------------------------------------------------------


def _s(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _share(part: float, whole: float) -> str:
    return f"{_s(part)} ({100 * part / whole:.0f} %)" if whole > 0 else "-"


def tables(results: list[SizeResult]) -> list[tuple[str, list[str], list[list[str]]]]:
    memory_rows = []
    for r in results:
        total = r.mem("expand") + r.mem("render")
        memory_rows.append(
            [
                f"{r.size:,}",
                _s(r.mem("expand")),
                _s(r.mem("render")),
                _s(total),
                _s(r.mem("cpu")),
                f"{r.mem('rss_mb'):.0f} ({r.mem('rss_imports_mb'):.0f})",
                _s(r.mem("baseline")),
                f"{total / r.mem('baseline'):.0f}x",
                f"{r.mem('bytes') / 1e6:.1f} MB + {r.mem('links'):,.0f} links",
                str(len(r.memory)),
            ]
        )
    apply_rows = []
    for r in results:
        for flavour, full in r.full.items():
            one = r.one[flavour]
            apply_rows.append(
                [
                    f"{r.size:,}",
                    flavour,
                    r.nfs,
                    _s(full.median),
                    _share(full.phase("validate"), full.median),
                    f"{full.phase('rss_mb'):.0f}",
                    _s(one.median),
                    _share(one.phase("validate"), one.median),
                    _s(r.node_set[flavour].median),
                    str(len(full.seconds)),
                ]
            )
    phase_rows = []
    for r in results:
        for label, timings in (
            (f"full, {r.skip_flavour}, tmpfs", r.full.get(r.skip_flavour)),
            (f"one node, {r.skip_flavour}, tmpfs", r.one.get(r.skip_flavour)),
            (f"full, {r.skip_flavour}, tmpfs, --skip-validation", r.skip_tmpfs),
            (f"full, {r.skip_flavour}, working disk", r.disk),
            ("dim node import-macs, every MAC, empty DB", r.import_macs),
        ):
            if timings is None or not timings.seconds:
                continue
            known = sum(t for t in map(timings.phase, PHASES) if not math.isnan(t))
            phase_rows.append(
                [f"{r.size:,}", label, _s(timings.median), _s(timings.phase("cpu"))]
                + [_s(timings.phase(p)) for p in PHASES]
                + [_s(timings.median - known), str(len(timings.seconds))]
            )
    return [
        (
            "Expand and render in memory (seconds; peak RSS in MB)",
            [
                "nodes",
                "expand",
                "render",
                "expand+render",
                "CPU",
                "peak RSS (after imports)",
                "f-string baseline",
                "ratio",
                "rendered",
                "runs",
            ],
            memory_rows,
        ),
        (
            "dim apply, whole command, root on tmpfs (seconds; validation's share in brackets)",
            [
                "nodes",
                "dhcp",
                "nfs",
                "full apply",
                "of which validation",
                "peak RSS MB",
                "one-node apply",
                "of which validation",
                "node set --mac",
                "runs",
            ],
            apply_rows,
        ),
        (
            "Where the time goes: phases of whole commands (seconds, medians; CPU: user + "
            "system time of dim and the daemons it ran; other: total minus the phases, i.e. "
            "Python start-up, imports, opening the state DB, output)",
            ["nodes", "run", "total", "CPU", *PHASES, "other", "runs"],
            phase_rows,
        ),
    ]


def targets(results: list[SizeResult]) -> list[str]:
    """The issue's targets at 100,000 nodes: median, with the best run and CPU time beside it."""
    lines = []
    for r in results:
        if r.size != TARGETS["nodes"]:
            continue
        walls = [m["expand"] + m["render"] for m in r.memory]
        checks = [
            (
                "expand + render in memory, times the f-string baseline",
                statistics.median(walls) / r.mem("baseline"),
                f"{_s(statistics.median(walls))} s against {_s(r.mem('baseline'))} s; "
                f"best run {_s(min(walls))} s, CPU {_s(r.mem('cpu'))} s",
                TARGETS["memory_x"],
                "x",
            ),
            ("peak RSS of expand + render", r.mem("rss_mb"), "", TARGETS["memory_mb"], "MB"),
        ]
        for name, timings, limit in (
            ("full apply, dnsmasq, tmpfs", r.full.get("dnsmasq"), TARGETS["full_s"]),
            ("one-node change (dim apply), dnsmasq", r.one.get("dnsmasq"), TARGETS["one_s"]),
        ):
            if timings is not None:
                extra = f"best run {_s(min(timings.seconds))} s, CPU {_s(timings.phase('cpu'))} s"
                checks.append((name, timings.median, extra, limit, "s"))
        for name, value, extra, limit, unit in checks:
            verdict = "met" if value < limit else f"MISSED, {value / limit:.1f}x the target"
            extra = f"; {extra}" if extra else ""
            lines.append(
                f"{r.size:,} nodes, {name}: {_s(value)} {unit} median{extra} "
                f"(target < {limit:g} {unit}): {verdict}"
            )
        if r.disk.seconds:
            lines.append(
                f"{r.size:,} nodes, full apply, {r.skip_flavour}, working disk: "
                f"{_s(r.disk.median)} s median (no target; for comparison with tmpfs)"
            )
    return lines


def print_text(results, env, elapsed, command) -> None:
    print(f"$ {command}")
    for key, value in env.items():
        print(f"{key:>8}: {value}")
    for title, headers, rows in tables(results):
        print(f"\n{title}")
        widths = [max(len(c) for c in column) for column in zip(headers, *rows, strict=True)]
        for row in [headers, *rows]:
            print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print()
    for line in targets(results):
        print(line)
    print(f"\nbench time {elapsed:.0f} s")


def print_markdown(results, env, elapsed, command) -> None:
    print("## Layout and apply (bench/layout.py)\n")
    print(f"```\n{command}\n```\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print(f"- bench time: {elapsed:.0f} s")
    for title, headers, rows in tables(results):
        print(f"\n{title}:\n")
        print("| " + " | ".join(headers) + " |")
        print("|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    lines = targets(results)
    if lines:
        print("\nTargets:\n")
        for line in lines:
            print(f"- {line}")


# -- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=textwrap.dedent(__doc__.split("\n\n")[0]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default="2576,10000,100000",
        help="node counts, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per measurement, median reported (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat-big",
        type=int,
        default=2,
        help=f"runs per full apply above {BIG:,} nodes (default: %(default)s)",
    )
    parser.add_argument(
        "--flavours",
        default=",".join(FLAVOURS),
        help="DHCP flavours; the first also runs with --skip-validation and on the working "
        "disk (default: %(default)s)",
    )
    parser.add_argument(
        "--nfs",
        choices=("auto", "kernel", "ganesha"),
        default="auto",
        help="nfs= of the server; auto: ganesha up to "
        f"{GANESHA_MAX_NODES:,} nodes, kernel above (default: %(default)s)",
    )
    parser.add_argument(
        "--tmpfs",
        type=Path,
        default=Path("/dev/shm"),
        help="a folder on tmpfs for the roots (default: %(default)s)",
    )
    parser.add_argument(
        "--disk",
        type=Path,
        default=Path("/tmp"),
        help="a folder on the working disk: cluster.xml, state, disk roots (default: %(default)s)",
    )
    parser.add_argument(
        "--src",
        type=Path,
        help="measure the dim package in this folder (e.g. a copy of src/) "
        "instead of the installed one",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per command")
    parser.add_argument("--markdown", action="store_true", help="print Markdown for docs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--inmemory-worker", nargs=2, metavar=("CONFIG", "CSV"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.inmemory_worker:
        print(json.dumps(inmemory_worker(*args.inmemory_worker)))
        return 0

    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: not a list of numbers: {args.sizes!r}")
    if any(not 1 <= s <= MAX_SIZE for s in sizes):
        parser.error(f"--sizes: between 1 and {MAX_SIZE:,} nodes")
    args.flavours = [f.strip() for f in args.flavours.split(",") if f.strip()]
    if not args.flavours or any(f not in FLAVOURS for f in args.flavours):
        parser.error(f"--flavours: some of {', '.join(FLAVOURS)}")
    if args.repeat < 1 or args.repeat_big < 1:
        parser.error("--repeat and --repeat-big: at least 1")
    dim = Path(sys.executable).with_name("dim")
    if not dim.exists():
        found = shutil.which("dim")
        if found is None:
            parser.error("no dim command next to this Python nor on PATH: use .venv/bin/python")
        dim = Path(found)
    if args.src is not None:
        args.src = args.src.resolve()
        if not (args.src / "dim" / "__init__.py").is_file():
            parser.error(f"--src: {args.src} holds no dim package")
    for folder in (args.tmpfs, args.disk):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    if "tmpfs" not in mount_of(args.tmpfs).split()[1:2]:
        print(f"warning: {args.tmpfs} is not on tmpfs ({mount_of(args.tmpfs)})", file=sys.stderr)
    if "tmpfs" in mount_of(args.disk).split()[1:2]:
        print(f"warning: {args.disk} is on tmpfs, not a disk", file=sys.stderr)

    command = "python bench/layout.py " + " ".join(argv if argv is not None else sys.argv[1:])
    env = environment(args.disk, args.tmpfs, args.src)
    started = time.perf_counter()
    results = []
    try:
        for size in sizes:
            results.append(bench_size(size, args, str(dim), args.disk, args.tmpfs))
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    env["load"] += f", at end {_load()}"
    (print_markdown if args.markdown else print_text)(results, env, elapsed, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
