"""The semantics dim's image store relies on, on a real CephFS (issue 15).

`dim.lab.ceph` starts a throwaway cluster (one monitor, one manager, one MDS, three OSDs on
sparse files, cephx) in a folder of the module's; two ceph-fuse mounts of its CephFS, as
``client.dim``, play two machines (dim writing on one image server, a ganesha head reading on
another)::

    .venv/bin/pytest tests/integration/test_ceph_store.py

What the store needs, each proved here through the first mount and, where another machine
would see it, the second: hard links (one inode, its link count), a rename over an existing
file replacing it at once for every reader while an open handle keeps the old content,
extended attributes (``user.*`` and ``trusted.*``: dim copies an image's attributes as they
are), fsync'd content and a file closed on one client read whole on the other. And the cluster
stops by process id, leaving no daemon behind, and starts again on its own data.

The cluster takes about 15 s to make and reach HEALTH_OK on an idle machine of 2 cores. Needs
root and Debian's ceph packages (scripts/bootstrap installs them): skips without them, fails
under ``CI=true``. The kernel's CephFS client is not used: this machine's kernel has none.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dim.lab import ceph
from dim.lab.netns import Segment, run, tcp_listening
from dim.lab.processes import alive, sleep_until
from tests.conftest import require, require_binary
from tests.integration.conftest import CEPH_NODE, CEPH_SERVER

pytestmark = pytest.mark.integration


SERVER, CLIENT = CEPH_SERVER, CEPH_NODE  # the cluster's and the head's, a node's
NFS_PORT = 2049
CAPS_RELEASE_DELAY = 5  # s: ceph's client_caps_release_delay
T0 = 1_700_000_000_123_456_789
CEPH_FSAL = Path("/usr/lib/x86_64-linux-gnu/ganesha/libfsalceph.so")


@pytest.fixture(scope="module")
def network(ceph_network) -> Segment:
    return ceph_network


@pytest.fixture(scope="module")
def cluster(ceph_cluster) -> ceph.Cluster:
    return ceph_cluster


@pytest.fixture(scope="module")
def mounts(cluster, tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """Two ceph-fuse clients of the same CephFS: a writer and a reader."""
    base = tmp_path_factory.mktemp("mounts")
    first = ceph.mount_fuse(cluster, base / "writer")
    try:
        second = ceph.mount_fuse(cluster, base / "reader")
    except BaseException:
        ceph.unmount(first)
        raise
    try:
        yield Path(first.path), Path(second.path)
    finally:
        ceph.unmount(second)
        ceph.unmount(first)


@pytest.fixture
def folders(mounts, request) -> tuple[Path, Path]:
    """A folder of the test's own, as each client sees it."""
    name = request.node.name
    writer, reader = mounts
    (writer / name).mkdir()
    return writer / name, reader / name


def test_a_hard_link_is_the_same_inode_and_counts_its_links_on_both_clients(folders):
    here, there = folders
    (here / "version-1").write_bytes(b"libc 2.36\n")
    os.link(here / "version-1", here / "version-2")
    os.link(here / "version-1", here / "live")
    mine = os.stat(here / "live")
    assert mine.st_ino == os.stat(here / "version-1").st_ino == os.stat(here / "version-2").st_ino
    assert mine.st_nlink == 3
    theirs = os.stat(there / "version-2")
    assert (theirs.st_ino, theirs.st_nlink) == (mine.st_ino, 3)
    (here / "version-1").unlink()
    assert os.stat(there / "live").st_nlink == 2
    assert (there / "live").read_bytes() == b"libc 2.36\n"


def test_the_other_name_of_a_file_renamed_over_stays_for_the_client_that_renamed(folders):
    """What a sync does (dim.images.commit): the staging folder renamed to version 1, its
    file hard-linked into live; version 2 the same, its file linked to a temporary name in
    live and renamed over live's. ceph-fuse 16.2 with its inode cache then lost version 1's
    name from its own view once it had released the old inode's capabilities
    (``client_caps_release_delay``, 5 s): a lookup said ENOENT after 10 s idle, in 4 of 5
    such sequences, while the MDS and other clients had it. `ceph.mount_fuse` mounts without
    that cache: 5 of 5 kept."""
    here, there = folders
    (here / "live/etc").mkdir(parents=True)
    for version in (1, 2):
        (here / "staging/etc").mkdir(parents=True)
        (here / "staging/etc/motd").write_bytes(f"version {version}\n".encode())
        os.rename(here / "staging", here / f"v{version}")
    os.link(here / "v1/etc/motd", here / "live/etc/motd")
    os.link(here / "v2/etc/motd", here / "live/etc/.motd.dim-1")
    os.rename(here / "live/etc/.motd.dim-1", here / "live/etc/motd")
    os.utime(here / "live/etc", ns=(T0, T0))
    time.sleep(2 * CAPS_RELEASE_DELAY)
    # a lookup first, and by the client that renamed: a listing would refresh its view
    for client in (here, there):
        assert (client / "v1/etc/motd").exists(), client
        assert (client / "v1/etc/motd").read_bytes() == b"version 1\n"
        assert os.stat(client / "v1/etc/motd").st_nlink == 1
    assert (here / "live/etc/motd").read_bytes() == b"version 2\n"


def test_a_rename_over_a_file_replaces_it_whole_and_an_open_handle_keeps_the_old(folders):
    here, there = folders
    (here / "libc.so").write_bytes(b"old" * 4096)
    # a running process on a node, its library loaded before the upgrade
    with open(there / "libc.so", "rb") as held:
        seen = _replace_while_reading(here / "libc.so", there / "libc.so", 20)
        assert held.read() == b"old" * 4096
    assert len(seen) >= 2  # the reader did see replacements, and each one whole:
    assert all(value == value[:3] * 4096 for value in seen), sorted(v[:3] for v in seen)
    assert (there / "libc.so").read_bytes() == b"019" * 4096
    assert sorted(p.name for p in here.iterdir()) == ["libc.so"]


