"""A throwaway Ceph cluster in a folder of its own: one monitor, one manager, one metadata
server and three OSDs, with a CephFS, for the tests and the lab (issue 15).

Debian 12's packages (ceph 16.2), no containers, no cephadm, no systemd: each daemon runs in
the foreground, in a session of its own, and is stopped by its process id. Everything lives in
the folder: ``ceph.conf``, the keyrings, the monitor's store, each OSD's data and its BlueStore
on a sparse file, the logs and admin sockets, and ``cluster.json`` (address, port, fsid and the
daemons' process ids), so that a cluster stopped is started again as it was::

    cluster = start(Path("/var/tmp/dim-ceph"))   # made the first time: keys, OSDs, a CephFS
    wait_healthy(cluster)                        # HEALTH_OK, every PG active+clean
    mount = mount_fuse(cluster, Path("/mnt/store"))   # ceph-fuse, as client.dim
    unmount(mount)
    stop(cluster)                                # the daemons, by process id
    remove(cluster)                              # stopped, and the folder deleted

The monitor listens on one address, messenger v2 only: loopback with a free port by default,
or with ``namespace`` an address inside that network namespace (the lab's), port 3300. Cephx
is on; the client ``client.dim`` may do what a ganesha head or dim's writer needs on the
CephFS and nothing more (``ceph fs authorize``). The memory settings (:data:`MEMORY`) are
small, the OSDs' target at Ceph's floor: idle, the six daemons hold about 540 MiB together
(the manager 300 of it); under a loop of 10,000 small files an OSD grew to 840 MiB and the
MDS to 530 MiB. docs/ceph-lab.md says why each setting is there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dim.errors import LabError
from dim.lab import netns
from dim.lab.processes import Process, alive, sleep_until
from dim.lab.processes import stop as stop_process

PROGRAMS = ("ceph-mon", "ceph-mgr", "ceph-mds", "ceph-osd", "ceph", "ceph-authtool", "monmaptool")
PACKAGES = "ceph-mon ceph-mgr ceph-mds ceph-osd ceph-common"
OSDS = 3
FS = "dimfs"
CLIENT = "dim"  # client.dim: the key a ganesha head and dim's writer use
DEFAULT_PORT = 3300  # the monitor's, in a namespace of its own; on the host a free one
BLOCK_SIZE = 8 << 30  # each OSD's BlueStore file: sparse, it costs what is written
MADE = "made"  # written in the folder once the cluster and its CephFS are made
PG_NUM = 16  # per CephFS pool: 32 PGs x 3 copies over 3 OSDs, no autoscaler
RECOVERY_PG_NUM = 8  # ganesha's grace database: a few small objects
# ceph-fuse 16.2 loses a hard link from its own cache when the file's other name is renamed
# over (live -> the version's name vanishes for dim a few seconds later, while every other
# client still sees it); with no inode cache it asks the MDS, which is right. See
# docs/images.md, "On CephFS".
FUSE_OPTIONS = ("--client_cache_size=0",)

# Settings of ceph.conf's [global] that keep the cluster small and its health OK on one
# machine; docs/ceph-lab.md gives the reason for each.
MEMORY = {
    "osd_memory_target": "939524096",  # 896 MiB: Ceph's floor for the target
    "bluestore_cache_autotune": "false",
    "bluestore_cache_size": "67108864",  # 64 MiB, what the OSD caches
    "osd_op_num_shards": "1",
    "osd_op_num_threads_per_shard": "2",
    "mon_memory_target": "134217728",
    "mds_cache_memory_limit": "67108864",
    "rocksdb_cache_size": "33554432",
    "ms_async_op_threads": "2",
}
HEALTH = {
    "osd_crush_chooseleaf_type": "0",  # three OSDs on one host: copies go to OSDs, not hosts
    "osd_pool_default_size": "3",
    "osd_pool_default_min_size": "2",
    "osd_pool_default_pg_autoscale_mode": "off",
    "auth_allow_insecure_global_id_reclaim": "false",
    "mon_data_avail_warn": "5",  # a test machine's disk is often more than 70 % full
    "mon_allow_pool_delete": "true",
    "mgr_initial_modules": "",
    "bluestore_block_create": "true",
    "bluestore_fsck_on_mkfs": "false",
    "bluestore_fsck_on_mount": "false",
}


@dataclass(frozen=True, slots=True)
class Cluster:
    """A cluster of a folder: where its monitor listens, and its daemons once started."""

    folder: str
    fsid: str
    host: str
    port: int
    namespace: str | None = None
    daemons: tuple[Process, ...] = ()

    @property
    def conf(self) -> Path:
        return Path(self.folder) / "ceph.conf"

    @property
    def monitor(self) -> str:
        """The monitor's address as clients name it (``mon_host``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"v2:{host}:{self.port}"

    def keyring(self, name: str) -> Path:
        """The keyring of the client ``name`` (``admin``, ``dim``)."""
        return Path(self.folder) / f"client.{name}.keyring"


