"""The lab's state folder on a CephFS (``dim lab up --store ceph``, issue 15).

The lab's Ceph cluster (`dim.lab.ceph`) runs in a namespace of its own on the lab's bridge
(``<lab namespace>-ceph``, address :data:`STORE_ADDRESS`), as a storage box of a site would:
``dim lab fail srv1`` cuts srv1's link, not the store's. Its folder is ``<lab>/ceph``, its
daemons recorded there by process id (``cluster.json``); a later ``up`` starts the same
cluster again, with the lab's images still on it, as the shared folder keeps them.

Order, so that everything dim writes goes through CephFS and every head can start::

    state = start(state, say)   # the namespace, the cluster (HEALTH_OK), the grace pool,
                                # then ceph-fuse on <lab>/state, before any image is imported
    ...                         # images, dim apply (the layout's <store>, store_element),
                                # the heads' ganesha (dim.lab.daemons: dim-grace first)
    stop(state)                 # after the daemons: unmount, the cluster, the namespace

The mount is recorded in ``lab.json`` as the daemon :data:`FUSE`, first of all, so that
``dim lab down`` stops it after every daemon that reads the state folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dim.errors import LabError
from dim.lab import ceph, network
from dim.lab.processes import alive
from dim.lab.state import LabState

KINDS = ("folder", "ceph")  # the shared state folder of the host (default), or a CephFS
STORE_HOST = "ceph"  # the cluster's namespace: <lab namespace>-ceph, on the bridge
STORE_ADDRESS = "10.77.0.200"  # beside the servers' 10.77.0.K and 10.77.0.(100+K)
STORE_NAME = "lab"  # the <store>, and the namespace of its grace database
RECOVERY_POOL = "dim_nfs"
FUSE = "ceph-fuse"  # the mount's name among the lab's daemons
GANESHA_CEPH = Path("/usr/lib/x86_64-linux-gnu/ganesha/libfsalceph.so")


def cluster_folder(folder: Path) -> Path:
    return folder / "ceph"


def ceph_conf(folder: Path) -> Path:
    """The lab's ceph.conf, which its layout's ``<store>`` names."""
    return cluster_folder(folder) / "ceph.conf"


def store_element(conf: Path, heads: str) -> str:
    """The lab's ``<store>`` line: the CephFS root as the state folder, ``heads`` (a node
    set of servers) its ganesha heads with rados_cluster recovery, ``conf`` their
    ceph.conf (the cluster's, which names client.dim's keyring)."""
    return (
        f'  <store name="{STORE_NAME}" cephfs="{ceph.FS}" servers="{heads}" root="/"\n'
        f'         ceph-conf="{conf}" recovery-pool="{RECOVERY_POOL}"/>\n'
    )


def check_available() -> None:
    """`LabError` naming what is missing for a lab on CephFS, before anything is made."""
    missing = [name for name in ceph.PROGRAMS if shutil.which(name) is None]
    missing += [p for p in ("ceph-fuse", "ganesha-rados-grace") if shutil.which(p) is None]
    if not GANESHA_CEPH.exists():
        missing.append(f"ganesha's CephFS back end ({GANESHA_CEPH.name})")
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse")
    if missing:
        raise LabError(
            f"a lab on CephFS needs {', '.join(missing)}",
            hint=f"apt-get install {ceph.PACKAGES} ceph-fuse nfs-ganesha-ceph "
            "nfs-ganesha-rados-grace",
        )


def start(state: LabState, say: Callable[[str], None]) -> LabState:
    """The cluster in its namespace, healthy, the heads' grace pool granted, and the CephFS
    mounted on the state folder; the state with the mount recorded (and saved)."""
    folder = state.folder
    namespace = network.add_server(state.namespace, STORE_HOST, STORE_ADDRESS)
    where = cluster_folder(folder)
    saved = ceph.recorded(where)
    if saved is not None and saved.namespace != namespace:
        ceph.remove(saved)  # made for another lab namespace: its monitor's address is there
    say(f"store: Ceph cluster in {namespace} ({STORE_ADDRESS})")
    cluster = ceph.start(where, host=STORE_ADDRESS, namespace=namespace)
    ceph.wait_healthy(cluster)
    ceph.grant_recovery(cluster, RECOVERY_POOL, STORE_NAME)
    # every head starts afresh: members of an earlier up (other servers, or stopped in a
    # grace) would keep the new heads in grace
    ceph.clear_recovery(cluster, RECOVERY_POOL, STORE_NAME)
    mount_point = folder / "state"
    _clear_stale_mount(mount_point)
    mount = ceph.mount_fuse(cluster, mount_point)
    state = state.with_daemon(dataclasses.replace(mount.process, name=FUSE))
    state.save()
    say(f"store: CephFS {ceph.FS} mounted on {mount_point} (ceph-fuse, pid {mount.process.pid})")
    return state


def stop(state: LabState) -> None:
    """Unmount the state folder, stop the cluster by its process ids, delete its namespace.
    What was never started is skipped: ``down`` calls this after a failed ``up`` too."""
    process = state.daemon(FUSE)
    if process is not None:
        ceph.unmount(ceph.Mount(str(state.folder / "state"), process))
    cluster = ceph.running(cluster_folder(state.folder))
    if cluster is not None:
        _evict_clients(cluster)
        ceph.stop(cluster)
    network.delete(network.server_namespace(state.namespace, STORE_HOST))


def fail_osd(state: LabState, name: str, *, say: Callable[[str], None] | None = None) -> None:
    """Kill the store's OSD ``name`` (``osd.1``) by its process id, as a failed disk would
    stop it; its copies' work goes to the two left (3 copies, 2 needed: the CephFS stays
    writable)."""
    ceph.kill(running_cluster(state.folder), name)
    if say:
        say(f"store: {name} killed")


def restore_osd(state: LabState, name: str, *, say: Callable[[str], None] | None = None) -> None:
    """Start the store's OSD ``name`` again after `fail_osd`; it catches up by itself."""
    cluster = ceph.revive(running_cluster(state.folder), name)
    if say:
        pid = next(d.pid for d in cluster.daemons if d.name == name)
        say(f"store: {name} started again (pid {pid})")


