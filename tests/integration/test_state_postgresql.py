"""The state DB on a real PostgreSQL server that these tests start and stop: the lab's server
(dim.lab.postgres) itself, and ``dim serve`` booting a node while that server is down.

Each test starts a server of its own (about 1.5 s), in a folder of its own, and stops it by its
process id at the end; the session's server (tests/conftest.py) is never stopped here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dim.cli import main
from dim.errors import StateUnavailable
from dim.lab import postgres
from dim.lab.netns import run, segment
from dim.lab.processes import sleep_until
from dim.layout.parser import parse
from dim.state import StateDB
from tests.conftest import require_binary, require_postgres, require_root
from tests.unit.conftest import SMALL

pytestmark = pytest.mark.integration

SOURCE = Path(__file__).resolve().parents[2] / "src"
C01 = "52:54:00:00:00:01"


@pytest.fixture
def server() -> Iterator[postgres.Server]:
    require_postgres()
    started = postgres.start(Path(tempfile.mkdtemp(prefix="dim-test-pg-")))
    try:
        yield started
    finally:
        postgres.remove(started)  # whichever server of its folder runs then


def test_a_server_stopped_and_started_again_keeps_its_data_role_and_port(server):
    cluster = parse(SMALL, "small.xml")
    StateDB.connect(server.url).set_macs(cluster, {("c01", "boot"): C01})
    postgres.stop(server)
    assert not (Path(server.folder) / "data" / "postmaster.pid").exists()
    with pytest.raises(StateUnavailable, match="refused"):
        StateDB.connect(server.url)
    assert postgres.running(Path(server.folder)) is None
    again = postgres.start(Path(server.folder))
    try:
        assert (again.url, again.port) == (server.url, server.port) and again.pid != server.pid
        assert postgres.running(Path(server.folder)) == again
        assert StateDB.connect(again.url).observed().macs == {("c01", "boot"): C01}
    finally:
        postgres.stop(again)


def test_in_a_namespace_it_listens_on_the_address_there(tmp_path):
    require_root()
    require_postgres()
    require_binary("ip", "iproute2")
    with segment("10.77.0.1/24", clients=1) as seg:
        server = postgres.start(
            Path(tempfile.mkdtemp(prefix="dim-test-pg-")), host="10.77.0.1", namespace=seg.server
        )
        try:
            assert server.url.endswith("@10.77.0.1:5432/dim")
            # from another namespace, over the segment, with the role's password
            client = seg.clients[0]
            run(client.namespace, ["ip", "addr", "add", "10.77.0.50/24", "dev", client.iface])
            query = [str(postgres.BIN / "psql"), server.url, "-Atc", "SELECT current_user"]
            answer = run(client.namespace, query, timeout=20)
            assert answer.stdout.strip() == "dim"
        finally:
            postgres.remove(server)


# -- dim serve while the state DB is down ----------------------------------------------------


def site(folder: Path) -> Path:
    """cluster.xml with c01 and a boot build 2 of image alpha in the state folder."""
    http_root = folder / "http"
    layout = SMALL.replace(b'nfs="ganesha"/>', f'nfs="ganesha" http-root="{http_root}"/>'.encode())
    (folder / "cluster.xml").write_bytes(layout)
    build = folder / "state" / "boot" / "alpha" / "2"
    build.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        (build / name).write_bytes(b"x")
    (build / "build.json").write_text("{}")
    http_root.mkdir()
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def boot_script(port: int) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}/dim/nodes/52-54-00-00-00-01.ipxe"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_node_boots_while_postgresql_is_down_and_its_boot_is_recorded_after(server, tmp_path):
    folder = site(tmp_path)
    options = ["--config", str(folder / "cluster.xml"), "--state", str(folder / "state")]
    options += ["--database", server.url]
    assert main([*options, "node", "set", "c01", "--mac", C01]) == 0
    assert main([*options, "node", "set", "c01", "--image", "alpha"]) == 0
    root = str(folder / "root")
    assert main([*options, "apply", "--root", root, "--no-reload", "--skip-validation"]) == 0
    port = free_port()
    serve = [sys.executable, "-m", "dim", *options, "serve", "--listen", "127.0.0.1"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]),
    }
    log = folder / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*serve, "--port", str(port), "--workers", "1"], env=env, stdout=out, stderr=out
        )
    try:
        assert sleep_until(lambda: b"serving" in log.read_bytes(), 15), log.read_text()
        assert boot_script(port)[0] == 200
        db = StateDB.connect(server.url)
        assert sleep_until(lambda: len(db.events("c01")) == 2, 10)  # the MAC, the first boot
        db.engine.dispose()

        postgres.stop(server)
        status, script = boot_script(port)
        assert status == 200, script
        assert "dim/images/alpha/2/vmlinuz" in script and "dim.node=c01" in script
        assert boot_script(port)[0] == 200
        down = time.time()

        again = postgres.start(Path(server.folder))
        db = StateDB.connect(again.url)
        # the recorder tries again every 5 s (Outage.retry)
        assert sleep_until(lambda: len(db.events("c01")) == 4, 20), log.read_text()
        assert db.last_boots()["c01"].at < down  # the latest boot, recorded after the outage
    finally:
        process.terminate()
        process.wait(30)
    text = log.read_text()
    assert text.count("answering boot scripts from") == 1, text  # once per outage
    assert "reachable again" in text and "2 boots recorded after the outage" in text
    assert server.password not in text