@dataclass(frozen=True, slots=True)
class Mount:
    """A CephFS mount made by `mount_fuse`: its folder and the ceph-fuse process."""

    path: str
    process: Process


def available() -> bool:
    """Whether Debian's Ceph daemons and tools are installed (:data:`PACKAGES`)."""
    return all(shutil.which(name) for name in PROGRAMS)


def render_conf(cluster: Cluster) -> str:
    """ceph.conf of ``cluster``: every path in its folder, the monitor's one address."""
    folder = cluster.folder
    settings = {
        "fsid": cluster.fsid,
        "mon_host": cluster.monitor,
        "public_addr": cluster.host,
        "ms_bind_msgr1": "false",
        "ms_bind_msgr2": "true",
        "ms_bind_ipv6": "true" if ":" in cluster.host else "false",
        "auth_cluster_required": "cephx",
        "auth_service_required": "cephx",
        "auth_client_required": "cephx",
        "run_dir": f"{folder}/run",
        "admin_socket": f"{folder}/run/$name.asok",
        "log_file": f"{folder}/logs/$name.log",
        "crash_dir": f"{folder}/crash",
        "mon_data": f"{folder}/$name",
        "osd_data": f"{folder}/$name",
        "mds_data": f"{folder}/$name",
        "mgr_data": f"{folder}/$name",
        "bluestore_block_size": str(BLOCK_SIZE),
        **HEALTH,
        **MEMORY,
    }
    lines = ["# a throwaway cluster of dim's lab (dim.lab.ceph)", "[global]"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    lines += ["[mon]", "keyring = $mon_data/keyring", "[osd]", "keyring = $osd_data/keyring"]
    lines += ["[mds]", "keyring = $mds_data/keyring", "[mgr]", "keyring = $mgr_data/keyring"]
    lines += [
        "[client]",
        f"keyring = {folder}/$name.keyring",
        f"log_file = {folder}/logs/$name.log",
    ]
    return "\n".join(lines) + "\n"


def start(
    folder: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    namespace: str | None = None,
    timeout: float = 120.0,
) -> Cluster:
    """Start the cluster of ``folder``, made there first if need be; returns once the CephFS
    has an active metadata server (`wait_healthy` waits for every PG too).

    A cluster made before keeps its fsid, address and port; the arguments apply to a new one.
    """
    folder = Path(folder).absolute()
    saved = _load(folder)
    made = (folder / MADE).exists()
    if saved is not None and not made:
        raise LabError(
            f"the Ceph cluster in {folder} was never fully made (an earlier start failed)",
            hint=f"its logs are in {folder}/logs; remove the folder and start again",
        )
    if saved is None:
        if port is None:
            port = DEFAULT_PORT if namespace else netns.free_port(host)
        saved = Cluster(str(folder), str(uuid.uuid4()), host, port, namespace)
        _make_folder(saved)
    cluster = replace(saved, daemons=())
    try:
        if not made:
            _make_monitor(cluster)
        cluster = _launch(cluster, "mon.a", ["ceph-mon", "-i", "a"])
        _save(cluster)
        cluster = _launch(cluster, "mgr.x", _with_key(cluster, "mgr.x", made))
        cluster = _start_osds(cluster, made)
        cluster = _launch(cluster, "mds.a", _with_key(cluster, "mds.a", made))
        _save(cluster)
        if not made:
            _make_filesystem(cluster)
            (folder / MADE).touch()
        if not sleep_until(lambda: _fs_active(cluster), timeout, step=0.3):
            raise LabError(f"CephFS of {folder} has no active MDS after {timeout:.0f} s")
    except BaseException:
        stop(cluster)
        raise
    return cluster


def recorded(folder: Path) -> Cluster | None:
    """The cluster of ``folder`` as ``cluster.json`` records it, running or not."""
    return _load(Path(folder).absolute())


def running(folder: Path) -> Cluster | None:
    """The cluster of ``folder`` as ``cluster.json`` records it, if any of its daemons runs."""
    cluster = recorded(folder)
    if cluster is None or not any(_ours(cluster, d) for d in cluster.daemons):
        return None
    return cluster


def stop(cluster: Cluster) -> None:
    """Stop the daemons of ``cluster`` by their process ids, in reverse order, and only those
    still running with this cluster's ceph.conf (ids are reused)."""
    for daemon in reversed(cluster.daemons):
        if _ours(cluster, daemon):
            stop_process(daemon.pid, timeout=15.0)
        _reap(daemon.pid)
    _save(replace(cluster, daemons=()))


def kill(cluster: Cluster, name: str) -> None:
    """SIGKILL the daemon ``name`` (``osd.1``) as a crash or a pulled disk would end it: no
    goodbye to the monitor, whose peers find it gone; `revive` starts it again."""
    daemon = _daemon(cluster, name)
    if _ours(cluster, daemon):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)
        sleep_until(lambda: not alive(daemon.pid), 10.0, step=0.05)
        _reap(daemon.pid)


