"""Two image servers in a failover set; one loses power under its running node (issue 13).

A lab of its own (``dim lab up --servers 2``, namespace ``dimha<pid>``): srv1 and srv2 in
network and UTS namespaces of their own on the lab's bridge, each with its DHCP daemon,
nfs-ganesha, ``dim serve`` and keepalived, over one state folder (the shared store). node01
boots from srv1 (10.77.0.1), node02 from srv2 (10.77.0.2). Both run the workload of
tests/e2e/failover.py; then, in order:

a. srv1 loses power (``dim lab fail``: SIGKILL to its daemons, link down): node01 carries on
   through srv2, which took 10.77.0.1: no error, every line there once, the gap bounded;
e. node02, whose server lives, notices nothing (its longest gap stays under a second);
b. ``dim image exec`` changes the image while srv1 is down: node01 sees it within 10 s;
c. node01 reboots while srv1 is down and comes up from srv2 with its persistent state;
d. srv1 comes back and takes nothing back; with preemption turned on it takes 10.77.0.1 back,
   and node01 survives that second move as it did the first;
f. split brain: VRRP between the servers cut (nftables in srv2's namespace), so that both
   claim both addresses; node01's lines stay whole, and healed, one server holds each address.

i. last, srv1 loses power again while the lab's bridge drops every ARP that names 10.77.0.1,
   until after both bursts of gratuitous ARPs of srv2's takeover: node01 learns the move from
   the gratuitous ARP srv2 repeats every second as master (else: about a minute's stall).

g. the state DB (the lab's PostgreSQL) stops: node02 reboots all the same, from what ``dim
   apply`` last wrote, and its boot is recorded once the database is back.

The DHCP flavour is the test's parameter: dnsmasq, ISC dhcpd and Kea.

    CI=true .venv/bin/pytest tests/e2e/test_failover.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dim.lab import cluster, network, postgres
from dim.lab.processes import sleep_until
from dim.lab.state import LabState
from dim.lab.workload import ERRORS, START
from dim.services import sessions
from tests.conftest import require, require_binary
from tests.e2e.conftest import Lab, lab_up, require_e2e
from tests.e2e.workload import (
    SERVICE,
    held,
    lines_after,
    reboot_during_outage,
    start_workload,
    trace,
    uptime,
)

pytestmark = pytest.mark.e2e

GAP_LIMIT = 15.0  # the bound for one failover under TCG; the median target is 5 s
SURVIVOR_LIMIT = 1.0


@pytest.fixture(scope="module", params=["dnsmasq", "isc", "kea"])
def ha(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_e2e()
    require_binary("keepalived", "keepalived")
    require_binary("nft", "nftables")
    require(postgres.available(), "PostgreSQL 15 is missing (apt-get install postgresql-15)")
    if request.param == "isc":
        require_binary("dhcpd", "isc-dhcp-server")
    if request.param == "kea":
        require_binary("kea-dhcp4", "kea-dhcp4-server")
    folder = tmp_path_factory.mktemp(f"ha-{request.param}")
    options = {"flavour": request.param, "nodes": 2, "servers": 2, "bmcs": False}
    with lab_up(folder, f"dimha{os.getpid()}", **options) as lab:
        lab.boot(["node01", "node02"])
        start_workload(lab, ["node01", "node02"])
        yield lab


def assert_no_errors(lab: Lab, node: str) -> None:
    assert lab.ok(node, ERRORS).strip() == "", f"{node} saw errors"


def carriers(lab: Lab) -> dict[str, tuple[str, str | None, str | None]]:
    """node -> (state, session address, image server) as ``dim node status`` reads them from
    what each server's dim serve recorded in the shared state DB (nothing read here)."""
    shown = lab.dim("node", "status", "--nfs-pid-file", "none", "--json")
    return {
        n["name"]: (n["state"], n["session"], n["session_server"])
        for n in json.loads(shown.stdout)["nodes"]
    }


def test_node_status_sees_the_nodes_of_both_servers_as_each_dim_serve_recorded_them(
    ha: Lab,
) -> None:
    expected = {
        "node01": ("up", SERVICE["srv1"], "srv1"),
        "node02": ("up", SERVICE["srv2"], "srv2"),
    }
    assert sleep_until(lambda: carriers(ha) == expected, sessions.FRESH), carriers(ha)


