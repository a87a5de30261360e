"""Redfish against sushy-tools' emulator (fake driver) and dim's own BMC fleet.

The emulator is a Redfish service written by others: power state, reset, boot override and
EthernetInterfaces as sushy implements them, Basic authentication (it has no session
service) with a bcrypt password file. The fleet adds what sushy lacks: session login with
X-Auth-Token, reset types through @Redfish.ActionInfo, and BMCs that are dead or misbehave.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.integration.power_sims import (
    PASSWORD,
    SUSHY_SYSTEMS,
    USER,
    Lab,
    entry,
    fanout_seconds,
    redfish_fleet,
    sushy,
)

pytestmark = pytest.mark.integration

UUID1, UUID2 = (s["uuid"] for s in SUSHY_SYSTEMS)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with sushy(tmp_path_factory.mktemp("sushy")) as url:
        yield url


@pytest.fixture
def lab(tmp_path, capsys) -> Lab:
    return Lab(tmp_path, capsys)


def sushy_lab(lab: Lab, url: str) -> Lab:
    lab.layout(
        {"s1": ("redfish", f"{url}/{UUID1}", "rf"), "s2": ("redfish", f"{url}/{UUID2}", "rf")}
    )
    lab.credentials(entry("rf"))
    return lab


def test_status_on_and_the_change_landing_on_sushy(emulator, lab):
    sushy_lab(lab, emulator)
    status, out, err = lab.dim("power", "status", "s[1-2]", "--json")
    assert status == 0, err
    before = {r["node"]: r["state"] for r in json.loads(out)}
    assert set(before.values()) <= {"on", "off"}
    target = "s1" if before["s1"] == "off" else "s2"
    action = "on" if before[target] == "off" else "off"
    status, out, err = lab.dim("power", action, target, "--yes")
    assert status == 0, err
    assert out.split() == [action, "requested", target]
    # sushy's fake driver applies a power change after a random 1 to 11 s: poll.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, out, err = lab.dim("power", "status", target)
        if out.split()[0] == action:
            break
        time.sleep(0.5)
    assert out.split() == [action, target], out


def test_boot_override_is_patched_onto_the_system(emulator, lab):
    sushy_lab(lab, emulator)
    status, out, err = lab.dim("bootdev", "s2", "pxe", "--persistent")
    assert status == 0, err
    assert out.split() == ["pxe", "persistent", "s2"]
    with urllib.request.urlopen(f"{emulator}/redfish/v1/Systems/{UUID2}", timeout=5) as answer:
        boot = json.load(answer)["Boot"]
    assert boot["BootSourceOverrideTarget"] == "Pxe"
    status, out, err = lab.dim("bootdev", "s2", "disk")
    assert status == 0, err
    with urllib.request.urlopen(f"{emulator}/redfish/v1/Systems/{UUID2}", timeout=5) as answer:
        assert json.load(answer)["Boot"]["BootSourceOverrideTarget"] == "Hdd"


def test_discover_shows_the_macs_and_saves_only_with_save(emulator, lab):
    sushy_lab(lab, emulator)
    status, out, err = lab.dim("discover", "s[1-2]")
    assert status == 0, err
    assert "00:5c:52:31:3a:9c" in out and "00:5c:52:31:3a:ae" in out
    assert "nothing saved" in err
    status, out, _ = lab.dim("node", "list", "--json")
    macs = {(n["name"], i["network"]): i["mac"] for n in json.loads(out) for i in n["interfaces"]}
    assert macs == {("s1", "boot"): None, ("s2", "boot"): None}  # nothing saved
    status, out, err = lab.dim("discover", "s[1-2]", "--save", "--nic", "2")
    assert status == 0, err
    assert "saved 1 boot-interface MACs (1 changed)" in out  # s1 has one NIC only
    status, out, _ = lab.dim("node", "list", "--json")
    macs = {n["name"]: n["interfaces"][0]["mac"] for n in json.loads(out)}
    assert macs == {"s1": None, "s2": "00:5c:52:31:3a:ae"}


def test_a_wrong_password_is_refused_per_node_and_never_printed(tmp_path, lab):
    with sushy(tmp_path / "sushy-auth", auth=True) as url:
        lab.layout(
            {
                "s1": ("redfish", f"{url}/{UUID1}", "good"),
                "s2": ("redfish", f"{url}/{UUID2}", "bad"),
            }
        )
        lab.credentials(entry("good") + entry("bad", password="wrong-password-123"))
        status, out, err = lab.dim("power", "status", "s[1-2]")
        assert status == 1
        assert "error (auth)  s2: login refused (HTTP 401)" in out
        assert out.splitlines()[0].split()[1] == "s1"
        for text in (out, err):  # the text people read, on stdout and stderr
            assert PASSWORD not in text and "wrong-password-123" not in text
        status, out, err = lab.dim("power", "status", "s[1-2]", "--json")
        assert status == 1 and '"error": "auth"' in out
        for text in (out, err):
            assert PASSWORD not in text and "wrong-password-123" not in text


def test_tls_certificates_are_checked_unless_the_entry_says_otherwise(tmp_path, lab):
    with sushy(tmp_path / "sushy-tls", tls=True) as url:
        cert = tmp_path / "sushy-tls" / "bmc.pem"
        lab.layout(
            {
                "s1": ("redfish", f"{url}/{UUID1}", "checked"),
                "s2": ("redfish", f"{url}/{UUID2}", "unchecked"),
            }
        )
        lab.credentials(entry("checked") + entry("unchecked", verify="false"))
        status, out, err = lab.dim("power", "status", "s[1-2]")
        assert status == 1
        assert "error (tls)  s1: the BMC's TLS certificate is not trusted" in out
        assert out.splitlines()[1].split() in (["on", "s2"], ["off", "s2"])
        lab.credentials(entry("checked", ca=f'"{cert}"') + entry("unchecked", verify="false"))
        status, out, err = lab.dim("power", "status", "s[1-2]")
        assert status == 0, out + err


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    specials = ["2=silent", "3=closed", "4=garbage", "5=half", "6=notjson"]
    args = [arg for special in specials for arg in ("--special", special)]
    with redfish_fleet(tmp_path_factory.mktemp("fleet"), 8, *args) as port:
        yield port


def fleet_lab(lab: Lab, port: int, count: int = 8) -> Lab:
    from tests.doubles.redfish_fleet import address

    lab.layout(
        {f"f{i}": ("redfish", f"http://{address(i, 101)}:{port}", "rf") for i in range(count)}
    )
    lab.credentials(entry("rf"))
    return lab


def test_every_bad_bmc_is_one_clear_line_and_costs_at_most_the_timeout(fleet, lab):
    fleet_lab(lab, fleet)
    status, out, err = lab.dim("power", "status", "f[0-7]", "--timeout", "1.5")
    assert status == 1
    assert "dim: error: 5 of 8 nodes failed" in err
    lines = dict(line.split("  ", 1) for line in out.splitlines())
    assert lines["error (timeout)"].strip() == "f2: no answer within 1.5 s"
    assert lines["error (unreachable)"].strip() == "f3: cannot connect: connection refused"
    assert "f4: POST /redfish/v1/SessionService/Sessions: the answer is not HTTP" in out
    assert "f5: POST /redfish/v1/SessionService/Sessions: the BMC sent half an answer" in out
    assert "f6: GET /redfish/v1/Systems: the answer is not JSON" in out
    assert "Traceback" not in out + err
    assert fanout_seconds(err) < 2 * 1.5  # one timeout, not a sum of them
    # each node, measured by the fan-out itself, within the budget (the margin: a busy loop)
    status, out, err = lab.dim("power", "status", "f[0-7]", "--timeout", "1.5", "--json")
    costs = {r["node"]: r["seconds"] for r in json.loads(out)}
    assert sorted(costs) == [f"f{i}" for i in range(8)]
    assert max(costs.values()) <= 1.5 * 1.5, costs
    assert costs["f2"] >= 1.5, costs  # the silent one waited for its whole budget


def test_sessions_reset_types_from_action_info_or_inline_and_logout(fleet, lab):
    fleet_lab(lab, fleet)
    # f0 advertises its reset types through @Redfish.ActionInfo, f1 inline.
    status, out, err = lab.dim("power", "off", "f[0-1]", "--json")
    assert status == 0, err
    assert [r["outcome"] for r in json.loads(out)] == ["off requested"] * 2
    status, out, err = lab.dim("power", "status", "f[0-1]")
    assert out.split() == ["off", "f[0-1]"]
    status, out, err = lab.dim("power", "cycle", "f[0-1]")
    status, out, err = lab.dim("power", "status", "f[0-1]")
    assert out.split() == ["on", "f[0-1]"]
    status, out, err = lab.dim("power", "soft", "f0")
    assert status == 0 and out.split() == ["soft", "requested", "f0"]
    # dim logged in (session ids advanced between two logins of the test's own) and out (the
    # only sessions left open on each BMC are the test's two)
    for i in range(2):
        first = _login(fleet, i)
        lab.dim("power", "status", f"f{i}")
        second = _login(fleet, i)
        assert int(second[0]) > int(first[0]) + 1, (first, second)  # dim's session between
        assert sorted(_open_sessions(fleet, i, second[1])) == sorted([first[0], second[0]])


def _login(port: int, index: int) -> tuple[str, str]:
    """A session of the test's own on fleet BMC ``index``: (session id, token)."""
    from tests.doubles.redfish_fleet import address

    request = urllib.request.Request(
        f"http://{address(index, 101)}:{port}/redfish/v1/SessionService/Sessions",
        data=json.dumps({"UserName": USER, "Password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["Location"].rsplit("/", 1)[1], answer.headers["X-Auth-Token"]


def _open_sessions(port: int, index: int, token: str) -> list[str]:
    from tests.doubles.redfish_fleet import address

    request = urllib.request.Request(
        f"http://{address(index, 101)}:{port}/redfish/v1/SessionService/Sessions",
        headers={"X-Auth-Token": token},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return [m["@odata.id"].rsplit("/", 1)[1] for m in json.load(answer)["Members"]]


def test_disruptive_actions_on_many_nodes_ask_first_and_never_hang(fleet, lab):
    fleet_lab(lab, fleet, 2)
    status, out, err = lab.dim("power", "reset", "f[0-1]", "--confirm-above", "1")
    assert status == 2
    assert "needs a confirmation" in err and "hint: pass --yes" in err
    status, out, err = lab.dim("power", "reset", "f[0-1]", "--confirm-above", "1", "--yes")
    assert status == 0, err
    status, out, err = lab.dim("power", "on", "f[0-1]", "--confirm-above", "1")
    assert status == 0, err  # powering on never asks


def test_a_missing_credentials_entry_or_unsafe_file_is_reported(fleet, lab):
    fleet_lab(lab, fleet, 2)
    lab.credentials(entry("other"))
    status, out, err = lab.dim("power", "status", "f[0-1]")
    assert status == 1
    assert "error (config)  f[0-1]: credentials entry 'rf' is not in" in out
    lab.credentials(entry("rf"), mode=0o644)
    status, out, err = lab.dim("power", "status", "f[0-1]")
    assert status == 2 and "readable by others" in err and PASSWORD not in out + err


def test_forked_workers_give_the_same_results_in_the_same_order(fleet):
    from dim.power import fanout
    from dim.power.credentials import Credential, Secret
    from dim.power.fanout import FanoutOptions
    from dim.power.interface import Target
    from tests.doubles.redfish_fleet import address
    from tests.integration.power_sims import USER

    credential = Credential("rf", USER, Secret(PASSWORD))
    targets = [
        Target(f"f{i}", "redfish", f"http://{address(i % 8, 101)}:{fleet}", credential)
        for i in [0, 1, 3, 7, 0, 1]
    ]
    alone = fanout.execute(targets, fanout.status, FanoutOptions(timeout=2, workers=1))
    forked = fanout.execute(targets, fanout.status, FanoutOptions(timeout=2, workers=3))
    assert [(r.node, r.outcome) for r in forked] == [(r.node, r.outcome) for r in alone]
    assert [r.outcome for r in forked][2] == "error (unreachable)"
