"""The HTTP boot service against a real state folder and cluster.xml, through aiohttp's test
server: node scripts from the state DB, boot builds, http-root without traversal, boot records.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession

from dim.boot import targets
from dim.boot.builds import find_build
from dim.boot.connections import Limits, one_line
from dim.boot.sendfile import Senders, byte_range
from dim.boot.serve import RECORDER, BootRecorder, BootService, Outage, start
from dim.cli import main
from dim.errors import StateUnavailable
from dim.lab.processes import sleep_until
from dim.paths import StatePaths
from dim.state import Boot, StateDB
from tests.conftest import require
from tests.unit.conftest import PAIR, SMALL

C01 = "52:54:00:00:00:01"
KERNEL = bytes(range(256)) * 40  # 10 kB, every byte value
INITRD = b"initrd of alpha v2\n" * 100


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


class Http:
    """A real ``dim serve`` (:func:`start`, in this process) on 127.0.0.1 and an aiohttp client,
    driven from synchronous tests."""

    def __init__(self, service: BootService, limits: Limits | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        serving = start(service, "127.0.0.1", 0, limits=limits or Limits())
        self.runner = self.loop.run_until_complete(serving)
        self.app = self.runner.app
        self.host, self.port = self.runner.addresses[0][:2]
        self.client = self.loop.run_until_complete(self._client())

    async def _client(self) -> ClientSession:
        return ClientSession(f"http://{self.host}:{self.port}")

    def get(self, path: str, method: str = "GET", **kwargs) -> Reply:
        async def fetch() -> Reply:
            async with self.client.request(method, path, **kwargs) as response:
                return Reply(response.status, dict(response.headers), await response.read())

        return self.loop.run_until_complete(fetch())

    def gather(self, paths: list[str]) -> list[Reply]:
        async def fetch(path: str) -> Reply:
            async with self.client.get(path) as response:
                return Reply(response.status, dict(response.headers), await response.read())

        async def fetch_all() -> list[Reply]:
            return await asyncio.gather(*(fetch(p) for p in paths))

        return self.loop.run_until_complete(fetch_all())

    def raw(self, target: str) -> Reply:
        """A request line sent as is: no client library normalizes ``..`` or ``%2e`` away."""

        async def send() -> bytes:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
            return data

        head, _, body = self.loop.run_until_complete(send()).partition(b"\r\n\r\n")
        return Reply(int(head.split()[1]), {}, body)

    def flush(self) -> None:
        self.app[RECORDER].flush()

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()


@pytest.fixture
def site(tmp_path) -> Path:
    """cluster.xml with http-root in tmp_path, c01's MAC, and boot builds 1 and 2 of alpha."""
    http_root = tmp_path / "http"
    layout = SMALL.replace(b'nfs="ganesha"/>', f'nfs="ganesha" http-root="{http_root}"/>'.encode())
    (tmp_path / "cluster.xml").write_bytes(layout)
    assert main(["--config", str(tmp_path / "cluster.xml"), "--state", str(tmp_path / "state"),
                 "node", "set", "c01", "--mac", C01]) == 0  # fmt: skip
    for version, kernel, initrd in (("1", b"old kernel", b"old initrd"), ("2", KERNEL, INITRD)):
        folder = tmp_path / "state" / "boot" / "alpha" / version
        folder.mkdir(parents=True)
        (folder / "vmlinuz").write_bytes(kernel)
        (folder / "initrd.img").write_bytes(initrd)
        (folder / "build.json").write_text("{}")
    (http_root / "sub").mkdir(parents=True)
    (http_root / "sub" / "hello.txt").write_text("hello\n")
    (http_root / "boot.ipxe").write_text("a rendered copy\n")
    (tmp_path / "secret.txt").write_text("SECRET\n")
    return tmp_path


@pytest.fixture
def service(site) -> BootService:
    return BootService(site / "cluster.xml", site / "state")


@pytest.fixture
def http(service):
    client = Http(service)
    yield client
    client.close()


def dim(site: Path, *args: str, database: str | None = None) -> int:
    options = ["--config", str(site / "cluster.xml"), "--state", str(site / "state")]
    return main([*options, *(["--database", database] if database else []), *args])


@pytest.fixture
def db_site(site, database) -> Path:
    """The site with its state DB on each backend: c01's MAC recorded in ``database`` too."""
    if database:
        assert dim(site, "node", "set", "c01", "--mac", C01, database=database) == 0
    return site


@pytest.fixture
def db_http(db_site, database):
    client = Http(BootService(db_site / "cluster.xml", db_site / "state", database=database))
    yield client
    client.close()


# -- scripts ---------------------------------------------------------------------------------


def test_boot_ipxe_chains_to_the_node_script_by_mac_on_the_address_the_client_used(http):
    reply = http.get("/boot.ipxe", headers={"Host": "10.10.0.2:8080"})
    assert reply.status == 200
    assert reply.text.startswith("#!ipxe\n")
    assert "chain http://10.10.0.2:8080/dim/nodes/${mac:hexhyp}.ipxe || goto unknown" in reply.text


def test_node_script_boots_the_current_build_with_the_node_arguments(http, site):
    reply = http.get("/dim/nodes/52-54-00-00-00-01.ipxe", headers={"Host": "10.10.0.2:8080"})
    assert reply.status == 200
    kernel_line = next(ln for ln in reply.text.splitlines() if ln.startswith("kernel "))
    assert kernel_line.startswith("kernel http://10.10.0.2:8080/dim/images/alpha/2/vmlinuz ")
    assert " dim.image=alpha " in kernel_line
    assert f" dim.root=10.10.0.2:{site}/state/images/alpha/live " in kernel_line
    assert kernel_line.endswith(f" dim.node=c01 dim.mac={C01} || goto failed")
    assert "initrd --name initrd.img http://10.10.0.2:8080/dim/images/alpha/2/initrd.img" in (
        reply.text
    )


