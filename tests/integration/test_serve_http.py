"""`dim serve` as a real process on 127.0.0.1, fetched by a real HTTP client (curl when it is
installed, else Python's http.client), stopped by its process id with SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.conftest import SMALL

pytestmark = pytest.mark.integration

MAC = "52:54:00:00:00:01"
KERNEL = os.urandom(3 * 1024 * 1024 + 17)
INITRD = os.urandom(1024 * 1024 + 5)
DIM = str(Path(sys.executable).with_name("dim"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str) -> tuple[int, bytes]:
    """Status and body of a GET, by curl if there is one (``--path-as-is``: no ``..`` folding)."""
    if shutil.which("curl"):
        done = subprocess.run(
            ["curl", "-s", "--path-as-is", "-o", "-", "-w", "\n%{http_code}", url],
            capture_output=True,
            check=True,
            timeout=30,
        )
        body, _, status = done.stdout.rpartition(b"\n")
        return int(status), body
    host, _, path = url.removeprefix("http://").partition("/")
    connection = http.client.HTTPConnection(host, timeout=30)
    connection.request("GET", "/" + path)
    response = connection.getresponse()
    return response.status, response.read()


@pytest.fixture
def site(tmp_path) -> Path:
    http_root = tmp_path / "http"
    layout = SMALL.replace(b'nfs="ganesha"/>', f'nfs="ganesha" http-root="{http_root}"/>'.encode())
    (tmp_path / "cluster.xml").write_bytes(layout)
    build = tmp_path / "state" / "boot" / "alpha" / "1"
    build.mkdir(parents=True)
    (build / "vmlinuz").write_bytes(KERNEL)
    (build / "initrd.img").write_bytes(INITRD)
    http_root.mkdir()
    (http_root / "readme.txt").write_text("served\n")
    (tmp_path / "secret.txt").write_text("SECRET\n")
    return tmp_path


def dim(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIM_CONFIG": str(site / "cluster.xml"), "DIM_STATE": str(site / "state")}
    return subprocess.run([DIM, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def server(site, request):
    """`dim serve` on a free port of 127.0.0.1: (base URL, process); stopped by pid at the end."""
    assert dim(site, "node", "set", "c01", "--mac", MAC).returncode == 0
    port = free_port()
    env = {**os.environ, "DIM_CONFIG": str(site / "cluster.xml"), "DIM_STATE": str(site / "state")}
    command = [DIM, "serve", "--listen", "127.0.0.1", "--port", str(port)]
    with open(site / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [*command, "--workers", str(request.param)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "dim serve exited before listening"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"dim serve did not listen on port {port} within 20 s")


def test_dim_serve_boots_a_node_over_real_http_and_records_it(server, site):
    """With one worker and with two sharing the port: the same answers, a clean stop."""
    url, process = server
    status, body = fetch(f"{url}/boot.ipxe")
    assert status == 200 and b"/dim/nodes/${mac:hexhyp}.ipxe" in body
    status, body = fetch(f"{url}/dim/nodes/52-54-00-00-00-01.ipxe")
    assert status == 200
    assert f"dim.node=c01 dim.mac={MAC}".encode() in body
    assert f"{url}/dim/images/alpha/1/vmlinuz".encode() in body
    assert fetch(f"{url}/dim/images/alpha/1/vmlinuz") == (200, KERNEL)
    assert fetch(f"{url}/dim/images/alpha/initrd.img") == (200, INITRD)
    status, body = fetch(f"{url}/dim/nodes/52-54-00-00-00-99.ipxe")
    assert status == 404 and b"echo dim: unknown MAC 52:54:00:00:00:99" in body
    assert fetch(f"{url}/readme.txt") == (200, b"served\n")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", f"/{site}/secret.txt"):
        status, body = fetch(url + path)
        assert status == 403 and b"SECRET" not in body

    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    log = (site / "serve.log").read_text()
    assert log.rstrip().endswith("dim serve: stopped")
    assert f"127.0.0.1 GET /dim/images/alpha/1/vmlinuz 200 {len(KERNEL)} " in log
    assert "unknown MAC 52:54:00:00:00:99" in log and "Traceback" not in log
    listed = dim(site, "node", "list", "c01", "--json")
    assert listed.returncode == 0, listed.stderr
    boot = json.loads(listed.stdout)[0]["last_boot"]
    assert (boot["image"], boot["version"], boot["client"]) == ("alpha", "1", "127.0.0.1")


def test_dim_serve_on_a_busy_port_is_one_error_line(site):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = dim(site, "serve", "--listen", "127.0.0.1", "--port", str(port))
    assert done.returncode == 1
    assert f"dim: error: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_that_dies_stops_dim_serve_for_its_supervisor_to_restart(site):
    port = free_port()
    env = {**os.environ, "DIM_CONFIG": str(site / "cluster.xml"), "DIM_STATE": str(site / "state")}
    command = [DIM, "serve", "--listen", "127.0.0.1", "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    workers: list[str] = []
    try:
        wait_for_port(port, process)
        # the port is bound before the workers fork: on a loaded machine the second comes later
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline and process.poll() is None:
            workers = children.read_text().split()
            time.sleep(0.05)
        assert len(workers) == 2
        os.kill(int(workers[0]), signal.SIGKILL)
        assert process.wait(timeout=10) == 1
    finally:
        if process.poll() is None:  # the test failed: stop dim serve and its workers by pid
            for pid in [process.pid, *map(int, workers)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _, err = process.communicate(timeout=10)
    assert f"worker {workers[0]} ended" in err
    assert "dim: error: a worker of dim serve ended unexpectedly" in err