def test_a_node_keeps_running_when_its_server_loses_power(ha: Lab) -> None:
    lines_after(ha, "node01", 3)
    before = {node: uptime(ha, node) for node in ("node01", "node02")}
    cluster.fail(ha.folder, "srv1", say=ha.say)
    assert sleep_until(lambda: SERVICE["srv1"] in held(ha)["srv2"], 15), held(ha)
    lines_after(ha, "node01", 10)

    moved = trace(ha, "node01")
    assert moved.numbers_ok, f"node01 lost or doubled a line: {moved.numbers}"
    assert moved.since(before["node01"]).longest_gap <= GAP_LIMIT
    assert_no_errors(ha, "node01")
    # e. the other server's node noticed nothing
    stayed = trace(ha, "node02")
    assert stayed.numbers_ok
    assert stayed.since(before["node02"]).longest_gap < SURVIVOR_LIMIT
    assert_no_errors(ha, "node02")
    ha.say(
        f"failover gap node01 {moved.since(before['node01']).longest_gap} s, "
        f"node02 {stayed.since(before['node02']).longest_gap} s"
    )


def test_after_the_failover_node_status_shows_the_peer_carrying_the_node(ha: Lab) -> None:
    assert SERVICE["srv1"] in held(ha)["srv2"], "srv1 should be down (test a)"
    # srv1's dim serve died with it: its recording goes stale, srv2's names node01
    expected = ("up", SERVICE["srv1"], "srv2")
    waited = sessions.FRESH + 2 * sessions.INTERVAL
    assert sleep_until(lambda: carriers(ha)["node01"] == expected, waited), carriers(ha)


def test_b_a_change_made_during_the_outage_reaches_the_node(ha: Lab) -> None:
    assert SERVICE["srv1"] in held(ha)["srv2"], "srv1 should be down (test a)"
    ha.dim("image", "exec", "tiny", "--", "sh", "-c", "echo during-outage > /bin/dim-outage")
    started = time.monotonic()
    seen = sleep_until(
        lambda: ha.run("node01", "cat /bin/dim-outage")[1].strip() == "during-outage", 10
    )
    assert seen, f"node01 did not see the change within 10 s:\n{ha.tail('node01')}"
    ha.say(f"change seen during the outage after {time.monotonic() - started:.1f} s")


def test_c_a_node_rebooted_during_the_outage_boots_from_the_peer_with_its_state(
    ha: Lab,
) -> None:
    reboot_during_outage(ha)


def test_d_a_restored_server_takes_nothing_back_unless_preempt_and_that_move_is_survived(
    ha: Lab,
) -> None:
    cluster.restore(ha.folder, "srv1", say=ha.say)
    time.sleep(8)  # several VRRP adverts: srv1 hears srv2 and stays its backup
    assert held(ha) == {"srv1": [], "srv2": [SERVICE["srv2"], SERVICE["srv1"]]} or held(ha) == {
        "srv1": [],
        "srv2": [SERVICE["srv1"], SERVICE["srv2"]],
    }, held(ha)

    before = uptime(ha, "node01")
    cluster.set_preempt(ha.folder, True, say=ha.say)
    assert sleep_until(lambda: held(ha)["srv1"] == [SERVICE["srv1"]], 20), held(ha)
    lines_after(ha, "node01", 8)
    moved = trace(ha, "node01")
    assert moved.numbers_ok
    assert moved.since(before).longest_gap <= GAP_LIMIT
    assert_no_errors(ha, "node01")
    ha.say(f"second move (preempt): gap {moved.since(before).longest_gap} s")


def test_f_split_brain_loses_no_line_and_heals(ha: Lab) -> None:
    srv2 = network.server_namespace(ha.namespace, "srv2")
    rules = (
        "add table inet dimsplit; "
        "add chain inet dimsplit cut { type filter hook input priority 0; }; "
        "add rule inet dimsplit cut ip protocol vrrp drop"
    )
    before = uptime(ha, "node01")
    subprocess.run(["ip", "netns", "exec", srv2, "nft", rules], check=True)
    try:
        # srv2 hears no adverts from srv1 and claims 10.77.0.1 too: two servers answer for it
        assert sleep_until(lambda: SERVICE["srv1"] in held(ha)["srv2"], 15), held(ha)
        assert SERVICE["srv1"] in held(ha)["srv1"]
        lines_after(ha, "node01", 10)
    finally:
        subprocess.run(
            ["ip", "netns", "exec", srv2, "nft", "delete table inet dimsplit"], check=True
        )
    assert sleep_until(
        lambda: sorted(sum(held(ha).values(), [])) == sorted(SERVICE.values()), 20
    ), held(ha)
    lines_after(ha, "node01", 5)
    split = trace(ha, "node01")
    assert split.numbers_ok, f"node01's lines during the split: {split.numbers}"
    ha.say(f"split brain: node01's longest gap {split.since(before).longest_gap} s, {held(ha)}")


