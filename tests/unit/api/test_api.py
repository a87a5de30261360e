"""The REST API: a real ``dim api`` process on loopback, real tokens, a real state DB and image
store; each endpoint, authentication and roles, hostile input, the OpenAPI document, TLS."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dim.api.routes import PREFIX, ROUTES
from dim.cli import main
from tests.unit.conftest import SMALL

C01 = "52:54:00:00:00:01"


def dim(site: Path, *args: str) -> subprocess.CompletedProcess:
    """The dim command, as a process: what an administrator's shell runs."""
    options = ["--config", str(site / "cluster.xml"), "--state", str(site / "state")]
    return subprocess.run(
        [sys.executable, "-m", "dim", *options, *args], capture_output=True, text=True, timeout=60
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """A running ``dim api``, and requests to it."""

    def __init__(self, site: Path, *options: str, scheme: str = "http") -> None:
        self.site = site
        self.port = free_port()
        self.scheme = scheme
        self.context: ssl.SSLContext | None = None
        base = ["--config", str(site / "cluster.xml"), "--state", str(site / "state")]
        self.log = (site / f"api-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dim", *base, "api", "--port", str(self.port),
             "--root", str(site / "root"), "--nfs-pid-file", "self", *options],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (site / f"api-{self.port}.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("dim api did not listen within 30 s")

    def call(
        self, method: str, path: str, token: str | None = None, body: object = None, raw=None
    ) -> tuple[int, dict]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.scheme}://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def job(self, token: str, number: int, timeout: float = 120) -> dict:
        """Job ``number`` once it ended."""
        deadline = time.monotonic() + timeout
        while True:
            status, job = self.call("GET", f"{PREFIX}/jobs/{number}", token)
            assert status == 200, job
            if job["state"] != "running" or time.monotonic() > deadline:
                return job
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """SMALL's layout, c01's MAC, image alpha at versions 1 and 2, a token of each role."""
    site = tmp_path_factory.mktemp("api")
    (site / "cluster.xml").write_bytes(SMALL)
    tree = site / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "motd").write_text("one\n")
    options = ["--config", str(site / "cluster.xml"), "--state", str(site / "state")]
    assert main([*options, "node", "set", "c01", "--mac", C01]) == 0
    assert main([*options, "image", "import", "alpha", "--from", str(tree)]) == 0
    (tree / "etc" / "motd").write_text("two\n")
    (tree / "etc" / "issue").write_text("new\n")
    assert main([*options, "image", "sync", "alpha", "--from", str(tree)]) == 0
    (site / "root").mkdir()
    return site


@pytest.fixture(scope="module")
def tokens(site) -> dict[str, str]:
    found = {}
    for name, role in (("helpdesk", "reader"), ("ops", "admin")):
        added = dim(site, "api", "token", "add", name, "--role", role)
        assert added.returncode == 0, added.stderr
        found[role] = added.stdout.strip().splitlines()[-1].split()[-1]
    return found


@pytest.fixture(scope="module")
def api(site, tokens) -> Iterator[Api]:
    server = Api(site)
    yield server
    server.stop()


def nodes_query(**query: str) -> str:
    return f"{PREFIX}/nodes?{urllib.parse.urlencode(query)}"


# -- tokens ----------------------------------------------------------------------------------


def test_token_add_prints_the_token_last_and_keeps_only_its_hash_in_a_0600_file(site, tokens):
    path = site / "api-tokens"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert tokens["reader"].startswith("dim_") and tokens["reader"] not in text
    assert {t["name"]: t["role"] for t in json.loads(text)["tokens"]} == {
        "helpdesk": "reader",
        "ops": "admin",
    }
    listed = dim(site, "api", "token", "list", "--json")
    assert [t["name"] for t in json.loads(listed.stdout)] == ["helpdesk", "ops"]