def test_metrics_count_boots_files_bytes_and_refusals(http):
    http.get("/dim/nodes/52-54-00-00-00-01.ipxe")
    http.get("/dim/images/alpha/2/vmlinuz")
    http.get("/dim/images/alpha/2/vmlinuz")
    assert http.raw("/../secret.txt").status == 403
    reply = http.get("/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    lines = set(reply.text.splitlines())
    assert 'dim_boots_total{image="alpha",server="srv"} 1.0' in lines
    assert 'dim_serve_request_seconds_count{kind="kernel"} 2.0' in lines
    assert f'dim_serve_sent_bytes_total{{kind="kernel"}} {2.0 * len(KERNEL)}' in lines
    assert 'dim_serve_refused_requests_total{reason="forbidden",status="403"} 1.0' in lines


def test_without_metrics_the_path_is_a_file_of_http_root_like_any_other(service):
    async def serve() -> int:
        runner = await start(service, "127.0.0.1", 0, metrics=False)
        host, port = runner.addresses[0][:2]
        try:
            async with (
                ClientSession() as client,
                client.get(f"http://{host}:{port}/metrics") as answer,
            ):
                return answer.status
        finally:
            await runner.cleanup()

    assert asyncio.run(serve()) == 404


def test_node_script_follows_an_image_assigned_while_serving(http, site):
    folder = site / "state" / "boot" / "beta" / "7"
    folder.mkdir(parents=True)
    (folder / "vmlinuz").write_bytes(b"k")
    (folder / "initrd.img").write_bytes(b"i")
    assert "dim.image=alpha" in http.get("/dim/nodes/52-54-00-00-00-01.ipxe").text
    assert dim(site, "node", "set", "c01", "--image", "beta") == 0
    text = http.get("/dim/nodes/52-54-00-00-00-01.ipxe").text
    assert "dim.image=beta" in text and "/dim/images/beta/7/vmlinuz" in text


def test_node_script_follows_a_changed_layout_without_restart(http, site):
    layout = site / "cluster.xml"
    changed = layout.read_text().replace(
        '<image name="alpha">', '<image name="alpha" kernel-args="quiet">'
    )
    layout.write_text(changed)
    os.utime(layout, ns=(1, 1))  # a different mtime even within the file system's granularity
    assert " quiet dim.node=c01 " in http.get("/dim/nodes/52-54-00-00-00-01.ipxe").text


def test_a_broken_layout_keeps_the_last_good_one(http, site, caplog):
    layout = site / "cluster.xml"
    layout.write_text(layout.read_text().replace("</group>", "</grop>", 1))
    os.utime(layout, ns=(1, 1))
    with caplog.at_level(logging.ERROR, "dim.serve"):
        assert http.get("/dim/nodes/52-54-00-00-00-01.ipxe").status == 200
    assert "still serving the previous layout" in caplog.text


def test_unknown_mac_is_a_404_ipxe_message_and_a_log_line_naming_it(http, caplog):
    with caplog.at_level(logging.WARNING, "dim.serve"):
        reply = http.get("/dim/nodes/52-54-00-00-00-99.ipxe")
    assert reply.status == 404
    assert reply.text.startswith("#!ipxe\necho dim: unknown MAC 52:54:00:00:00:99")
    assert "sleep 30" in reply.text
    naming = [r for r in caplog.records if "52:54:00:00:00:99" in r.getMessage()]
    assert len(naming) == 1 and "unknown MAC 52:54:00:00:00:99" in naming[0].getMessage()
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("name", ["nonsense.ipxe", "52-54-00-00-00-01", "52-54-00-00-00-01.cfg"])
def test_a_malformed_node_script_name_is_a_404(http, name):
    reply = http.get(f"/dim/nodes/{name}")
    assert reply.status == 404 and reply.text.startswith("#!ipxe\n")


def test_a_node_whose_image_has_no_boot_build_is_told_how_to_build_it(http, site):
    assert dim(site, "node", "set", "c01", "--image", "beta") == 0
    reply = http.get("/dim/nodes/52-54-00-00-00-01.ipxe")
    assert reply.status == 200
    assert "dim boot build beta" in reply.text and "kernel" not in reply.text


# -- kernel and initrd -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, content",
    [
        ("/dim/images/alpha/vmlinuz", KERNEL),
        ("/dim/images/alpha/initrd.img", INITRD),
        ("/dim/images/alpha/2/vmlinuz", KERNEL),
        ("/dim/images/alpha/1/initrd.img", b"old initrd"),
    ],
)
def test_boot_files_are_served_whole_with_their_length(http, path, content):
    reply = http.get(path)
    assert reply.status == 200
    assert reply.body == content
    assert int(reply.headers["Content-Length"]) == len(content)


@pytest.mark.parametrize(
    "asked, start, stop",
    [("bytes=256-511", 256, 512), ("bytes=10000-", 10000, 10240), ("bytes=-40", 10200, 10240)],
)
def test_a_range_of_the_kernel(http, asked, start, stop):
    reply = http.get("/dim/images/alpha/vmlinuz", headers={"Range": asked})
    assert reply.status == 206
    assert reply.body == KERNEL[start:stop]
    assert reply.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(KERNEL)}"