def test_lab_servers_have_host_names_of_their_own(ha: Lab) -> None:
    log = Path(ha.folder / "servers" / "srv2" / "logs" / "ganesha.log").read_text()
    assert " : srv2 : " in log


def test_lab_servers_start_ganesha_with_epochs_apart_by_their_rank(ha: Lab) -> None:
    """ganesha's client and session ids start from its epoch (dim.services.nfs): the lab
    starts it as Debian's service would, with the epoch of the script dim rendered."""
    epochs = {}
    for rank, server in enumerate(SERVICE):
        log = Path(ha.folder / "servers" / server / "logs" / "ganesha.log").read_text()
        epochs[server] = int(re.findall(r" : epoch ([0-9a-f]+) : ", log)[-1], 16)
        assert epochs[server] & 0xF == rank, f"{server}: epoch {epochs[server]:x}"
    assert epochs["srv1"] != epochs["srv2"]


def test_g_a_node_boots_while_the_state_database_is_down_and_its_boot_is_recorded_after(
    ha: Lab,
) -> None:
    folder = (ha.folder / "postgres").resolve()
    server = postgres.running(folder)
    assert server is not None, "the lab's PostgreSQL should run"
    before = ha.dim("node", "list", "--json").stdout
    postgres.stop(server)
    try:
        seconds = ha.boot(["node02"])
    finally:
        postgres.start(folder)
    ha.ok("node02", START)

    def recorded() -> bool:
        return ha.dim("node", "list", "--json", check=False).stdout != before

    assert sleep_until(recorded, 30), "node02's boot was not recorded once the DB was back"
    ha.say(f"node02 booted with the state DB down in {seconds['node02']:.1f} s")


def _daemon_dies(ha: Lab, daemon: str) -> None:
    """srv2's ``daemon`` is killed, the host lives: srv2 goes into FAULT and srv1 takes
    10.77.0.2; node02 carries on; the daemon restarted, srv2 takes its address back
    (preemption is on since test d)."""
    assert sleep_until(lambda: held(ha)["srv2"] == [SERVICE["srv2"]], 30), held(ha)
    before = uptime(ha, "node02")
    cluster.kill(ha.folder, f"srv2/{daemon}")
    try:
        assert sleep_until(lambda: SERVICE["srv2"] in held(ha)["srv1"], 15), held(ha)
        assert held(ha)["srv2"] == [], f"srv2 kept an address without its {daemon}"
        lines_after(ha, "node02", 5)
        away = trace(ha, "node02").since(before).longest_gap
    finally:
        cluster.restart(ha.folder, f"srv2/{daemon}", say=ha.say)
    back_from = uptime(ha, "node02")
    assert sleep_until(lambda: held(ha)["srv2"] == [SERVICE["srv2"]], 30), held(ha)
    lines_after(ha, "node02", 3)
    moved = trace(ha, "node02")
    back = moved.since(back_from).longest_gap
    ha.say(f"{daemon} killed on srv2: node02's longest gap {away} s away, {back} s back")
    assert moved.numbers_ok
    # back: a move to a server that kept node02's state from before, until its lease ends
    # (docs/ha.md, "Leases of 5 s"), then TCP's next retry: 0.6 s most times, 19.2 s once in
    # CI (2026-12-02, after dim serve's death): bounded twice as loosely as a failover
    assert away <= GAP_LIMIT and back <= 2 * GAP_LIMIT, f"gaps: {away} s away, {back} s back"
    assert_no_errors(ha, "node02")


def test_h_a_dead_daemon_on_a_living_server_moves_its_address(ha: Lab) -> None:
    """The DHCP daemon with each flavour (its check reads the flavour's pid file); ganesha's
    and dim serve's checks are the same whatever the flavour: proven once, with dnsmasq."""
    flavour = LabState.running(ha.folder).flavour
    for daemon in [flavour, *(["ganesha", "serve"] if flavour == "dnsmasq" else [])]:
        _daemon_dies(ha, daemon)


