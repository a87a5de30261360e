"""`dim serve` as a real process on 127.0.0.1, fetched by a real HTTP client (curl when it is
installed, else Python's http.client), stopped by its process id with SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
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


@contextlib.contextmanager
def serving(site: Path, *options: str):
    """`dim serve OPTIONS` on a free port of 127.0.0.1, its stderr in site/serve.log: (base URL,
    process); stopped by its process id at the end."""
    port = free_port()
    env = {**os.environ, "DIM_CONFIG": str(site / "cluster.xml"), "DIM_STATE": str(site / "state")}
    command = [DIM, "serve", "--listen", "127.0.0.1", "--port", str(port), *options]
    with open(site / "serve.log", "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, which stops the workers too; SIGKILL after 10 s."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def server(site, request):
    """`dim serve` with one worker, or two sharing the port."""
    assert dim(site, "node", "set", "c01", "--mac", MAC).returncode == 0
    with serving(site, "--workers", str(request.param)) as running:
        yield running


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
    assert done.stderr.splitlines() == [  # one line and its hint, no traceback
        f"dim: error: cannot listen on 127.0.0.1:{port}: Address already in use",
        "hint: is another server on that port, or the address not on this machine?",
    ]


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
        stop(process)
        _, err = process.communicate(timeout=10)
    assert f"worker {workers[0]} ended" in err
    assert "dim: error: a worker of dim serve ended unexpectedly" in err


# -- a service that cannot be held open --------------------------------------------------------

TIMEOUT = 3.0  # --header-timeout, --keepalive-timeout and --body-timeout of the server below
HELD = {  # what each held connection sends, and then nothing more
    "silent": b"",
    "half a request line": b"GET /dim/images/alp",
    "half the headers": b"GET /boot.ipxe HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag",
    "idle keep-alive": b"GET /readme.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}
PER_KIND = 600  # 2,400 connections


@dataclass
class Held:
    kind: str
    sock: socket.socket
    since: float  # when the server's clock for it started, as far as the client can tell
    closed_at: float = math.inf
    answer: bytes = b""

    @property
    def after(self) -> float:
        return self.closed_at - self.since


class Holder:
    """Connections held open, plain sockets (asyncio's streams cost the client too much CPU
    to open 2,400 within a timeout on a busy machine), watched by one thread that stamps the
    moment each answer arrives (a keep-alive's idle time starts then) and each is closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.held: list[Held] = []
        self.selector = selectors.DefaultSelector()
        self.opening = True
        self.stopped = False
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def hold(self, kind: str) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        held = Held(kind, sock, time.monotonic())
        sock.sendall(HELD[kind])
        sock.setblocking(False)
        self.held.append(held)
        self.selector.register(sock, selectors.EVENT_READ, held)

    def wait(self, seconds: float) -> None:
        """Until the server closed every connection, or ``seconds``; then close the rest."""
        self.opening = False
        self.watcher.join(seconds)
        self.stopped = True
        self.watcher.join()
        for held in self.held:
            held.sock.close()

    def _watch(self) -> None:
        while not self.stopped and (self.opening or self.selector.get_map()):
            for key, _ in self.selector.select(timeout=0.05):
                held: Held = key.data
                try:
                    data = held.sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    data = b""
                if data:
                    held.answer += data
                    held.since = time.monotonic()
                    continue
                held.closed_at = time.monotonic()
                self.selector.unregister(held.sock)
                held.sock.close()


def raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"this test needs {wanted} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def test_thousands_of_idle_and_half_open_connections_neither_block_a_boot_nor_stay_open(site):
    """2,400 connections (silent, half a request line, half the headers, an idle keep-alive
    after one answer) held against two workers: a node boots meanwhile, and each connection
    is closed by the server after its timeout, not before, and not much later."""
    raise_open_files(len(HELD) * PER_KIND + 1000)
    assert dim(site, "node", "set", "c01", "--mac", MAC).returncode == 0
    timeouts = ("--header-timeout", "--keepalive-timeout", "--body-timeout")
    options = [arg for option in timeouts for arg in (option, str(TIMEOUT))]
    with serving(site, "--workers", "2", "--max-connections", "4000", *options) as running:
        url, process = running
        holder = Holder(int(url.rpartition(":")[2]))
        for _ in range(PER_KIND):
            for kind in HELD:
                holder.hold(kind)
        booted = [fetch(f"{url}/dim/nodes/52-54-00-00-00-01.ipxe")]
        booted.append(fetch(f"{url}/dim/images/alpha/1/vmlinuz"))
        boot_done = time.monotonic()
        holder.wait(5 * TIMEOUT)
        stop(process)
    held = holder.held
    (script_status, script), (kernel_status, kernel) = booted
    assert script_status == 200 and f"dim.node=c01 dim.mac={MAC}".encode() in script
    assert kernel_status == 200 and kernel == KERNEL
    answered = [h for h in held if h.kind == "idle keep-alive" and h.answer.endswith(b"served\n")]
    assert len(answered) == PER_KIND
    # the boot was served while the connections were held: most were still open when it ended
    still_open = sum(1 for h in held if h.closed_at > boot_done)
    assert still_open >= len(held) // 2, f"only {still_open} held while the node booted"
    # each closed by the server: after its timeout, within a margin that scales with it
    never = [h.kind for h in held if h.after == math.inf]
    assert not never, f"{len(never)} never closed, e.g. {never[:3]}"
    early = [(h.kind, round(h.after, 2)) for h in held if h.after < TIMEOUT - 0.25]
    late = [(h.kind, round(h.after, 2)) for h in held if h.after > 2 * TIMEOUT]
    assert not early, f"{len(early)} closed before the timeout: {early[:5]}"
    assert not late, f"{len(late)} closed later than twice the timeout: {late[:5]}"
    log = (site / "serve.log").read_text()
    assert log.count(f"closed: no complete request head within {TIMEOUT:g} s") == 2 * PER_KIND
    assert "Traceback" not in log


MALFORMED = {
    "bad HTTP version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "NUL in the URL": b"GET /readme.txt\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "negative Content-Length": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "Content-Length with Transfer-Encoding": (
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
    "oversized header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
}


def test_each_malformed_request_is_one_log_line_without_traceback(site):
    """Each malformed request, then a normal one as a marker: between the marker lines, one
    line that names the client, the status and what was wrong."""
    with serving(site, "--workers", "1") as (url, process):
        port = int(url.rpartition(":")[2])
        log = site / "serve.log"
        for number, (kind, request) in enumerate(MALFORMED.items()):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(request)
                assert client.recv(100).startswith(b"HTTP/1.0 400 Bad Request"), kind
            marker = f"/readme.txt?after={number}"
            assert fetch(url + marker) == (200, b"served\n")
            deadline = time.monotonic() + 10
            while marker not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    lines = log.read_text().splitlines()
    assert lines[0].startswith("dim serve: serving boot scripts")
    assert lines[-1] == "dim serve: stopped"
    requests = lines[1:-1]
    assert len(requests) == 2 * len(MALFORMED), "\n".join(requests)
    expected = [
        "Invalid HTTP version",
        "Invalid char in url",
        "Content-Length",
        "Transfer-Encoding",
        "Got more than 8190 bytes",
    ]
    for number, (kind, why) in enumerate(zip(MALFORMED, expected, strict=True)):
        refused, marker = requests[2 * number : 2 * number + 2]
        assert refused.startswith("dim serve: 127.0.0.1 - - 400 "), (kind, refused)
        assert " refused: " in refused and why in refused, (kind, refused)
        assert marker.startswith(f"dim serve: 127.0.0.1 GET /readme.txt?after={number} 200 ")
