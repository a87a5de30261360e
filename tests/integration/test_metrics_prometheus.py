"""Prometheus (Debian's package, started here) scrapes ``dim serve`` with two workers and
``dim api``: boots counted across the workers, latencies, nodes per state, image versions."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dim.cli import main
from tests.conftest import require_binary
from tests.unit.conftest import SMALL

MACS = ["52:54:00:00:00:01", "52:54:00:00:00:02"]
BOOTS = 7  # node scripts fetched: more than one worker's share


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}: {log.read_text()}")


@pytest.fixture
def site(tmp_path) -> Path:
    http_root = tmp_path / "http"
    http_root.mkdir()
    layout = SMALL.replace(b'nfs="ganesha"/>', f'nfs="ganesha" http-root="{http_root}"/>'.encode())
    (tmp_path / "cluster.xml").write_bytes(layout)
    options = ["--config", str(tmp_path / "cluster.xml"), "--state", str(tmp_path / "state")]
    for node, mac in zip(("c01", "c02"), MACS, strict=True):
        assert main([*options, "node", "set", node, "--mac", mac]) == 0
    folder = tmp_path / "state" / "boot" / "alpha" / "1"
    folder.mkdir(parents=True)
    (folder / "vmlinuz").write_bytes(b"k" * 100_000)
    (folder / "initrd.img").write_bytes(b"i" * 300_000)
    (folder / "build.json").write_text("{}")
    tree = tmp_path / "tree" / "etc"
    tree.mkdir(parents=True)
    (tree / "motd").write_text("hello\n")
    assert main([*options, "image", "import", "alpha", "--from", str(tree.parent)]) == 0
    return tmp_path


@pytest.fixture
def services(site) -> Iterator[dict[str, int]]:
    """dim serve (2 workers) and dim api on loopback: their ports."""
    base = [sys.executable, "-m", "dim", "--config", str(site / "cluster.xml"),
            "--state", str(site / "state")]  # fmt: skip
    ports = {"serve": free_port(), "api": free_port()}
    commands = {
        "serve": [*base, "serve", "--listen", "127.0.0.1", "--port", str(ports["serve"]),
                  "--workers", "2"],
        "api": [*base, "api", "--port", str(ports["api"]), "--nfs-pid-file", "self"],
    }  # fmt: skip
    running = []
    try:
        for name, command in commands.items():
            log = site / f"{name}.log"
            process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
            running.append(process)
            wait_listening(ports[name], process, log)
        yield ports
    finally:
        for process in running:
            process.terminate()
            process.wait(timeout=15)


@pytest.fixture
def prometheus(site, services) -> Iterator[int]:
    binary = require_binary("prometheus", "prometheus")
    port = free_port()
    config = site / "prometheus.yml"
    jobs = [
        {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        for name, port in services.items()
    ]
    settings = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    # YAML is a superset of JSON
    config.write_text(json.dumps({"global": settings, "scrape_configs": jobs}))
    log = site / "prometheus.log"
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={site / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_listening(port, process, log)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(port: int, expression: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expression)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())["data"]["result"]


def values(port: int, expression: str, timeout: float = 30.0) -> dict[str, float]:
    """label values -> sample, once Prometheus has them (it scrapes every second)."""
    deadline = time.monotonic() + timeout
    while True:
        found = query(port, expression)
        if found or time.monotonic() > deadline:
            return {
                ",".join(v for k, v in sorted(r["metric"].items()) if k != "__name__"): float(
                    r["value"][1]
                )
                for r in found
            }
        time.sleep(0.5)


def test_prometheus_scrapes_boots_latencies_and_the_cluster_from_both_services(
    site, services, prometheus
):
    serve = f"http://127.0.0.1:{services['serve']}"
    for n in range(BOOTS):
        mac = MACS[n % 2].replace(":", "-")
        with urllib.request.urlopen(f"{serve}/dim/nodes/{mac}.ipxe", timeout=10) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(f"{serve}/dim/images/alpha/vmlinuz", timeout=10) as answer:
            assert len(answer.read()) == 100_000
    # a new connection per request: the kernel spreads them over both workers
    assert values(prometheus, 'up{job="serve"} == 1') and values(prometheus, 'up{job="api"} == 1')
    deadline = time.monotonic() + 30
    boots: dict[str, float] = {}
    while time.monotonic() < deadline and sum(boots.values()) < BOOTS:
        boots = values(prometheus, "dim_boots_total")
        time.sleep(0.5)
    assert sum(boots.values()) == BOOTS, boots  # whichever worker each boot and scrape reached
    assert {k.split(",")[0] for k in boots} == {"alpha"}  # image, instance, job, server
    kernels = values(prometheus, 'dim_serve_request_seconds_count{kind="kernel"}')
    assert sum(kernels.values()) == BOOTS
    sent = values(prometheus, 'dim_serve_sent_bytes_total{kind="kernel"}')
    assert sum(sent.values()) == BOOTS * 100_000
    nodes = values(prometheus, "dim_nodes")
    assert sum(nodes.values()) == 6 and nodes, nodes
    live = values(prometheus, 'dim_image_live_version{image="alpha"}')
    assert list(live.values()) == [1.0]
    conflicts = values(prometheus, 'dim_image_replica_conflicts{image="alpha"}')
    assert list(conflicts.values()) == [0.0]
    requests = values(prometheus, 'dim_api_requests_total{route="GET /metrics"}')
    assert requests and min(requests.values()) >= 1


def test_metrics_can_require_a_token_or_be_off(site):
    base = [sys.executable, "-m", "dim", "--config", str(site / "cluster.xml"),
            "--state", str(site / "state"), "api", "--nfs-pid-file", "self"]  # fmt: skip
    for mode, expected in (("token", 401), ("off", 404)):
        port = free_port()
        log = site / f"api-{mode}.log"
        process = subprocess.Popen(
            [*base, "--port", str(port), "--metrics", mode],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_listening(port, process, log)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert refused.value.code == expected
        finally:
            process.terminate()
            process.wait(timeout=15)