def watch_arp(lab: Lab, node: str, address: str) -> int:
    """Start a loop on the node that prints ``DIM-ARP <mac>`` on its console every second, the
    MAC of its neighbour entry for ``address`` (``none`` without one); its process id. Shell
    builtins on files opened beforehand alone: with the NFS root stalled, every path looked
    up from / waits for the server (even /proc's and /tmp's, whose names live in the root's
    directory), and so does the console shell between two commands."""
    loop = (
        "rm -f /tmp/dim-tick; mkfifo /tmp/dim-tick; "
        "(cd /proc/net; exec 5<> /tmp/dim-tick; while :; do found=none; "
        f'while read -r ip _ _ mac _; do [ "$ip" = {address} ] && found=$mac; done < arp; '
        'echo "DIM-ARP $found"; read -t 1 _ <&5; done) > /dev/console 2>&1 & echo "DIM-PID $!"'
    )
    # not anchored either: the loop's first line may land amid the pid's (CI saw it)
    return int(re.findall(r"DIM-PID (\d+)", lab.ok(node, loop))[-1])


def arp_seen(lab: Lab, node: str) -> str | None:
    """The MAC of the last ``DIM-ARP`` line on the node's console. Not anchored to a line's
    start or end: the loop's lines mix with the console shell's output (CI once saw none
    whole, and the test could not tell a drop that worked from one that did not)."""
    seen = re.findall(r"DIM-ARP ((?:[0-9a-f]{2}:){5}[0-9a-f]{2}|none)", lab.console(node))
    return seen[-1] if seen else None


def test_i_a_node_that_missed_the_takeover_arp_burst_learns_the_move_within_seconds(
    ha: Lab,
) -> None:
    """keepalived sends a burst of gratuitous ARPs when it takes an address and another 5 s
    later; a node that misses both sends to the dead server's MAC until its neighbour entry
    ages out (15 to 45 s, then 8 s of probes), and TCP retries later still: measured, 55 to
    62 s of stall. dim's masters repeat the gratuitous ARP every second."""
    assert sleep_until(lambda: held(ha)["srv1"] == [SERVICE["srv1"]], 30), held(ha)
    srv2 = network.server_namespace(ha.namespace, "srv2")
    srv2_mac = subprocess.run(
        ["ip", "-n", srv2, "-br", "link", "show", "eth0"], capture_output=True, text=True
    ).stdout.split()[2]
    drop = (
        "add table bridge dimarp; "
        "add chain bridge dimarp cut { type filter hook forward priority 0; }; "
        f"add rule bridge dimarp cut arp saddr ip {SERVICE['srv1']} drop"
    )
    # what node01 saw before is not this test's: test f's split brain may leave a read error
    ha.ok("node01", "rm -f /tmp/errors; dmesg -c > /dev/null")
    before = uptime(ha, "node01")
    watcher = watch_arp(ha, "node01", SERVICE["srv1"])  # its lines mix with commands' output
    subprocess.run(["ip", "netns", "exec", ha.namespace, "nft", drop], check=True)
    try:
        cluster.fail(ha.folder, "srv1", say=ha.say)
        assert sleep_until(lambda: SERVICE["srv1"] in held(ha)["srv2"], 15), held(ha)
        time.sleep(6.5)  # past keepalived's second burst (garp_master_delay, 5 s)
        assert arp_seen(ha, "node01") not in (None, srv2_mac), "the drop let an ARP through"
    finally:
        subprocess.run(
            ["ip", "netns", "exec", ha.namespace, "nft", "delete table bridge dimarp"], check=True
        )
    assert sleep_until(lambda: arp_seen(ha, "node01") == srv2_mac, 4), (
        f"node01 still sends {SERVICE['srv1']} to {arp_seen(ha, 'node01')}, not {srv2_mac}"
    )
    # TCP's retries back off (3, 6.2, 12.6, 25.4 s after the first unanswered one): the
    # node writes again at the first retry after it learnt the MAC, not at once
    lines_after(ha, "node01", 3)
    ha.ok("node01", f"kill {watcher}")
    moved = trace(ha, "node01")
    assert moved.numbers_ok
    assert_no_errors(ha, "node01")
    ha.say(f"takeover ARP burst missed: node01's gap {moved.since(before).longest_gap} s")