@pytest.mark.parametrize("asked", ["bytes=20000-", "bytes=10240-", "bytes=-0", "BYTES=-0"])
def test_an_unsatisfiable_range_of_the_kernel_is_416(http, asked):
    reply = http.get("/dim/images/alpha/vmlinuz", headers={"Range": asked})
    assert reply.status == 416
    assert reply.headers["Content-Range"] == f"bytes */{len(KERNEL)}"
    assert reply.body == b""


@pytest.mark.parametrize(
    "asked",
    [
        "bytes=0-1,5-6",  # several ranges: allowed to be ignored (RFC 9110, 14.2)
        "bytes=-1,-2",
        "bytes=5-3",  # last before first: invalid
        "bytes=x-5",
        "bytes=-",
        "bytes 0-5",
        "items=0-5",
        "bytes=0x10-",
        "bytes=--5",
        "",
    ],
)
def test_an_invalid_or_multiple_range_is_ignored_and_the_whole_kernel_sent(http, asked):
    reply = http.get("/dim/images/alpha/vmlinuz", headers={"Range": asked})
    assert reply.status == 200
    assert reply.body == KERNEL
    assert "Content-Range" not in reply.headers


@pytest.mark.parametrize(
    "header, size, span",
    [
        (None, 10, (0, 10)),
        ("bytes=2-4", 10, (2, 5)),
        ("bytes=2-400", 10, (2, 10)),
        ("Bytes = 2-4", 10, (2, 5)),
        ("bytes=9-", 10, (9, 10)),
        ("bytes=10-", 10, None),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=-0", 10, None),
        ("bytes=0-", 0, None),  # an empty file: only a suffix is satisfiable
        ("bytes=-5", 0, (0, 0)),
        ("bytes=" + "9" * 40 + "-", 10, None),
        ("bytes=0-" + "9" * 40, 10, (0, 10)),
        ("bytes=1-2, 4-5", 10, (0, 10)),
        ("bytes=4-2", 10, (0, 10)),
    ],
)
def test_byte_range_follows_rfc_9110(header, size, span):
    assert byte_range(header, size) == span


def test_head_of_the_kernel_has_its_length_and_no_body(http):
    reply = http.get("/dim/images/alpha/vmlinuz", method="HEAD")
    assert reply.status == 200 and reply.body == b""
    assert int(reply.headers["Content-Length"]) == len(KERNEL)
    assert reply.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "path",
    [
        "/dim/images/beta/vmlinuz",
        "/dim/images/alpha/3/vmlinuz",
        "/dim/images/nosuch/vmlinuz",
        "/dim/images/alpha/build.json",
        "/dim/images/alpha/2/build.json",
        "/dim/images/%2e%2e/vmlinuz",
    ],
)
def test_missing_or_other_boot_files_are_404(http, path):
    assert http.get(path).status == 404


def test_a_missing_build_names_the_command_that_makes_it(http):
    assert "dim boot build beta" in http.get("/dim/images/beta/initrd.img").text


def test_current_build_is_the_live_version_if_built_else_the_newest(site):
    state = site / "state"
    paths = StatePaths(state)
    assert find_build(paths, "alpha").version == 2
    (state / "images" / "alpha").mkdir(parents=True)
    (state / "images" / "alpha" / "live.version").write_text("1\n")
    assert find_build(paths, "alpha").version == 1
    (state / "images" / "alpha" / "live.version").write_text("5\n")
    assert find_build(paths, "alpha").version == 2
    (state / "boot" / "alpha" / "9").mkdir()  # incomplete: being built
    (state / "boot" / "alpha" / "9" / "vmlinuz").write_bytes(b"k")
    assert find_build(paths, "alpha").version == 2
    assert find_build(paths, "beta") is None


# -- http-root -------------------------------------------------------------------------------


def test_files_below_http_root_are_served(http):
    assert http.get("/sub/hello.txt").body == b"hello\n"
    assert http.get("/sub/nothing").status == 404
    assert http.get("/sub").status == 404


def test_boot_ipxe_is_answered_not_read_from_http_root(http):
    assert http.get("/boot.ipxe").text.startswith("#!ipxe")


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/sub/%2E%2E/%2E%2E/secret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/sub/..%5c..%5csecret.txt",
        "/sub/hello.txt%00",
    ],
)
def test_traversal_out_of_http_root_is_refused(http, target):
    reply = http.raw(target)
    assert reply.status == 403
    assert b"SECRET" not in reply.body and b"root:" not in reply.body


@pytest.mark.parametrize(
    "path", ["/.htpasswd", "/.git/config", "/sub/.hello.txt.swp", "/.git/", "/sub/%2egit/config"]
)
def test_dot_files_below_http_root_are_not_served(http, site, path):
    (site / "http" / ".htpasswd").write_text("SECRET\n")
    (site / "http" / ".git").mkdir()
    (site / "http" / ".git" / "config").write_text("SECRET\n")
    (site / "http" / "sub" / ".hello.txt.swp").write_text("SECRET\n")
    (site / "http" / "sub" / ".git").mkdir()
    (site / "http" / "sub" / ".git" / "config").write_text("SECRET\n")
    reply = http.raw(path)
    assert reply.status == 404 and b"SECRET" not in reply.body


def test_a_symbolic_link_to_a_dot_file_is_not_followed(http, site):
    (site / "http" / ".htpasswd").write_text("SECRET\n")
    (site / "http" / "passwords").symlink_to(".htpasswd")
    assert http.raw("/passwords").status == 404