def revive(cluster: Cluster, name: str) -> Cluster:
    """Start the daemon ``name`` again if it does not run (after `kill`); the cluster with
    its new process id, saved."""
    daemon = _daemon(cluster, name)
    if _ours(cluster, daemon):
        return cluster
    kind, _, ident = name.partition(".")
    cluster = _launch(cluster, name, [f"ceph-{kind}", "-i", ident])
    _save(cluster)
    return cluster


def _daemon(cluster: Cluster, name: str) -> Process:
    for daemon in cluster.daemons:
        if daemon.name == name:
            return daemon
    names = ", ".join(d.name for d in cluster.daemons)
    raise LabError(f"the lab's Ceph cluster has no daemon {name!r}", hint=f"its daemons: {names}")


def remove(cluster: Cluster) -> None:
    """Stop the cluster of ``cluster``'s folder if it runs, and delete the folder."""
    current = running(Path(cluster.folder)) or cluster
    stop(current)
    shutil.rmtree(cluster.folder, ignore_errors=True)


def ceph(cluster: Cluster, *args: str, user: str = "admin", timeout: float = 60.0) -> str:
    """Run the ``ceph`` tool on the cluster as ``client.<user>``; its standard output."""
    return _run(cluster, ["ceph", "--name", f"client.{user}", *args], timeout=timeout)


def status(cluster: Cluster) -> dict[str, Any]:
    """``ceph status`` as JSON."""
    return json.loads(ceph(cluster, "status", "--format", "json"))


def healthy(cluster: Cluster) -> bool:
    """HEALTH_OK, every PG active+clean, and the CephFS's MDS active."""
    try:
        report = status(cluster)
    except LabError:
        return False
    pgs = report["pgmap"]
    clean = sum(
        s["count"] for s in pgs.get("pgs_by_state", ()) if s["state_name"] == "active+clean"
    )
    fsmap = report.get("fsmap", {})
    return (
        report["health"]["status"] == "HEALTH_OK"
        and pgs["num_pgs"] > 0
        and clean == pgs["num_pgs"]
        and fsmap.get("up", 0) >= 1
    )


def wait_healthy(cluster: Cluster, timeout: float = 120.0) -> None:
    """Wait until `healthy`; `LabError` with ``ceph health detail`` if not within ``timeout``."""
    if sleep_until(lambda: healthy(cluster), timeout, step=0.5):
        return
    detail = ceph(cluster, "health", "detail").strip().splitlines()[:6]
    raise LabError(
        f"Ceph cluster of {cluster.folder} not healthy after {timeout:.0f} s: "
        + " | ".join(detail),
        hint=f"its logs: {cluster.folder}/logs",
    )


