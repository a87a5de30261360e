"""nfs-ganesha serving the configuration `dim apply` renders, checked with a real NFSv4 client.

`dim apply` renders ganesha.conf for a two-node cluster into a temporary root; ganesha runs on
that file, unchanged, in a server namespace whose bridge holds 10.77.0.1; libnfs's command-line
client (``nfs-ls``, ``nfs-cat``, ``nfs-cp`` from Debian's libnfs-utils: no kernel NFS client is
needed) speaks NFSv4 from client namespaces that hold the nodes' addresses::

    .venv/bin/pytest tests/integration/test_nfs_ganesha.py

For each node: the image's live tree reads and refuses writes; the node's own replica reads
and writes, and what it writes lands on the server's disk with its owners kept as numbers and
root not squashed; the other node's replica is not even visible. An address outside the
cluster gets nothing. A file added to the live tree is listed and read at once, one replaced by
a rename reads its new content at once (never a stale handle); one changed in place is seen
within about 2 s.

One ganesha serves the whole module (it starts in about 0.1 s); every test writes under names
of its own. Needs root, nfs-ganesha, nfs-ganesha-vfs and libnfs-utils: skips without them,
fails under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dim.cli import main
from dim.lab.netns import Daemon, ip, run, segment
from dim.services.nfs import GANESHA_CONF
from tests.conftest import require, require_binary, require_root

pytestmark = pytest.mark.integration

SERVER = "10.77.0.1"
NODES = {"node01": "10.77.0.11", "node02": "10.77.0.12"}
OUTSIDER = "10.77.0.99"  # on the segment, in no node's export
NFS_PORT = 2049
START_TIMEOUT = 10.0
VFS_FSAL = Path("/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so")

CLUSTER_XML = """<?xml version="1.0"?>
<cluster name="nfstest" domain="nfstest.dim">
  <network name="boot" subnet="10.77.0.0/24" gateway="10.77.0.1"/>
  <server name="srv" address="10.77.0.1" dhcp="none" nfs="ganesha"/>
  <image name="tiny"><persist path="/etc"/></image>
  <group name="nodes" nodes="node[01-02]" image="tiny">
    <interface network="boot" ip="10.77.0.{10+n1}"/>
  </group>
