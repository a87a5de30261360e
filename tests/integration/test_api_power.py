"""The REST API's power jobs against a simulated IPMI BMC (OpenIPMI's ipmi_sim on loopback),
the live event stream, and the dashboard's files: a real ``dim api`` process."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from dim.api.routes import PREFIX
from tests.integration.power_sims import Lab, entry, ipmi_sim
from tests.unit.api.test_api import Api, dim

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with ipmi_sim(tmp_path_factory.mktemp("ipmi_sim")) as running:
        yield running


@pytest.fixture(scope="module")
def site(tmp_path_factory, sim):
    folder = tmp_path_factory.mktemp("api-power")
    lab = Lab(folder, None)  # type: ignore[arg-type]
    lab.layout({"cn1": ("ipmi", sim.address, "ipmi"), "cn2": ("ipmi", "127.0.0.1:1", "ipmi")})
    lab.credentials(entry("ipmi"))
    return folder


@pytest.fixture(scope="module")
def tokens(site) -> dict[str, str]:
    found = {}
    for name, role in (("helpdesk", "reader"), ("ops", "admin")):
        added = dim(site, "api", "token", "add", name, "--role", role)
        assert added.returncode == 0, added.stderr
        found[role] = added.stdout.split()[-1]
    return found


@pytest.fixture(scope="module")
def api(site, tokens):
    (site / "root").mkdir(exist_ok=True)
    server = Api(site, "--credentials", str(site / "credentials"))
    yield server
    server.stop()


def finished(api: Api, token: str, number: int) -> dict:
    return api.job(token, number)


def test_an_admin_power_job_reaches_the_bmc_and_logs_each_node_with_the_token(sim, tokens, api):
    status, started = api.call(
        "POST", f"{PREFIX}/nodes/cn1/power", tokens["admin"], {"action": "off"}
    )
    assert status == 200 and started["nodes"] == "cn1", started
    job = finished(api, tokens["admin"], started["job"])
    assert (job["state"], job["failed"], job["by"]) == ("done", 0, "ops")
    assert sim.state("power") == "0"
    status, events = api.call("GET", f"{PREFIX}/events?node=cn1&limit=1", tokens["reader"])
    (event,) = events["events"]
    assert (event["kind"], event["actor"]) == ("power", "api:ops")
    assert event["detail"].startswith("off: ")


def test_a_dead_bmc_is_its_nodes_result_not_the_jobs(tokens, api):
    status, started = api.call("POST", f"{PREFIX}/nodes/cn%5B1-2%5D/power-status", tokens["reader"])
    assert status == 200
    job = finished(api, tokens["reader"], started["job"])
    results = {r["node"]: r for r in job["results"]}
    assert job["state"] == "done" and job["failed"] == 1
    assert results["cn1"]["ok"] and not results["cn2"]["ok"]


def test_a_reader_may_ask_power_states_but_not_act(sim, tokens, api):
    before = sim.state("power")
    status, answer = api.call(
        "POST", f"{PREFIX}/nodes/cn1/power", tokens["reader"], {"action": "on"}
    )
    assert status == 403 and "admin" in answer["error"]
    assert sim.state("power") == before


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/nodes/cn9/power", {"action": "on"}, "cn9"),
        ("/nodes/cn1/power", {"action": "explode"}, "must be one of on, off"),
        ("/nodes/cn1/power", {}, "missing 'action'"),
        ("/nodes/cn1/bootdev", {"device": "floppy"}, "must be one of pxe, disk"),
    ],
)
def test_a_bad_power_request_is_refused_before_any_job(tokens, api, path, body, message):
    _, before = api.call("GET", f"{PREFIX}/jobs", tokens["reader"])
    status, answer = api.call("POST", PREFIX + path, tokens["admin"], body)
    assert status == 400 and message in answer["error"], answer
    assert api.call("GET", f"{PREFIX}/jobs", tokens["reader"])[1] == before


def test_an_unknown_job_is_a_clear_400(tokens, api):
    status, answer = api.call("GET", f"{PREFIX}/jobs/99999", tokens["reader"])
    assert status == 400 and "no job 99999" in answer["error"]


def test_the_event_stream_pushes_a_change_within_seconds(sim, tokens, api):
    _, latest = api.call("GET", f"{PREFIX}/events?limit=1", tokens["reader"])
    after = latest["events"][0]["id"] if latest["events"] else 0
    request = urllib.request.Request(
        f"http://127.0.0.1:{api.port}{PREFIX}/events/stream?after={after}",
        headers={"Authorization": f"Bearer {tokens['reader']}"},
    )
    with urllib.request.urlopen(request, timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        started = time.monotonic()
        api.call("POST", f"{PREFIX}/nodes/cn1/bootdev", tokens["admin"], {"device": "pxe"})
        while True:
            line = stream.readline().decode()
            if line.startswith("data: "):
                event = json.loads(line[6:])
                break
        assert (event["node"], event["kind"], event["actor"]) == ("cn1", "bootdev", "api:ops")
        assert event["id"] > after and time.monotonic() - started < 10
    assert sim.state("boot") == "pxe"


def test_apply_runs_as_a_job_validated_by_the_real_daemon_and_a_real_one_is_logged(
    site, tokens, api
):
    status, started = api.call("POST", f"{PREFIX}/apply", tokens["admin"], {"dry_run": True})
    assert status == 200, started
    job = finished(api, tokens["admin"], started["job"])
    assert job["state"] == "done", job
    (planned,) = job["results"]
    assert planned["dry_run"] and "dnsmasq" in planned["validated"] and planned["changes"]
    assert not (site / "root" / "etc" / "dnsmasq.d" / "dim.conf").exists()
    status, started = api.call("POST", f"{PREFIX}/apply", tokens["admin"])  # no body: real
    job = finished(api, tokens["admin"], started["job"])
    assert job["state"] == "done" and not job["results"][0]["dry_run"], job
    assert (site / "root" / "etc" / "dnsmasq.d" / "dim.conf").is_file()
    status, events = api.call("GET", f"{PREFIX}/events?limit=1", tokens["reader"])
    (event,) = events["events"]
    assert (event["kind"], event["actor"]) == ("apply", "api:ops")
    with urllib.request.urlopen(f"http://127.0.0.1:{api.port}/metrics", timeout=30) as scraped:
        metrics = scraped.read().decode()
    assert "dim_last_apply_success 1.0" in metrics
    assert 'dim_power_results_total{action="power off",ok="true"}' in metrics


def test_a_failed_apply_is_the_jobs_error_and_an_event(site, tokens, api):
    status, started = api.call("POST", f"{PREFIX}/apply", tokens["admin"], {"server": "nosuch"})
    job = finished(api, tokens["admin"], started["job"])
    assert job["state"] == "failed" and "nosuch" in job["error"], job
    status, events = api.call("GET", f"{PREFIX}/events?limit=1", tokens["reader"])
    assert events["events"][0]["kind"] == "apply-failed"


def test_the_dashboard_page_and_its_files_are_served_without_a_token(api):
    with urllib.request.urlopen(f"http://127.0.0.1:{api.port}/", timeout=10) as page:
        html = page.read().decode()
        assert "/static/app.js" in html
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    with urllib.request.urlopen(f"http://127.0.0.1:{api.port}/static/app.js", timeout=10) as js:
        assert b"takeToken" in js.read()
    for path in ("/static/../tokens.py", "/static/%2e%2e/tokens.py", "/static/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{api.port}{path}", timeout=10)
        assert refused.value.code in (403, 404)


def test_the_command_lines_power_outcomes_are_events_and_metrics_too(site, sim, tokens, api):
    credentials = ["--credentials", str(site / "credentials"), "--timeout", "2", "--retries", "0"]
    on = dim(site, "power", "on", "cn1", *credentials)
    assert on.returncode == 0, on.stderr
    assert sim.state("power") == "1"
    pxe = dim(site, "bootdev", "cn[1-2]", "pxe", *credentials)
    assert pxe.returncode == 1, pxe.stderr  # cn2's BMC is dead
    status, events = api.call("GET", f"{PREFIX}/events?limit=3", tokens["reader"])
    seen = [(e["node"], e["kind"], e["detail"].split(":")[0], e["actor"]) for e in events["events"]]
    assert sorted(seen) == [
        ("cn1", "bootdev", "pxe", None),
        ("cn1", "power", "on", None),
        ("cn2", "bootdev-failed", "pxe", None),
    ]
    with urllib.request.urlopen(f"http://127.0.0.1:{api.port}/metrics", timeout=30) as scraped:
        metrics = scraped.read().decode()
    assert 'dim_power_results_total{action="power on",ok="true"} 1.0' in metrics
    assert 'dim_power_results_total{action="bootdev pxe",ok="false"} 1.0' in metrics