def _replace_while_reading(written: Path, read: Path, times: int) -> set[bytes]:
    """Replace ``written`` ``times`` times by a rename of a whole new file while a thread reads
    ``read`` (the same file through the other client); the contents the reader saw."""
    seen: set[bytes] = set()
    stop = threading.Event()

    def read_while_replaced() -> None:
        while not stop.is_set():
            seen.add(read.read_bytes())

    reader = threading.Thread(target=read_while_replaced)
    reader.start()
    try:
        for n in range(times):
            temporary = written.with_name(f".{written.name}.{n}")
            temporary.write_bytes(f"{n:03d}".encode() * 4096)
            os.rename(temporary, written)
    finally:
        stop.set()
        reader.join()
    return seen


@pytest.mark.parametrize("name", ["user.dim.origin", "trusted.overlay.opaque"])
def test_an_extended_attribute_is_kept_and_seen_by_the_other_client(folders, name):
    here, there = folders
    (here / "ping").write_bytes(b"\x7fELF")
    os.setxattr(here / "ping", name, b"y")
    assert os.getxattr(here / "ping", name) == b"y"
    assert name in os.listxattr(there / "ping")
    assert os.getxattr(there / "ping", name) == b"y"
    os.removexattr(here / "ping", name)
    assert name not in os.listxattr(there / "ping")


def test_a_file_fsynced_and_closed_on_one_client_reads_whole_on_the_other(folders):
    here, there = folders
    content = os.urandom(3 << 20)
    fd = os.open(here / "state.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(here, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the store fsyncs a folder after a rename into it
    finally:
        os.close(dir_fd)
    assert (there / "state.db").read_bytes() == content
    assert os.stat(there / "state.db").st_mode & 0o777 == 0o640


def test_a_stopped_cluster_leaves_no_daemon_and_starts_again_on_its_data(cluster, mounts):
    writer, _ = mounts
    (writer / "kept").write_bytes(b"across a restart\n")
    for mount in (writer, mounts[1]):
        os.sync()
        assert os.path.ismount(mount)
    running = ceph.running(Path(cluster.folder))
    assert running is not None
    # the mounts stay: ceph-fuse reconnects once the cluster is back
    ceph.stop(running)
    assert not any(alive(d.pid) for d in running.daemons)
    assert ceph.running(Path(cluster.folder)) is None
    again = ceph.start(Path(cluster.folder))
    ceph.wait_healthy(again)
    assert again.port == cluster.port and again.fsid == cluster.fsid
    assert (writer / "kept").read_bytes() == b"across a restart\n"


def test_a_file_written_through_cephfs_reads_back_through_a_ganesha_head(
    network, cluster, folders, tmp_path
):
    require_binary("ganesha.nfsd", "nfs-ganesha")
    require(CEPH_FSAL.exists(), "ganesha's CephFS back end: apt-get install nfs-ganesha-ceph")
    require_binary("nfs-cat", "libnfs-utils")
    here, _ = folders
    (here / "hello").write_text("written by dim through ceph-fuse\n")
    config = tmp_path / "ganesha.conf"
    config.write_text(ganesha_conf(cluster, f"/{here.name}", tmp_path))
    command = ["ganesha.nfsd", "-F", "-N", "NIV_EVENT", "-f", str(config)]
    command += ["-L", str(tmp_path / "ganesha.log"), "-p", str(tmp_path / "ganesha.pid")]
    head = network.start(privately(tmp_path, command), log=tmp_path / "ganesha.out")
    try:
        listening = sleep_until(lambda: tcp_listening(network.server, NFS_PORT), 20.0, 0.1)
        assert listening, (tmp_path / "ganesha.log").read_text(errors="replace")[-2000:]
        url = f"nfs://{SERVER}/store/hello?version=4"
        read = run(network.clients[0].namespace, ["nfs-cat", url], timeout=30.0, check=False)
        assert read.stdout == "written by dim through ceph-fuse\n", read.stderr
    finally:
        head.stop(timeout=15.0)
        network.daemons.remove(head)
        ceph.evict_heads(cluster)  # else kept 300 s for a reclaim, and the MDS waits for them


def privately(base: Path, argv: list[str]) -> list[str]:
    """``argv`` with its own /var/lib/nfs and /run (as tests/integration/test_nfs_ganesha.py
    runs ganesha): ``ip netns exec``'s mount namespace hides the binds from the host."""
    lib, runtime = base / "var-lib-nfs", base / "run"
    lib.mkdir()
    runtime.mkdir()
    script = 'mount --bind "$1" /var/lib/nfs && mount --bind "$2" /run && shift 2 && exec "$@"'
    return ["sh", "-c", script, "sh", str(lib), str(runtime), *argv]


def ganesha_conf(cluster: ceph.Cluster, path: str, state: Path) -> str:
    """One read-only export of ``path`` of the CephFS through FSAL_CEPH, as client.dim."""
    return f"""NFS_CORE_PARAM {{
    Protocols = 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    Bind_Addr = {SERVER};
}}
NFSv4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = "{state}/recovery";
    Only_Numeric_Owners = true;
}}
CEPH {{
    Ceph_Conf = "{cluster.conf}";
}}
EXPORT {{
    Export_Id = 1;
    Path = "{path}";
    Pseudo = "/store";
    Access_Type = RO;
    Squash = No_Root_Squash;
    Protocols = 4;
    Transports = TCP;
    FSAL {{
        Name = CEPH;
        Filesystem = "{ceph.FS}";
        User_Id = "{ceph.CLIENT}";
    }}
}}
"""