</cluster>
"""

FOREIGN_OWNER = 1234  # a file the server holds under this uid and gid
USER = 1000  # a non-root user writing through NFS


@dataclass(frozen=True, slots=True)
class Served:
    """ganesha running on dim's configuration, and a client namespace per address."""

    state: Path
    config: Path
    log: Path
    daemon: Daemon
    clients: dict[str, str]  # address -> namespace

    def live(self, *parts: str) -> Path:
        return self.state.joinpath("images", "tiny", "live", *parts)

    def replica(self, node: str, *parts: str) -> Path:
        return self.state.joinpath("nodes", node, "tiny", *parts)

    def client(self, address: str, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one libnfs tool from the namespace holding ``address``."""
        return run(self.clients[address], [tool, *args], timeout=15.0, check=False)


def url(path: Path, **options: int) -> str:
    """An NFSv4 URL for libnfs: ``nfs://10.77.0.1/state/...?version=4``."""
    query = "&".join(f"{key}={value}" for key, value in {"version": 4, **options}.items())
    return f"nfs://{SERVER}{path}?{query}"


def seed(state: Path) -> None:
    """The trees dim exports: an image's live tree and one replica per node, with owners."""
    live = state / "images" / "tiny" / "live"
    live.mkdir(parents=True)
    (live / "hello").write_text("image tiny\n")
    for node in NODES:
        replica = state / "nodes" / node / "tiny"
        replica.mkdir(parents=True)
        (replica / "whoami").write_text(f"{node}\n")
        (replica / "numbers").write_text("owned by someone else\n")
        os.chown(replica / "numbers", FOREIGN_OWNER, FOREIGN_OWNER)
        (replica / "user").mkdir()
        os.chown(replica / "user", USER, USER)


def privately(base: Path, argv: list[str]) -> list[str]:
    """``argv`` with its own /var/lib/nfs and /run, so that nothing lands on the host.

    ganesha keeps NFSv4 client records under /var/lib/nfs/ganesha (its RecoveryRoot) and makes
    /run/ganesha. ``ip netns exec`` already runs the command in a mount namespace of its own;
    binding two temporary folders over those paths there hides them from the host, and the
    binds vanish with the process. The rendered configuration runs as installed, unchanged.
    """
    lib, runtime = base / "var-lib-nfs", base / "run"
    lib.mkdir()
    runtime.mkdir()
    script = 'mount --bind "$1" /var/lib/nfs && mount --bind "$2" /run && shift 2 && exec "$@"'
    return ["sh", "-c", script, "sh", str(lib), str(runtime), *argv]


def ganesha_listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` is ganesha by now and its namespace listens on TCP ``port``.

    Until ``ip netns exec`` and ``sh`` have exec'd ganesha, /proc/PID/net may still be the
    host's; a listener there must not count.
    """
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "ganesha.nfsd":
            return False
        tables = [Path(f"/proc/{pid}/net/{t}").read_text() for t in ("tcp", "tcp6")]
    except FileNotFoundError:  # the process is gone
        return False
    for table in tables:
        for row in table.splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_for_nfs(daemon: Daemon, log: Path, timeout: float = START_TIMEOUT) -> None:
    """Poll until ganesha listens on the NFS port; fail with its log if it exits or is slow."""
    deadline = time.monotonic() + timeout
    while not ganesha_listening(daemon.pid, NFS_PORT):
        if not daemon.running or time.monotonic() > deadline:
            what = (
                f"exited with status {daemon.process.returncode}"
                if not daemon.running
                else f"did not listen on TCP {NFS_PORT} within {timeout} s"
            )
            text = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"ganesha.nfsd {what}:\n{daemon.output()}{tail(text)}")
        time.sleep(0.02)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """dim's ganesha.conf served on 10.77.0.1 to a namespace per node and one outsider."""
    require_root()
    require_binary("ip", "iproute2")
    ganesha = require_binary("ganesha.nfsd", "nfs-ganesha")
    require(
        VFS_FSAL.exists(), "ganesha's VFS FSAL is not installed (apt-get install nfs-ganesha-vfs)"
    )
    for tool in ("nfs-ls", "nfs-cat", "nfs-cp"):
        require_binary(tool, "libnfs-utils")
    base = tmp_path_factory.mktemp("ganesha")
    layout, state, root = base / "cluster.xml", base / "state", base / "root"
    layout.write_text(CLUSTER_XML)
    argv = ["--config", str(layout), "--state", str(state)]
    assert main([*argv, "apply", "--root", str(root), "--no-reload"]) == 0
    config = root / GANESHA_CONF.lstrip("/")
    seed(state)
    log = base / "ganesha.log"
    command = [ganesha, "-F", "-N", "NIV_EVENT", "-f", str(config), "-L", str(log)]
    command += ["-p", str(base / "ganesha.pid")]
    with segment(f"{SERVER}/24", clients=0) as seg:
        clients = {}
        for address in (*NODES.values(), OUTSIDER):
            client = seg.add_client()
            ip("-n", client.namespace, "addr", "add", f"{address}/24", "dev", client.iface)
            clients[address] = client.namespace
        daemon = seg.start(privately(base, command), log=base / "ganesha.out")
        wait_for_nfs(daemon, log)
        yield Served(state, config, log, daemon, clients)


def other(node: str) -> str:
    return next(n for n in NODES if n != node)


def test_ganesha_serves_the_rendered_config_without_complaint(served: Served) -> None:
    # ganesha listens on its port a moment before it logs the end of its start-up.
    deadline = time.monotonic() + 10
    while "NFS SERVER INITIALIZED" not in served.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = served.log.read_text()
    assert "NFS SERVER INITIALIZED" in text
    # config_errs_to_log reports unknown or invalid parameters and blocks, at any level.
    assert not re.findall(r".*(?:config_errs_to_log|:CONFIG :(?:CRIT|MAJ|FATAL)).*", text)
    assert served.daemon.running


@pytest.mark.parametrize("node", NODES)
def test_node_reads_the_image_live_tree(served: Served, node: str) -> None:
    result = served.client(NODES[node], "nfs-cat", url(served.live("hello")))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "image tiny\n"


@pytest.mark.parametrize("node", NODES)
def test_node_cannot_write_the_image_live_tree(served: Served, node: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.write_text("not allowed\n")
    result = served.client(NODES[node], "nfs-cp", str(source), url(served.live(f"by-{node}")))
    assert result.returncode != 0
    assert "NFS4ERR_ROFS" in result.stderr
    assert not served.live(f"by-{node}").exists()


@pytest.mark.parametrize("node", NODES)
def test_node_reads_its_own_replica(served: Served, node: str) -> None:
    result = served.client(NODES[node], "nfs-cat", url(served.replica(node, "whoami")))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{node}\n"


@pytest.mark.parametrize("node", NODES)
def test_node_writes_its_own_replica_and_root_stays_root(
    served: Served, node: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.write_text(f"written by {node}\n")
    target = served.replica(node, "written")
    result = served.client(NODES[node], "nfs-cp", str(source), url(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text() == f"written by {node}\n"
    assert (target.stat().st_uid, target.stat().st_gid) == (0, 0)  # No_Root_Squash


@pytest.mark.parametrize("node", NODES)
def test_owners_are_numbers_through_nfs(served: Served, node: str, tmp_path: Path) -> None:
    listing = served.client(NODES[node], "nfs-ls", url(served.replica(node)))
    assert listing.returncode == 0, listing.stderr
    owners = {row.split()[-1]: row.split()[2:4] for row in listing.stdout.splitlines()}
    # root has a name on the server; as "root@domain" the node would see nobody (65534)
    assert owners["whoami"] == ["0", "0"]
    assert owners["numbers"] == [str(FOREIGN_OWNER)] * 2
    source = tmp_path / "src"
    source.write_text("a user's file\n")
    target = served.replica(node, "user", "mine")
    written = served.client(NODES[node], "nfs-cp", str(source), url(target, uid=USER, gid=USER))
    assert written.returncode == 0, written.stderr
    assert (target.stat().st_uid, target.stat().st_gid) == (USER, USER)


@pytest.mark.parametrize("node", NODES)
def test_node_cannot_see_another_nodes_replica(served: Served, node: str, tmp_path: Path) -> None:
    theirs = served.replica(other(node))
    listing = served.client(NODES[node], "nfs-ls", url(theirs))
    reading = served.client(NODES[node], "nfs-cat", url(theirs / "whoami"))
    source = tmp_path / "src"
    source.write_text("intruder\n")
    writing = served.client(NODES[node], "nfs-cp", str(source), url(theirs / f"from-{node}"))
    for result in (listing, reading, writing):
        assert result.returncode != 0
        assert "NFS4ERR_NOENT" in result.stderr  # refused by a live server, not unreachable
    assert not (theirs / f"from-{node}").exists()


def test_an_address_outside_the_cluster_gets_no_export(served: Served) -> None:
    for path in (served.live("hello"), *(served.replica(n, "whoami") for n in NODES)):
        result = served.client(OUTSIDER, "nfs-cat", url(path))
        assert result.returncode != 0
        assert "NFS4ERR_NOENT" in result.stderr


def wait_for_content(served: Served, path: Path, expected: str, timeout: float = 5.0) -> float:
    """Poll from node01 until ``path`` reads ``expected``; the seconds it took."""
    start = time.monotonic()
    while True:
        result = served.client(NODES["node01"], "nfs-cat", url(path))
        if result.returncode == 0 and result.stdout == expected:
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"not seen after {timeout} s: {result}"
        time.sleep(0.1)


def test_a_file_added_to_the_live_tree_is_listed_and_read_by_the_nodes_at_once(
    served: Served,
) -> None:
    before = served.client(NODES["node01"], "nfs-ls", url(served.live()))
    assert before.returncode == 0 and " late" not in before.stdout
    staged = served.live(".late.tmp")
    staged.write_text("published\n")
    staged.rename(served.live("late"))  # how images change: write aside, rename over
    # Dir_Chunk = 0: ganesha keeps no directory entries, so the listing is never stale (with
    # its default chunks a new name took about 1 s to be listed).
    after = served.client(NODES["node01"], "nfs-ls", url(served.live()))
    assert " late" in after.stdout
    # at once: the first read after the rename has the content, no polling
    read = served.client(NODES["node01"], "nfs-cat", url(served.live("late")))
    assert (read.returncode, read.stdout) == (0, "published\n"), read


def test_a_file_changed_in_place_in_the_live_tree_reaches_the_nodes_within_seconds(
    served: Served,
) -> None:
    path = served.live("counter")
    path.write_text("1\n")
    wait_for_content(served, path, "1\n")  # ganesha now holds its attributes
    with path.open("a") as handle:
        handle.write("2\n")
    # Attr_Expiration_Time = 1: seen after about 2 s (with ganesha's default of 60, not at all
    # within the 5 s that wait_for_content allows).
    wait_for_content(served, path, "1\n2\n")


def test_a_file_replaced_by_rename_in_the_live_tree_reads_new_at_once_never_stale(
    served: Served,
) -> None:
    path = served.live("swapped")
    path.write_text("old\n")
    wait_for_content(served, path, "old\n")
    for _ in range(2):  # what a running node does: its directory listed, the file read
        served.client(NODES["node01"], "nfs-ls", url(served.live()))
        served.client(NODES["node01"], "nfs-cat", url(path))
    aside = served.live(".swapped.tmp")
    aside.write_text("new\n")
    aside.rename(path)  # how images change: write aside, rename over
    # Dir_Chunk = 0: every LOOKUP asks the file system. With ganesha's default (128) the
    # cached entry still named the replaced file's handle: this open failed with
    # NFS4ERR_STALE (measured, ganesha 4.3), which is why dim does not take the cache's
    # saving of ganesha's CPU in a boot storm (docs/benchmarks.md, "ganesha's cost per node").
    read = served.client(NODES["node01"], "nfs-cat", url(path))
    assert (read.returncode, read.stdout) == (0, "new\n"), read