def test_a_token_file_open_to_others_is_refused_with_the_fix(site, tokens, api):
    path = site / "api-tokens"
    path.chmod(0o644)
    try:
        status, answer = api.call("GET", f"{PREFIX}/nodes", tokens["reader"])
        assert status == 500
        assert "api-tokens" in answer["error"] and answer["hint"] == f"chmod 600 {path}"
    finally:
        path.chmod(0o600)


def test_a_duplicate_or_malformed_token_name_is_refused(site, tokens):
    again = dim(site, "api", "token", "add", "ops", "--role", "reader")
    assert again.returncode == 2 and "a token named 'ops' exists" in again.stderr
    bad = dim(site, "api", "token", "add", "a b\nc", "--role", "reader")
    assert bad.returncode == 2 and "invalid token name" in bad.stderr


def test_a_removed_token_is_refused_from_the_next_request(site, api):
    added = dim(site, "api", "token", "add", "temp", "--role", "admin")
    secret = added.stdout.split()[-1]
    assert api.call("GET", f"{PREFIX}/whoami", secret) == (
        200,
        {"name": "temp", "role": "admin", "created": pytest.approx(time.time(), abs=60)},
    )
    assert dim(site, "api", "token", "remove", "temp").returncode == 0
    assert api.call("GET", f"{PREFIX}/whoami", secret)[0] == 401


# -- authentication and roles ----------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_refuses_a_request_without_a_valid_token(api, route):
    path = PREFIX + route.path.format(name="c01", nodeset="c01", id="1")
    assert api.call(route.method, path)[0] == 401
    status, answer = api.call(route.method, path, "dim_not-a-token")
    assert (status, answer) == (401, {"error": "unknown token"})


def test_a_reader_may_not_switch_and_nothing_changes(site, tokens, api):
    status, answer = api.call(
        "POST", f"{PREFIX}/nodes/c01/switch", tokens["reader"], {"image": "beta"}
    )
    assert status == 403
    assert "helpdesk" in answer["error"] and "admin" in answer["error"]
    assert node(api, tokens, "c01")["image"] == "alpha"