def running_cluster(folder: Path) -> ceph.Cluster:
    """The Ceph cluster of the lab in ``folder``, which must run."""
    cluster = ceph.running(cluster_folder(folder))
    if cluster is None:
        raise LabError("the lab's Ceph cluster does not run", hint="dim lab up --store ceph")
    return cluster


def status(state: LabState) -> dict[str, Any]:
    """The store for ``dim lab status``: its cluster's health, and the state folder's mount."""
    mount = state.folder / "state"
    process = state.daemon(FUSE)
    report: dict[str, Any] = {
        "kind": "ceph",
        "cluster": str(cluster_folder(state.folder)),
        "mount": str(mount),
        "mounted": os.path.ismount(mount),
        "fuse_pid": process.pid if process else None,
        "fuse_running": bool(process and alive(process.pid)),
    }
    cluster = ceph.running(cluster_folder(state.folder))
    report["health"] = _health(cluster) if cluster is not None else "STOPPED"
    return report


def _evict_clients(cluster: ceph.Cluster) -> None:
    """End every CephFS session the stopped heads left, before the cluster stops.

    ganesha's CephFS back end opens reclaimable sessions (one per export), and a stopped
    ganesha leaves them open: the MDS's journal keeps them, and a restarted MDS waited in
    ``clientreplay`` for those heads to reclaim them, never active, so that the next ``up``
    (which starts the heads only once the MDS is active) failed after 120 s. Measured in
    the lab: evicted there, the MDS became active at once.
    """
    with contextlib.suppress(LabError):
        ceph.ceph(cluster, "tell", "mds.a", "client", "evict", timeout=30.0)


def _health(cluster: ceph.Cluster) -> str:
    """``ceph health``'s first line, or why there is none (a monitor that does not answer
    must not hang ``dim lab status``)."""
    try:
        text = ceph.ceph(cluster, "health", "--connect-timeout", "5", timeout=10.0)
    except LabError as error:
        return f"no answer ({error.message[:80]})"
    return text.strip().splitlines()[0] if text.strip() else "no answer"


def _clear_stale_mount(path: Path) -> None:
    """A ceph-fuse killed without unmounting leaves its mount point unusable ("Transport
    endpoint is not connected"): detach it before mounting again."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return
    except OSError:
        subprocess.run(["fusermount", "-u", "-z", str(path)], check=False, capture_output=True)