def test_a_symbolic_link_out_of_http_root_is_refused_and_one_inside_is_followed(http, site):
    (site / "http" / "out").symlink_to(site / "secret.txt")
    (site / "http" / "outdir").symlink_to(site)
    (site / "http" / "in").symlink_to("sub/hello.txt")
    assert http.raw("/out").status == 403
    assert http.raw("/outdir/secret.txt").status == 403
    assert http.raw("/in").body == b"hello\n"


# -- boot records ----------------------------------------------------------------------------


def test_a_boot_is_an_event_and_dim_node_list_shows_it(db_http, db_site, database, capsys):
    site, http = db_site, db_http
    assert http.get("/dim/nodes/52-54-00-00-00-01.ipxe").status == 200
    http.flush()
    events = StateDB.open(site / "state", url=database).events("c01")
    assert (events[0].kind, events[0].detail) == ("boot", "alpha v2 from 127.0.0.1")
    capsys.readouterr()
    assert dim(site, "node", "list", "c0[1-2]", "--json", database=database) == 0
    records = json.loads(capsys.readouterr().out)
    assert records[0]["last_boot"]["image"] == "alpha"
    assert records[0]["last_boot"]["version"] == "2"
    assert records[0]["last_boot"]["client"] == "127.0.0.1"
    assert records[1]["last_boot"] is None
    assert dim(site, "node", "list", "c0[1-2]", database=database) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3:] == ["BOOTED", "LAST", "BOOT"]
    assert lines[1].split()[-3:-1] == ["alpha/2", records[0]["last_boot"]["at"][:10]]
    assert lines[2].split()[-2:] == ["-", "-"]
    # given another image, not yet reset: the next image beside the one it booted
    assert dim(site, "node", "set", "c01", "--image", "beta", database=database) == 0
    capsys.readouterr()
    assert dim(site, "node", "list", "c01", database=database) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[4] == "beta" and row[-3] == "alpha/2"


def test_head_and_refused_requests_record_no_boot(db_http, db_site, database):
    db_http.get("/dim/nodes/52-54-00-00-00-01.ipxe", method="HEAD")
    db_http.get("/dim/nodes/52-54-00-00-00-99.ipxe")
    db_http.flush()
    assert StateDB.open(db_site / "state", url=database).last_boots() == {}


def test_200_nodes_booting_at_once_are_recorded_in_a_few_transactions(site, database):
    cluster_xml = site / "cluster.xml"
    group = '<group name="many" nodes="m[1-200]" image="alpha">'
    group += '<interface network="boot" ip="10.10.1.{n1}"/></group></cluster>'
    text = cluster_xml.read_text().replace('subnet="10.10.0.0/24"', 'subnet="10.10.0.0/16"')
    cluster_xml.write_text(text.replace("</cluster>", group))
    with open(site / "macs.csv", "w") as handle:
        handle.writelines(f"m{i},52:54:00:01:00:{i:02x}\n" for i in range(1, 201))
    macs = str(site / "macs.csv")
    assert dim(site, "node", "import-macs", macs, database=database) == 0
    service = BootService(cluster_xml, site / "state", database=database)
    calls: list[int] = []
    record = service.database().record_boots
    service.database().record_boots = lambda boots: (calls.append(len(boots)), record(boots))
    http = Http(service)
    try:
        replies = http.gather([f"/dim/nodes/52-54-00-01-00-{i:02x}.ipxe" for i in range(1, 201)])
        http.flush()
    finally:
        http.close()
    assert [r.status for r in replies] == [200] * 200
    assert sum(calls) == 200 and len(calls) < 100
    assert len(StateDB.open(site / "state", url=database).last_boots()) == 200


def test_the_recorder_survives_a_database_error(tmp_path, caplog):
    db = StateDB.open(tmp_path)
    recorder = BootRecorder(lambda: db, Outage(tmp_path / "boot-targets.db"))
    recorder.start()
    failing = db.record_boots
    db.record_boots = lambda boots: (_ for _ in ()).throw(OSError("disk full"))
    with caplog.at_level(logging.ERROR, "dim.serve"):
        recorder.record(Boot("c01", "alpha", "1", "10.0.0.1", 1.0))
        recorder.flush()
    db.record_boots = failing
    recorder.record(Boot("c01", "alpha", "1", "10.0.0.1", 2.0))
    recorder.stop()
    assert "1 boots not recorded: disk full" in caplog.text
    assert db.last_boots()["c01"].at == 2.0


def test_every_request_is_one_log_line(http, caplog):
    with caplog.at_level(logging.INFO, "dim.serve"):
        http.get("/dim/images/alpha/vmlinuz")
    lines = [r.getMessage() for r in caplog.records if "vmlinuz" in r.getMessage()]
    assert len(lines) == 1, lines
    client, method, path, status, size, ms = lines[0].split()
    assert (client, method, path, status) == (
        "127.0.0.1",
        "GET",
        "/dim/images/alpha/vmlinuz",
        "200",
    )
    assert int(size) == len(KERNEL) and ms.endswith("ms")


def test_a_node_of_another_server_is_not_booted_here(site):
    layout = site / "cluster.xml"
    text = layout.read_text().replace(
        "<image ", '<server name="srv2" address="10.10.0.3" dhcp="none" nfs="none"/><image ', 1
    )
    text = text.replace('image="alpha">', 'image="alpha" server="srv">')
    layout.write_text(text.replace('image="beta">', 'image="beta" server="srv2">'))
    assert dim(site, "node", "set", "g1", "--mac", "52:54:00:00:01:01") == 0
    http = Http(BootService(layout, site / "state", "srv"))
    try:
        reply = http.get("/dim/nodes/52-54-00-00-01-01.ipxe")
        assert http.get("/dim/nodes/52-54-00-00-00-01.ipxe").status == 200
    finally:
        http.close()
    assert reply.status == 404 and "g1 (52:54:00:00:01:01) boots from server srv2" in reply.text