def test_openapi_is_served_without_a_token_and_names_every_route(api):
    status, doc = api.call("GET", f"{PREFIX}/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    served = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    declared = {(r.method, PREFIX + r.path) for r in ROUTES}
    assert served == declared | {("GET", f"{PREFIX}/openapi.json")}
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_openapi_document_is_valid_openapi(api):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(api.call("GET", f"{PREFIX}/openapi.json")[1])


# -- nodes -----------------------------------------------------------------------------------


def node(api: Api, tokens: dict, name: str) -> dict:
    status, answer = api.call("GET", f"{PREFIX}/nodes/{name}", tokens["reader"])
    assert status == 200, answer
    return answer


def test_nodes_are_what_dim_node_list_json_prints(site, tokens, api):
    status, answer = api.call(
        "GET", nodes_query(nodeset="@compute", exclude="c02"), tokens["reader"]
    )
    assert status == 200
    listed = dim(site, "node", "list", "@compute", "-x", "c02", "--json")
    assert answer["nodes"] == json.loads(listed.stdout)
    assert [n["name"] for n in answer["nodes"]] == ["c01", "c03", "c04"]


def test_a_node_shows_its_record_status_and_events(tokens, api):
    c01 = node(api, tokens, "c01")
    assert c01["interfaces"][0]["mac"] == C01
    assert c01["status"]["state"] == "unknown" and c01["status"]["live_version"] == 2
    assert [e["kind"] for e in c01["events"]] == ["mac"]


def test_status_counts_every_node(tokens, api):
    status, answer = api.call("GET", f"{PREFIX}/status", tokens["reader"])
    assert status == 200 and answer["sessions_known"] is True
    assert sum(answer["counts"].values()) == len(answer["nodes"]) == 6


def test_an_admin_switch_changes_the_node_and_logs_the_token_name(site, tokens, api):
    status, answer = api.call(
        "POST", f"{PREFIX}/nodes/{urllib.parse.quote('@gpu')}/switch", tokens["admin"],
        {"image": "alpha"},
    )  # fmt: skip
    assert status == 200, answer
    assert (answer["nodes"], answer["image"], answer["switched"]) == ("g[1-2]", "alpha", 2)
    listed = json.loads(dim(site, "node", "list", "@gpu", "--json").stdout)
    assert [n["image"] for n in listed] == ["alpha", "alpha"]
    status, events = api.call("GET", f"{PREFIX}/events?node=g1&limit=1", tokens["reader"])
    assert [(e["kind"], e["detail"], e["actor"]) for e in events["events"]] == [
        ("image", "alpha", "api:ops")
    ]
    back = api.call("POST", f"{PREFIX}/nodes/g%5B1-2%5D/image", tokens["admin"], {"image": "beta"})
    assert back == (200, {"nodes": "g[1-2]", "image": "beta", "changed": 2})


def test_a_bad_request_gets_the_message_the_cli_prints(site, tokens, api):
    cli = dim(site, "node", "switch", "c99", "alpha")
    assert cli.returncode == 2
    message = cli.stderr.splitlines()[0].removeprefix("dim: error: ")
    status, answer = api.call(
        "POST", f"{PREFIX}/nodes/c99/switch", tokens["admin"], {"image": "alpha"}
    )
    assert (status, answer["error"]) == (400, message)


HOSTILE = [
    ("POST", "/nodes/c01/switch", None, b"not json"),
    ("POST", "/nodes/c01/switch", None, b"[1, 2]"),
    ("POST", "/nodes/c01/switch", {"image": 7}, None),
    ("POST", "/nodes/c01/switch", {}, None),
    ("POST", "/nodes/c01/switch", {"image": "alpha\n"}, None),
    ("POST", "/nodes/c01/switch", {"image": "x" * 5000}, None),
    ("POST", "/nodes/c01/switch", {"image": "../../etc"}, None),
    ("POST", "/nodes/%40nosuchgroup/switch", {"image": "alpha"}, None),
    ("POST", "/nodes/c%5B01-99999999%5D/switch", {"image": "alpha"}, None),
    ("POST", "/nodes/c01%0Ag1/switch", {"image": "alpha"}, None),
    ("GET", "/nodes?nodeset=c01%1B%5B31m", None, None),
    ("GET", "/nodes/c%5B01-02%5D", None, None),
    ("GET", "/events?limit=0", None, None),
    ("GET", "/events?limit=1e9", None, None),
    ("GET", "/events?after=-1", None, None),
    ("GET", "/images/alpha/diff?from=1", None, None),
    ("GET", "/images/alpha/diff?from=1&to=%D9%A3", None, None),
    ("GET", "/images/nosuch/diff?from=1&to=2", None, None),
]


@pytest.mark.parametrize(("method", "path", "body", "raw"), HOSTILE)
def test_hostile_input_is_a_json_400_and_changes_nothing(
    site, tokens, api, method, path, body, raw
):
    before = observed(api, tokens)
    status, answer = api.call(method, PREFIX + path, tokens["admin"], body, raw)
    assert status == 400, answer
    assert answer["error"] and "\n" not in answer["error"]
    assert observed(api, tokens) == before


def observed(api: Api, tokens: dict) -> tuple:
    """Every node's record and the event log, as the API shows them."""
    return tuple(api.call("GET", PREFIX + path, tokens["reader"]) for path in ("/nodes", "/events"))


def test_a_body_larger_than_64_kib_is_refused(tokens, api):
    raw = json.dumps({"image": "alpha", "pad": "x" * 70_000}).encode()
    status, answer = api.call("POST", f"{PREFIX}/nodes/c01/switch", tokens["admin"], raw=raw)
    assert status == 413 and answer["error"]


# -- groups, images, events ------------------------------------------------------------------


def test_groups_give_their_node_sets_sizes_and_images(tokens, api):
    status, answer = api.call("GET", f"{PREFIX}/groups", tokens["reader"])
    assert status == 200
    assert {g["name"]: (g["nodeset"], g["nodes"]) for g in answer["groups"]} == {
        "compute": ("c[01-04]", 4),
        "gpu": ("g[1-2]", 2),
    }


def test_images_their_versions_and_a_diff(site, tokens, api):
    status, answer = api.call("GET", f"{PREFIX}/images", tokens["reader"])
    assert status == 200
    assert json.loads(dim(site, "image", "list", "--json").stdout) == answer["images"]
    status, alpha = api.call("GET", f"{PREFIX}/images/alpha", tokens["reader"])
    assert (alpha["versions"], alpha["live"], len(alpha["history"])) == ([1, 2], 2, 2)
    status, delta = api.call("GET", f"{PREFIX}/images/alpha/diff?from=1&to=2", tokens["reader"])
    assert delta == {"added": ["/etc/issue"], "changed": ["/etc/motd"], "removed": []}


def test_a_reset_must_be_confirmed_then_gives_fresh_replicas(site, tokens, api):
    path = f"{PREFIX}/nodes/c03/reset"
    status, answer = api.call("POST", path, tokens["admin"], {})
    assert status == 400 and 'send {"confirm": true}' in answer["error"]
    assert api.call("POST", path, tokens["admin"], {"confirm": "yes"})[0] == 400
    status, answer = api.call("POST", path, tokens["admin"], {"confirm": True})
    assert (status, answer) == (200, {"reset": [{"image": "alpha", "nodes": "c03"}]})
    status, events = api.call("GET", f"{PREFIX}/events?node=c03&limit=1", tokens["reader"])
    assert [(e["kind"], e["actor"]) for e in events["events"]] == [("reset", "api:ops")]


def test_a_rollback_runs_as_a_job_and_makes_a_new_version(site, tokens, api):
    status, started = api.call(
        "POST", f"{PREFIX}/images/alpha/rollback", tokens["admin"], {"version": 1}
    )
    assert status == 200, started
    job = api.job(tokens["admin"], started["job"])
    assert job["state"] == "done", job
    (result,) = job["results"]
    assert result["version"] == 3 and result["delta"]["removed"] == 1
    status, alpha = api.call("GET", f"{PREFIX}/images/alpha", tokens["reader"])
    assert alpha["live"] == 3
    status, answer = api.call(
        "POST", f"{PREFIX}/images/alpha/rollback", tokens["admin"], {"version": 9}
    )
    assert status == 400 and "no version 9" in answer["error"]


def test_events_after_a_number_are_the_newer_ones(tokens, api):
    status, answer = api.call("GET", f"{PREFIX}/events?limit=1000", tokens["reader"])
    newest = answer["events"][0]["id"]
    assert api.call("GET", f"{PREFIX}/events?after={newest}", tokens["reader"]) == (
        200,
        {"events": []},
    )
    status, older = api.call("GET", f"{PREFIX}/events?after={newest - 1}", tokens["reader"])
    assert [e["id"] for e in older["events"]] == [newest]


# -- serving ---------------------------------------------------------------------------------


def test_it_serves_https_with_the_given_certificate(site, tokens):
    openssl = shutil.which("openssl")
    assert openssl, "openssl is part of Debian's base system"
    cert, key = site / "cert.pem", site / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = Api(site, "--cert", str(cert), "--key", str(key), scheme="https")
    try:
        server.context = ssl.create_default_context(cafile=str(cert))
        assert server.call("GET", f"{PREFIX}/whoami", tokens["reader"])[1]["name"] == "helpdesk"
    finally:
        server.stop()


def test_it_listens_on_localhost_unless_told_otherwise(site):
    shown = dim(site, "api", "--help").stdout
    assert "--listen TEXT" in shown and "[default: 127.0.0.1]" in shown


def test_a_port_taken_is_one_line_and_exit_1(site, tokens, api):
    taken = dim(site, "api", "--port", str(api.port))
    assert taken.returncode == 1
    assert taken.stderr.strip() == f"dim: error: cannot listen on 127.0.0.1:{api.port}: " + (
        os.strerror(98)
    )
