"""dim.actions.status: each node's state from its boots, its NFS session and its power."""

from __future__ import annotations

import time

import pytest

from dim.actions import status
from dim.records import Boot, NfsSession, NfsSessions

NOW = 1_800_000_000.0


def boot(node: str, ago: float, client: str = "10.10.0.99") -> Boot:
    return Boot(node, "alpha", "1", client, NOW - ago)


@pytest.mark.parametrize(
    ("boot_ago", "session", "known", "power", "state"),
    [
        (10, None, True, "off", "off"),
        (10, "10.10.0.2", True, "off", "off"),
        (None, "10.10.0.2", True, None, "up"),
        (10, "10.10.0.2", False, None, "up"),
        (10, None, False, "on", "unknown"),
        (10, None, True, None, "booting"),
        (status.BOOTING + 1, None, True, "on", "down"),
        (None, None, True, "on", "unknown"),
    ],
)
def test_state_follows_the_table_first_match_wins(boot_ago, session, known, power, state):
    seen = boot("c01", boot_ago) if boot_ago is not None else None
    assert status.state_of(seen, session, known, power, NOW) == state


def test_statuses_fold_boots_sessions_and_power_per_node(ctx):
    db = ctx.db()
    db.record_boots([boot("c01", 3600), boot("c02", 5), boot("c03", 3600, client="10.10.0.77")])
    live = NfsSession("10.10.0.2")
    sessions = NfsSessions({"10.10.0.11": live, "10.10.0.77": live}, {})  # c01's, c03's client
    power = {"g2": ("off", None), "g1": (None, "timeout")}
    report = status.statuses(ctx, sessions=sessions, power=power, now=NOW)
    states = {n.name: n.state for n in report.nodes}
    assert states == {
        "c01": "up",
        "c02": "booting",
        "c03": "up",
        "c04": "unknown",
        "g1": "unknown",
        "g2": "off",
    }
    assert report.counts == {"up": 2, "booting": 1, "down": 0, "off": 1, "unknown": 2}
    g1 = report.nodes[4].record()
    assert (g1["power"], g1["power_error"]) == (None, "timeout")
    assert report.nodes[0].record()["booted"]["image"] == "alpha"


def test_without_readable_sessions_nothing_is_up_or_down(ctx):
    ctx.db().record_boots([boot("c01", 3600)])
    report = status.statuses(ctx, "c01", sessions=None, now=NOW)
    assert not report.sessions_known
    assert [n.state for n in report.nodes] == ["unknown"]


def test_a_node_set_chooses_and_excludes(ctx):
    report = status.statuses(
        ctx, "@compute", "c[02-03]", sessions=NfsSessions({}, {}), now=time.time()
    )
    assert [n.name for n in report.nodes] == ["c01", "c04"]
    assert [n.state for n in report.nodes] == ["unknown", "unknown"]


def test_a_node_without_an_image_sees_no_version(tmp_path):
    from dim.actions.context import Context

    layout = tmp_path / "cluster.xml"
    layout.write_text(
        '<?xml version="1.0"?><cluster name="t" domain="t.example">'
        '<network name="boot" subnet="10.10.0.0/24"/>'
        '<server name="srv" address="10.10.0.2" dhcp="dnsmasq" nfs="ganesha"/>'
        '<group name="g" nodes="n1"><interface network="boot" ip="10.10.0.{10+n1}"/></group>'
        "</cluster>"
    )
    report = status.statuses(
        Context(config=layout, state=tmp_path / "state"), sessions=NfsSessions({}, {})
    )
    assert [(n.image, n.live_version) for n in report.nodes] == [(None, None)]