# -- connections: timeouts, limit, refusals ----------------------------------------------------

MALFORMED = {
    "bad HTTP version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "NUL in the URL": b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    "negative Content-Length": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "Content-Length and Transfer-Encoding": (
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
    "oversized header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "oversized request line": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,
}


def exchange(http: Http, data: bytes, *, wait: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` on a new connection; what came back until the server closed it, and after
    how many seconds (``wait`` at most: a test must not hang on a server that never closes)."""

    async def talk() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection(http.host, http.port)
        started = time.monotonic()
        writer.write(data)
        try:
            received = await asyncio.wait_for(reader.read(), wait)
        finally:
            writer.close()
        return received, time.monotonic() - started

    return http.loop.run_until_complete(talk())


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_request_is_refused_with_one_log_line_and_no_traceback(http, caplog, kind):
    with caplog.at_level(logging.DEBUG):
        received, _ = exchange(http, MALFORMED[kind])
    assert received.startswith(b"HTTP/1.0 400 ") or received.startswith(b"HTTP/1.1 400 ")
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.name for r in lines] == ["dim.serve"]
    assert lines[0].exc_info is None
    text = lines[0].getMessage()
    client, method, path, status, _, _, refused = text.split(" ", 6)
    assert (client, method, path, status) == ("127.0.0.1", "-", "-", "400")
    assert refused.startswith("refused: ") and "\n" not in text and len(text) < 300


def test_a_failing_handler_is_a_500_and_one_line_that_names_the_error(http, service, caplog):
    def broken(boot_url: str):
        raise KeyError("boom")

    service.entry_script = broken
    with caplog.at_level(logging.INFO):
        reply = http.get("/boot.ipxe")
    assert reply.status == 500 and b"boom" not in reply.body
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert lines[0].getMessage().startswith("127.0.0.1 GET /boot.ipxe 500 ")
    assert lines[0].getMessage().endswith("refused: internal error: KeyError: 'boom'")


def test_a_half_sent_request_head_is_closed_after_the_header_timeout(service, caplog):
    http = Http(service, Limits(header_timeout=0.5, keepalive_timeout=30))
    try:
        with caplog.at_level(logging.INFO, "dim.serve"):
            silent, silent_after = exchange(http, b"")
            half, half_after = exchange(http, b"GET /boot.ipxe HTTP/1.1\r\nHost: x\r\nUser-Ag")
    finally:
        http.close()
    assert silent == half == b""
    assert 0.4 < silent_after < 5 and 0.4 < half_after < 5
    closed = [r.getMessage() for r in caplog.records if "closed:" in r.getMessage()]
    assert closed == ["127.0.0.1 closed: no complete request head within 0.5 s (41 bytes received)"]


def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(service, caplog):
    http = Http(service, Limits(header_timeout=30, keepalive_timeout=0.5))
    try:
        request = b"GET /sub/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        with caplog.at_level(logging.DEBUG, "dim.serve"):
            received, after = exchange(http, request + request)
    finally:
        http.close()
    assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(b"\r\n\r\nhello\n")
    assert received.count(b"HTTP/1.1 200 OK") == 2
    assert 0.4 < after < 5
    (line,) = [r for r in caplog.records if "idle" in r.getMessage()]
    assert line.levelno == logging.DEBUG
    client, idle = re.fullmatch(
        r"(\S+) closed: idle for ([0-9.]+) s after 2 requests \(--keepalive-timeout 0.5 s\)",
        line.getMessage(),
    ).groups()
    assert client == "127.0.0.1" and 0.5 <= float(idle) < 5


def test_a_slow_request_body_is_cut_after_the_body_timeout(service):
    http = Http(service, Limits(body_timeout=0.5))
    try:
        request = b"GET /sub/hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"
        received, after = exchange(http, request)
    finally:
        http.close()
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert 0.4 < after < 5


def test_connections_beyond_the_limit_get_503_at_once_until_one_closes(service, caplog):
    http = Http(service, Limits(max_connections=3))

    async def scenario() -> tuple[bytes, bytes]:
        held = [await asyncio.open_connection(http.host, http.port) for _ in range(3)]
        await asyncio.sleep(0.1)
        over = await asyncio.wait_for(exchange_on(b"GET /sub/hello.txt HTTP/1.0\r\n\r\n"), 5)
        held[0][1].close()
        await asyncio.sleep(0.2)
        again = await asyncio.wait_for(exchange_on(b"GET /sub/hello.txt HTTP/1.0\r\n\r\n"), 5)
        for _, writer in held:
            writer.close()
        return over, again

    async def exchange_on(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(http.host, http.port)
        writer.write(data)
        try:
            return await reader.read()
        finally:
            writer.close()

    try:
        with caplog.at_level(logging.INFO, "dim.serve"):
            over, again = http.loop.run_until_complete(scenario())
    finally:
        http.close()
    assert over.startswith(b"HTTP/1.1 503 Service Unavailable") and b"Retry-After: 5" in over
    assert again.startswith(b"HTTP/1.0 200 OK") and again.endswith(b"hello\n")
    assert "3 connections open, the limit (--max-connections): refusing new ones" in caplog.text
    assert "accepting connections again: 1 were refused meanwhile" in caplog.text


def test_one_line_keeps_a_parser_message_on_one_printable_line():
    message = "Bad status line: Invalid HTTP version:\n\n  b'GET / HTTP/9.9'\n      ^"
    assert one_line(message) == "Bad status line: Invalid HTTP version: b'GET / HTTP/9.9'"
    assert one_line("a\x00b\x1b[31m\r\nc") == "a\\x00b\\x1b[31m\\x0d c"
    assert len(one_line("x" * 1000)) == 200


def test_a_client_that_stops_reading_a_file_is_cut_after_the_send_timeout(service, site, caplog):
    with open(site / "http" / "big.img", "wb") as big:
        big.truncate(64 << 20)  # sparse: 64 MiB, more than loopback's buffers hold
    http = Http(service, Limits(send_timeout=0.5))

    async def stall() -> float:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await http.loop.sock_connect(sock, (http.host, http.port))
        await http.loop.sock_sendall(sock, b"GET /big.img HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        await asyncio.sleep(0.2)
        while True:  # the server must end the connection; the client reads nothing until then
            state = await http.loop.run_in_executor(None, tcp_state, sock)
            if state != 1 or time.monotonic() - started > 15:  # 1: TCP_ESTABLISHED
                sock.close()
                return time.monotonic() - started
            await asyncio.sleep(0.1)

    try:
        with caplog.at_level(logging.INFO, "dim.serve"):
            after = http.loop.run_until_complete(stall())
    finally:
        http.close()
    assert after < 10
    assert "GET /big.img 200 67108864 " in caplog.text
    assert "cut: took more than 0.5 s to receive 256 KiB" in caplog.text


def test_a_slow_steady_client_is_not_cut_while_it_takes_its_share(service, site, caplog):
    """A storm's share of the link: slow, but taking bytes all along (4 MiB pieces cut it)."""
    with open(site / "http" / "big.img", "wb") as big:
        big.truncate(12 << 20)
    http = Http(service, Limits(send_timeout=0.3))

    def read_slowly() -> int:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.connect((http.host, http.port))
        sock.sendall(b"GET /big.img HTTP/1.0\r\n\r\n")
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
            time.sleep(0.01)  # about 5 MB/s: 4 MiB take 0.8 s, 256 KiB 0.05 s
        sock.close()
        return received

    try:
        with caplog.at_level(logging.INFO, "dim.serve"):
            received = http.loop.run_until_complete(http.loop.run_in_executor(None, read_slowly))
    finally:
        http.close()
    assert "cut:" not in caplog.text
    assert received > 12 << 20  # the head and every byte of the file


async def read_paced(
    http: Http, path: str, chunk: int, pause: float, paced_for: float
) -> tuple[int, float]:
    """GET ``path`` and read ``chunk`` bytes every ``pause`` s for ``paced_for`` s, then the
    rest at once: bytes received (head included) and when the server ended the connection."""
    loop = http.loop
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await loop.sock_connect(sock, (http.host, http.port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    started = time.monotonic()
    received = 0
    try:
        while time.monotonic() - started < paced_for:
            data = await loop.sock_recv(sock, chunk)
            if not data:
                return received, time.monotonic() - started
            received += len(data)
            await asyncio.sleep(pause)
        while data := await loop.sock_recv(sock, 1 << 20):
            received += len(data)
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return received, time.monotonic() - started


def test_a_storms_clients_taking_their_share_are_not_cut_and_a_slow_reader_among_them_is(
    service, site, caplog
):
    """16 files at once, the floor 256 KiB per 0.5 s (512 kB/s): 15 clients reading 200 kB/s
    each (a storm's share of the link) are served whole; one reading 5 kB/s is cut within its
    first window, below its 16 KiB share. The per-connection floor cut all 16."""
    with open(site / "http" / "big.img", "wb") as big:
        big.truncate(8 << 20)  # more than loopback's socket buffers and 3 s of reading
    http = Http(service, Limits(send_timeout=0.5))

    async def storm() -> list[tuple[int, float]]:
        steady = [read_paced(http, "/big.img", 8192, 0.04, 3.0) for _ in range(15)]
        slow = read_paced(http, "/big.img", 1024, 0.2, 10.0)
        return await asyncio.gather(slow, *steady)

    try:
        with caplog.at_level(logging.INFO, "dim.serve"):
            (slow, _), *steady = http.loop.run_until_complete(storm())
    finally:
        http.close()
    lines = [r.getMessage() for r in caplog.records if "GET /big.img" in r.getMessage()]
    assert [" cut: " in line for line in lines] == [True] + [False] * 15  # cut while shared
    share = "cut: took more than 0.5 s to receive 16384 bytes, its share of 256 KiB among 16 "
    assert share in lines[0]
    assert slow < 8 << 20
    assert [received > 8 << 20 for received, _ in steady] == [True] * 15  # head and file


def test_the_files_sent_at_once_are_counted_over_time_not_at_the_moment_of_a_look():
    """A storm that ends just before a client's floor is looked at still shared its period:
    1 file for 4 s and 15 more for 2 of them is 34 file-seconds, 8.5 files on average."""
    senders = Senders()
    senders.add(0.0, 1)
    began = senders.area(0.0)  # a look at the start of the period
    senders.add(1.0, 15)
    senders.add(3.0, -15)
    assert senders.count == 1
    assert senders.area(4.0) - began == 34.0


def test_the_files_of_every_worker_share_the_floor_through_their_board():
    """Two workers' counts on one board: each sees the other's files in its area (a worker
    alone would ask each of its clients for twice the share)."""
    board = Senders.board(2)
    first, second = Senders(board, 0), Senders(board, 1)
    first.add(0.0, 1)
    second.add(0.0, 3)
    assert first.area(2.0) == second.area(2.0) == 8.0  # 4 files for 2 s
    second.add(2.0, -3)
    assert first.area(4.0) == 10.0  # and 1 file for 2 s more
    assert Senders().area(4.0) == 0.0  # a lone worker's counts its own files only


def test_a_worker_in_another_process_is_counted_through_the_shared_board():
    board = Senders.board(2)
    here = Senders(board, 0)
    pid = os.fork()
    if pid == 0:  # the other worker: 5 files from t = 1 s
        Senders(board, 1).add(1.0, 5)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    here.add(0.0, 1)
    assert here.area(3.0) == 3.0 + 10.0


def test_a_slow_reader_alone_is_cut_below_256_kib_per_send_timeout(service, site, caplog):
    with open(site / "http" / "big.img", "wb") as big:
        big.truncate(8 << 20)
    http = Http(service, Limits(send_timeout=0.5))
    try:
        with caplog.at_level(logging.INFO, "dim.serve"):
            run = read_paced(http, "/big.img", 8192, 0.04, 10.0)  # 200 kB/s
            received, after = http.loop.run_until_complete(run)
    finally:
        http.close()
    assert "cut: took more than 0.5 s to receive 256 KiB" in caplog.text
    assert received < 8 << 20 and after < 5


def tcp_state(sock: socket.socket) -> int:
    """The socket's TCP state (Linux's struct tcp_info begins with it)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


# -- the state DB unreachable ----------------------------------------------------------------

DOWN = "postgresql://dim:s3cret@127.0.0.1:1/dim"  # nothing listens on port 1: refused at once


def require_psycopg() -> None:
    require(importlib.util.find_spec("psycopg") is not None, "psycopg is not installed")


def test_while_the_db_is_unreachable_nodes_boot_from_the_boot_targets(site, caplog):
    require_psycopg()
    targets.write(StatePaths(site / "state"), {("c01", "boot"): C01}, {}, journal=0)
    with caplog.at_level(logging.INFO, "dim.serve"):
        service = BootService(site / "cluster.xml", site / "state", database=DOWN)  # starts
        http = Http(service)
        try:
            replies = [http.get("/dim/nodes/52-54-00-00-00-01.ipxe") for _ in range(3)]
            unknown = http.get("/dim/nodes/52-54-00-00-00-99.ipxe")
            http.flush()
            assert http.app[RECORDER].pending == 3
        finally:
            http.close()
    assert [r.status for r in replies] == [200] * 3
    assert "dim/images/alpha/2/vmlinuz" in replies[0].text and "dim.node=c01" in replies[0].text
    assert unknown.status == 404
    outage = [r.getMessage() for r in caplog.records if "answering boot" in r.getMessage()]
    assert len(outage) == 1, outage  # once per outage, not per request
    assert "boot-targets.db" in outage[0] and "s3cret" not in caplog.text


def test_without_boot_targets_an_unreachable_db_is_a_503_to_retry(site):
    require_psycopg()
    http = Http(BootService(site / "cluster.xml", site / "state", database=DOWN))
    try:
        reply = http.get("/dim/nodes/52-54-00-00-00-01.ipxe")
    finally:
        http.close()
    assert reply.status == 503 and "boot-targets.db" in reply.text and "sleep 30" in reply.text


class FlakyDB:
    """record_boots refuses while ``down`` is set, as a state DB that cannot be reached."""

    def __init__(self) -> None:
        self.down = True
        self.written: list[list[Boot]] = []

    def record_boots(self, boots: list[Boot]) -> None:
        if self.down:
            raise StateUnavailable("cannot write the state DB: connection refused")
        self.written.append(boots)


def test_boots_kept_through_an_outage_are_written_when_the_db_answers(tmp_path, caplog):
    db, outage = FlakyDB(), Outage(tmp_path / "boot-targets.db")
    outage.retry = 0.1
    recorder = BootRecorder(lambda: db, outage, pending=3)
    recorder.start()
    try:
        with caplog.at_level(logging.INFO, "dim.serve"):
            for number in range(4):
                recorder.record(Boot(f"c0{number + 1}", "alpha", "1", "10.0.0.1", number))
                recorder.flush()
            assert recorder.pending == 3 and outage.down  # the oldest dropped, beyond PENDING
            db.down = False
            assert sleep_until(lambda: recorder.pending == 0, 5)
    finally:
        recorder.stop()
    assert [b.node for batch in db.written for b in batch] == ["c02", "c03", "c04"]
    assert not outage.down and "reachable again" in caplog.text
    assert "3 boots recorded after the outage (1 older ones were dropped)" in caplog.text


# -- failover sets -----------------------------------------------------------------------------

A1, B1, C1 = "52:54:00:20:00:01", "52:54:00:20:01:01", "52:54:00:20:02:01"


@pytest.fixture
def pair_site(tmp_path) -> Path:
    """`PAIR` (srv1 and srv2 in a set, solo beside), a1, b1 and c1 recorded, alpha and beta
    built."""
    (tmp_path / "cluster.xml").write_bytes(PAIR)
    for node, mac in (("a1", A1), ("b1", B1), ("c1", C1)):
        assert dim(tmp_path, "node", "set", node, "--mac", mac) == 0
    for image in ("alpha", "beta"):
        folder = tmp_path / "state" / "boot" / image / "1"
        folder.mkdir(parents=True)
        for name in ("vmlinuz", "initrd.img", "build.json"):
            (folder / name).write_text("{}")
    return tmp_path


@pytest.fixture
def srv2(pair_site):
    client = Http(BootService(pair_site / "cluster.xml", pair_site / "state", "srv2"))
    yield client
    client.close()


def kernel_line(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("kernel "))


def test_a_peers_node_is_booted_with_its_own_servers_address(srv2, pair_site):
    # srv1 is dead and srv2 holds its address: a1 chains from srv1's URL, srv2 answers
    reply = srv2.get("/dim/nodes/52-54-00-20-00-01.ipxe", headers={"Host": "10.20.0.1:8080"})
    assert reply.status == 200
    line = kernel_line(reply.text)
    assert line.startswith("kernel http://10.20.0.1:8080/dim/images/alpha/1/vmlinuz ")
    state = pair_site / "state"
    assert f" dim.server=10.20.0.1 dim.image=alpha dim.root=10.20.0.1:{state}/images/" in line
    assert f" dim.rw=10.20.0.1:{state}/nodes " in line
    assert line.endswith(f" dim.node=a1 dim.mac={A1} || goto failed")
    own = kernel_line(srv2.get("/dim/nodes/52-54-00-20-01-01.ipxe").text)
    assert " dim.server=10.20.0.2 " in own and " dim.node=b1 " in own


def test_a_peers_node_asking_without_a_usable_host_gets_its_own_servers_url(srv2):
    reply = srv2.get("/dim/nodes/52-54-00-20-00-01.ipxe", headers={"Host": "not a host"})
    assert kernel_line(reply.text).startswith("kernel http://10.20.0.1:8080/dim/images/alpha/")


def test_a_node_of_a_server_outside_the_set_is_refused(srv2, caplog):
    with caplog.at_level(logging.WARNING, "dim.serve"):
        reply = srv2.get("/dim/nodes/52-54-00-20-02-01.ipxe")
    assert reply.status == 404
    assert reply.text.startswith(f"#!ipxe\necho dim: c1 ({C1}) boots from server solo")
    assert f"c1 ({C1}) boots from server solo" in caplog.text


def test_health_answers_ok(srv2):
    reply = srv2.get("/dim/health")
    assert (reply.status, reply.text) == (200, "ok\n")


@pytest.mark.parametrize(
    ("server", "listen"), [("srv1", "0.0.0.0"), ("solo", "10.20.0.3")], ids=["in-set", "alone"]
)
def test_serve_listens_on_every_address_in_a_set_and_on_its_own_alone(
    pair_site, monkeypatch, server, listen
):
    from dim.boot import serve as boot_serve

    started = []
    monkeypatch.setattr(
        boot_serve,
        "run",
        lambda service, host, port, *rest, **options: started.append((host, port)),
    )
    assert dim(pair_site, "serve", "--server", server) == 0
    assert started == [(listen, 8080)]


# 3,000 nodes, more than the 2,048 connections of a small cluster's worker
RACKS = """<?xml version="1.0"?>
<cluster name="racks" domain="racks.example">
  <network name="boot" subnet="10.80.0.0/16" gateway="10.80.0.1"/>
  <server name="srv" address="10.80.0.2" dhcp="dnsmasq" nfs="ganesha"/>
  <image name="alpha"><persist path="/etc"/></image>
  <group name="racks" nodes="r[01-12]n[001-250]" image="alpha">
    <interface network="boot" ip="10.80.{n1}.{n2}"/>
  </group>
</cluster>
"""


@pytest.mark.parametrize(
    ("layout", "options", "connections"),
    [
        ("small", (), 2048),
        ("racks", (), 3064),
        ("racks", ("--max-connections", "100"), 100),
    ],
    ids=["small-default", "every-node-and-64", "given"],
)
def test_each_worker_holds_every_node_of_its_server_at_once_unless_told(
    site, monkeypatch, layout, options, connections
):
    """A node holds its connection from script to initrd: two workers of 2,048 refused 828 to
    901 of 5,000 nodes arriving at once (bench/serve_burst.py), and one worker may accept most
    of a burst."""
    from dim.boot import serve as boot_serve

    if layout == "racks":
        (site / "cluster.xml").write_text(RACKS)
    started = []
    monkeypatch.setattr(
        boot_serve,
        "run",
        lambda service, host, port, workers, limits, **options: started.append(limits),
    )
    assert dim(site, "serve", *options) == 0
    assert [limits.max_connections for limits in started] == [connections]


def test_a_client_still_reading_its_answer_is_not_closed_as_idle(service, site):
    """A storm's node reads the end of its kernel from the socket buffers long after dim serve
    handed it over, then asks for its initrd on the same connection: that is not idleness."""
    with open(site / "http" / "big.img", "wb") as big:
        big.truncate(8 << 20)
    http = Http(service, Limits(keepalive_timeout=0.5, send_timeout=5))

    def read_slowly_then_ask_again() -> bytes:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.connect((http.host, http.port))
        sock.sendall(b"GET /big.img HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        body = len(received.partition(b"\r\n\r\n")[2])
        while body < 8 << 20:  # about 3 MB/s: 2.7 s, the last seconds from the buffers
            body += len(sock.recv(min(65536, (8 << 20) - body)))
            time.sleep(0.02)
        sock.sendall(b"GET /sub/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        return answer

    try:
        answer = http.loop.run_until_complete(
            http.loop.run_in_executor(None, read_slowly_then_ask_again)
        )
    finally:
        http.close()
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"hello\n")