def mount_fuse(
    cluster: Cluster,
    where: Path,
    *,
    user: str = CLIENT,
    timeout: float = 30.0,
    options: tuple[str, ...] = FUSE_OPTIONS,
    namespace: str | None = None,
) -> Mount:
    """Mount the CephFS on ``where`` with ceph-fuse as ``client.<user>``, in the foreground
    of a process of its own (stopped by `unmount`); ``options``: ceph-fuse's (the default
    switches its inode cache off, :data:`FUSE_OPTIONS`); ``namespace``: the network
    namespace it talks from, the cluster's by default."""
    where.mkdir(parents=True, exist_ok=True)
    name = f"ceph-fuse.{where.name}"
    argv = ["ceph-fuse", "-f", "--conf", str(cluster.conf), "--name", f"client.{user}"]
    argv += ["--client_fs", FS, *options, str(where)]
    log = Path(cluster.folder) / "logs" / f"{name}.out"
    # in the cluster's network namespace but the host's mount namespace: a FUSE mount made
    # through ``ip netns exec`` would stay in that command's private mount namespace
    process = _popen(argv, log, namespace=namespace or cluster.namespace, mounts=True)
    mount = Mount(str(where), Process(name, process, str(log)))
    if not sleep_until(lambda: os.path.ismount(where), timeout, step=0.1):
        unmount(mount)
        raise LabError(f"ceph-fuse did not mount {where}: {_tail(log)}", hint=f"its log: {log}")
    return mount


def unmount(mount: Mount) -> None:
    """Unmount a ceph-fuse mount, then stop its process by id (which unmounts too, where
    fusermount is missing)."""
    if os.path.ismount(mount.path) and shutil.which("fusermount"):
        subprocess.run(["fusermount", "-u", "-z", mount.path], check=False, capture_output=True)
    stop_process(mount.process.pid)
    _reap(mount.process.pid)


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Collect a process this one started and stopped, lest it stay a zombie meanwhile.

    Waits a little: a many-threaded daemon's main thread shows as a zombie (`alive` is False)
    while its other threads still exit, and until they have, there is nothing to collect.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not this process's child, or collected already
            return
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.05)


# -- the steps -------------------------------------------------------------------------------


