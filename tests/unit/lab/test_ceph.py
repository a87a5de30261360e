"""dim.lab.ceph's own logic: ceph.conf, cluster.json, and stopping only the cluster's own
processes. The cluster itself is proven in tests/integration/test_ceph_store.py."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from dim.lab import ceph
from dim.lab.processes import Process, alive


def a_cluster(folder: Path, host: str = "127.0.0.1") -> ceph.Cluster:
    return ceph.Cluster(str(folder), "a7c2f2ae-0000-4000-8000-000000000001", host, 3300)


def settings(conf: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line)


def test_conf_keeps_every_path_and_the_monitor_in_the_cluster_folder(tmp_path: Path) -> None:
    cluster = a_cluster(tmp_path / "c")
    conf = settings(ceph.render_conf(cluster))
    assert conf["mon_host"] == "v2:127.0.0.1:3300"
    assert conf["public_addr"] == "127.0.0.1"
    paths = [v for k, v in conf.items() if k.endswith(("_data", "_dir", "_file", "socket"))]
    assert paths and all(p.startswith(f"{tmp_path}/c/") for p in paths), paths
    assert conf["auth_client_required"] == conf["auth_cluster_required"] == "cephx"


def test_an_ipv6_monitor_is_bracketed_and_binds_ipv6(tmp_path: Path) -> None:
    cluster = a_cluster(tmp_path, host="fd77::1")
    conf = settings(ceph.render_conf(cluster))
    assert conf["mon_host"] == "v2:[fd77::1]:3300"
    assert conf["ms_bind_ipv6"] == "true"


def test_a_cluster_record_round_trips_through_cluster_json(tmp_path: Path) -> None:
    cluster = dataclasses.replace(
        a_cluster(tmp_path), namespace="dimlab", daemons=(Process("mon.a", 42, "l"),)
    )
    ceph._save(cluster)
    assert ceph._load(tmp_path) == cluster


def test_stop_leaves_alone_a_process_whose_id_was_reused(tmp_path: Path) -> None:
    """A pid in cluster.json that now belongs to another program (not on this cluster's
    ceph.conf) is not signalled, and the record forgets it."""
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        cluster = dataclasses.replace(
            a_cluster(tmp_path), daemons=(Process("osd.0", stranger.pid, "l"),)
        )
        ceph._save(cluster)
        assert ceph.running(tmp_path) is None
        ceph.stop(cluster)
        assert alive(stranger.pid)
        assert ceph._load(tmp_path).daemons == ()
    finally:
        stranger.kill()
        stranger.wait()