def _make_folder(cluster: Cluster) -> None:
    folder = Path(cluster.folder)
    for sub in ("run", "logs", "crash"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # the keyrings are in it
    cluster.conf.write_text(render_conf(cluster))
    _save(cluster)


def _make_monitor(cluster: Cluster) -> None:
    """The monitor's keyring (mon. and client.admin), its map and its store."""
    folder = Path(cluster.folder)
    seed, admin = folder / "mon-seed.keyring", cluster.keyring("admin")
    _run(
        cluster,
        [
            "ceph-authtool",
            "--create-keyring",
            str(seed),
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        ],
        network=False,
    )
    caps = [arg for kind in ("mon", "osd", "mds", "mgr") for arg in ("--cap", kind, "allow *")]
    _run(
        cluster,
        ["ceph-authtool", "--create-keyring", str(admin), "--gen-key", "-n", "client.admin", *caps],
        network=False,
    )
    _run(cluster, ["ceph-authtool", str(seed), "--import-keyring", str(admin)], network=False)
    monmap = folder / "monmap"
    _run(
        cluster,
        [
            "monmaptool",
            "--create",
            "--clobber",
            "--fsid",
            cluster.fsid,
            "--addv",
            "a",
            f"[{cluster.monitor}]",
            str(monmap),
        ],
        network=False,
    )
    _run(
        cluster,
        ["ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", str(seed)],
        network=False,
    )
    seed.unlink()
    monmap.unlink()


def _with_key(cluster: Cluster, name: str, made: bool) -> list[str]:
    """The command that starts the manager or MDS ``name``, its key made first if need be."""
    kind, _, ident = name.partition(".")
    if not made:
        caps = {
            "mgr": ["mon", "allow profile mgr", "mds", "allow *", "osd", "allow *"],
            "mds": [
                "mon",
                "allow profile mds",
                "mgr",
                "allow profile mds",
                "mds",
                "allow",
                "osd",
                "allow *",
            ],
        }[kind]
        keyring = Path(cluster.folder) / name / "keyring"
        keyring.parent.mkdir(exist_ok=True)
        ceph(cluster, "auth", "get-or-create", name, *caps, "-o", str(keyring))
    return [f"ceph-{kind}", "-i", ident]


def _start_osds(cluster: Cluster, made: bool) -> Cluster:
    """Three OSDs, made in parallel the first time (``ceph osd new``, then BlueStore's mkfs on
    a sparse file), started each in the foreground."""
    if not made:
        with ThreadPoolExecutor(OSDS) as pool:
            list(pool.map(lambda osd: _make_osd(cluster, osd), range(OSDS)))
    for osd in range(OSDS):
        cluster = _launch(cluster, f"osd.{osd}", ["ceph-osd", "-i", str(osd)])
    _save(cluster)
    return cluster


def _make_osd(cluster: Cluster, osd: int) -> None:
    data = Path(cluster.folder) / f"osd.{osd}"
    data.mkdir(exist_ok=True)
    osd_uuid = str(uuid.uuid4())
    secret = _run(cluster, ["ceph-authtool", "--gen-print-key"], network=False).strip()
    request = data / "new.json"
    request.write_text(json.dumps({"cephx_secret": secret}))
    made = ceph(cluster, "osd", "new", osd_uuid, str(osd), "-i", str(request)).strip()
    request.unlink()
    if made != str(osd):
        raise LabError(f"ceph osd new gave OSD {made!r}, expected {osd}")
    _run(
        cluster,
        ["ceph-osd", "-i", str(osd), "--mkfs", "--osd-uuid", osd_uuid, "--key", secret],
        timeout=120.0,  # in the namespace: mkfs asks the monitor for its map
    )
    keyring = data / "keyring"  # ceph-osd --mkfs takes the key but does not write it
    keyring.write_text(f"[osd.{osd}]\n\tkey = {secret}\n")
    keyring.chmod(0o600)


def grant_recovery(cluster: Cluster, pool: str, namespace: str, *, user: str = CLIENT) -> None:
    """The pool of ganesha's ``rados_cluster`` grace database (made if missing), and
    ``client.<user>``'s right to read and write it in ``namespace`` alone, beside its CephFS
    rights, and ``osd blocklist`` for a head to fence a dead peer and lift its own fence
    (dim.services.vrrp): what a head of a store needs (docs/ha.md). Both are the same again
    when run again."""
    pools = json.loads(ceph(cluster, "osd", "pool", "ls", "--format", "json"))
    if pool not in pools:
        ceph(cluster, "osd", "pool", "create", pool, str(RECOVERY_PG_NUM), str(RECOVERY_PG_NUM))
        ceph(cluster, "osd", "pool", "application", "enable", pool, "nfs")
    ceph(
        cluster,
        "auth", "caps", f"client.{user}",
        "mds", f"allow rw fsname={FS}",
        "mon", f'allow r fsname={FS}, allow command "osd blocklist"',
        "osd", f"allow rw tag cephfs data={FS}, allow rw pool={pool} namespace={namespace}",
    )  # fmt: skip


def evict_heads(cluster: Cluster) -> list[int]:
    """End the CephFS sessions that stopped ganesha heads left; the ids of those evicted.

    ganesha's CephFS back end names each of its sessions ``ganesha-<nodeid>-<export id>`` and
    asks the MDS to keep them 300 s after it goes silent, for a restarted head to reclaim.
    A head that will not come back (a test's, a lab's) leaves them behind: a restarted MDS
    then waits for them, and other clients' opens of files they held wait for their timeout.
    Other clients' sessions (ceph-fuse mounts) are left alone."""
    sessions = json.loads(ceph(cluster, "tell", "mds.a", "session", "ls", "--format", "json"))
    heads = [
        s["id"]
        for s in sessions
        if str(s.get("client_metadata", {}).get("uuid", "")).startswith("ganesha-")
    ]
    for session in heads:
        ceph(cluster, "tell", "mds.a", "client", "evict", f"id={session}", timeout=30.0)
    return heads


def clear_recovery(cluster: Cluster, pool: str, namespace: str) -> None:
    """Delete every object of ``namespace`` in ``pool``: ganesha's grace database and its
    heads' client records, for heads that all start afresh with no client to reclaim. A
    member left there with its NEED flag (a head stopped during a grace, never started
    again) would hold every other head in grace for good."""
    rados = ["rados", "--name", "client.admin", "--pool", pool, "--namespace", namespace]
    for name in _run(cluster, [*rados, "ls"]).split():
        _run(cluster, [*rados, "rm", name])


def _make_filesystem(cluster: Cluster) -> None:
    """The CephFS's pools, the file system, and client.dim's key (least rights on it)."""
    for pool in ("metadata", "data"):
        ceph(cluster, "osd", "pool", "create", f"{FS}_{pool}", str(PG_NUM), str(PG_NUM))
    ceph(cluster, "fs", "new", FS, f"{FS}_metadata", f"{FS}_data")
    # one MDS: a standby would be a seventh daemon; its absence is no warning then
    ceph(cluster, "fs", "set", FS, "standby_count_wanted", "0")
    keyring = ceph(cluster, "fs", "authorize", FS, f"client.{CLIENT}", "/", "rw")
    path = cluster.keyring(CLIENT)
    path.write_text(keyring)
    path.chmod(0o600)


def _fs_active(cluster: Cluster) -> bool:
    try:
        report = json.loads(ceph(cluster, "fs", "status", FS, "--format", "json", timeout=15))
    except (LabError, ValueError):
        return False
    return any(m.get("state") == "active" for m in report.get("mdsmap", ()))


def _launch(cluster: Cluster, name: str, argv: list[str]) -> Cluster:
    """Start the daemon ``name`` in the foreground (``-f``: it logs to its file) and record it."""
    command = [*argv, "-f", "--conf", str(cluster.conf)]
    log = Path(cluster.folder) / "logs" / f"{name}.out"
    pid = _popen(command, log, namespace=cluster.namespace)
    daemons = tuple(d for d in cluster.daemons if d.name != name)
    return replace(cluster, daemons=(*daemons, Process(name, pid, str(log))))


def _popen(argv: list[str], log: Path, *, namespace: str | None, mounts: bool = False) -> int:
    """Start ``argv`` detached, in a session of its own, in ``namespace`` if given (as every
    lab daemon, `dim.lab.netns.start`; ``mounts``: through nsenter instead, which keeps the
    host's mount namespace); its process id."""
    if namespace and not mounts:
        return netns.start(namespace, argv, log=log, append=True).pid
    if namespace:
        argv = ["nsenter", f"--net=/run/netns/{namespace}", *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def _run(cluster: Cluster, argv: list[str], *, network: bool = True, timeout: float = 60.0) -> str:
    """Run a Ceph tool on the cluster's ceph.conf (in its namespace when it talks to it)."""
    command = [*argv, "--conf", str(cluster.conf)]
    if network and cluster.namespace:
        command = ["ip", "netns", "exec", cluster.namespace, *command]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{argv[0]} {argv[1]} did not answer within {timeout:.0f} s") from exc
    if result.returncode != 0:
        shown = " ".join(argv[:4])
        raise LabError(f"{shown} failed in {cluster.folder}: {result.stderr.strip()[-400:]}")
    return result.stdout


def _ours(cluster: Cluster, daemon: Process) -> bool:
    """Whether ``daemon`` still runs with this cluster's ceph.conf."""
    try:
        command = Path(f"/proc/{daemon.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return alive(daemon.pid) and str(cluster.conf).encode() in command


def _load(folder: Path) -> Cluster | None:
    try:
        data = json.loads((folder / "cluster.json").read_text())
    except FileNotFoundError:
        return None
    daemons = tuple(Process(**d) for d in data.pop("daemons"))
    return Cluster(**data, daemons=daemons)


def _save(cluster: Cluster) -> None:
    path = Path(cluster.folder) / "cluster.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(cluster), indent=1))
    os.replace(temporary, path)


def _tail(path: Path, lines: int = 3) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
        return " | ".join(text) or "no output"
    return "no log"
