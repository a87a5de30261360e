"""A CephFS store in cluster.xml (``<store>``) and what its heads' ganesha is given: every
export through the CephFS back end at the CephFS path of the folder the nodes mount, the
Ceph configuration by reference, and rados_cluster recovery with the script and unit that
make the head a member of the store's grace database. Each refusal is one line naming the
file, the line and the value. tests/integration/test_ceph_heads.py runs the rendered
configuration in a real ganesha over a real CephFS."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dim.errors import LayoutError
from dim.layout.model import Inventory, Store
from dim.layout.parser import parse
from dim.services.nfs import GANESHA_GRACE, GANESHA_GRACE_UNIT, GANESHA_UNFENCE
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from dim.services.vrrp import FENCE, KEEPALIVED_CONF
from tests.unit.conftest import PAIR, PAIR_MACS
from tests.unit.services.test_nfs_render import _block, value

STATE = Path("/var/lib/dim")
STORE = '<store name="dimfs" cephfs="dimfs" servers="srv[1-2]"{extra}/>'


def layout(extra: str = "", store: str = STORE) -> bytes:
    element = store.format(extra=extra)
    return PAIR.replace(b"</cluster>", element.encode() + b"\n</cluster>")


def files(data: bytes, server: str = "srv1") -> dict[str, str]:
    inventory = Inventory(parse(data, "pair.xml"), dict(PAIR_MACS), {})
    rendered = render_all(RenderContext(inventory, server, STATE))
    return {f.path: f.content.decode() for f in rendered if f.content is not None}


def conf(data: bytes, server: str = "srv1") -> dict:

    text = re.sub(r"#.*", "", files(data, server)["/etc/ganesha/ganesha.conf"])
    tokens = re.findall(r'"[^"]*"|[{};=,]|[^\s{};=,"]+', text)
    block, position = _block(tokens, 0)
    assert position == len(tokens)
    return block


def test_a_store_names_its_heads_in_layout_order_with_its_defaults():
    cluster = parse(layout(), "pair.xml")
    # every head in a failover set: graceless by default (docs/ha.md says why)
    expected = Store("dimfs", "dimfs", ("srv1", "srv2"), recovery="none", line=25)
    assert cluster.stores == {"dimfs": expected}
    assert [s.store for s in cluster.servers.values()] == ["dimfs", "dimfs", None]


def test_every_export_of_a_head_goes_through_cephfs_at_the_path_the_nodes_mount():
    exports = conf(layout())["export"]
    assert len(exports) == 1 + 4  # the image store, and a1 a2 b1 b2 of the set (not c1)
    for export in exports:
        (fsal,) = export["fsal"]
        assert fsal == {"name": ["CEPH"], "filesystem": ["dimfs"], "user_id": ["dim"]}
        assert value(export, "path") == value(export, "pseudo")
    paths = {value(e, "path") for e in exports}
    assert paths == {"/var/lib/dim/images"} | {
        f"/var/lib/dim/nodes/{n}" for n in ["a1", "a2", "b1", "b2"]
    }


def test_a_store_root_maps_each_export_to_its_cephfs_path_and_keeps_what_nodes_mount():
    exports = conf(layout(' root="/dim/"'))["export"]
    pairs = {value(e, "pseudo"): value(e, "path") for e in exports}
    assert pairs["/var/lib/dim/images"] == "/dim/images"
    assert pairs["/var/lib/dim/nodes/b2"] == "/dim/nodes/b2"
    (client,) = [e for e in exports if value(e, "pseudo") == "/var/lib/dim/nodes/b2"][0]["client"]
    assert client["clients"] == ["10.20.0.112"] and value(client, "access_type") == "RW"


def test_rados_cluster_recovery_names_the_grace_database_of_the_store():
    extra = ' user="head" recovery="rados_cluster" recovery-pool="nfs_grace"'
    block = conf(layout(extra + ' ceph-conf="/etc/ceph/site.conf"'), "srv2")
    (v4,) = block["nfsv4"]
    assert value(v4, "recoverybackend") == "rados_cluster" and "graceless" not in v4
    assert value(v4, "grace_period") == "15"  # three of a failover set's 5 s leases
    (ceph,) = block["ceph"]
    assert value(ceph, "ceph_conf") == "/etc/ceph/site.conf"
    (kv,) = block["rados_kv"]
    assert {k: value(kv, k) for k in kv} == {
        "ceph_conf": "/etc/ceph/site.conf",
        "userid": "head",
        "pool": "nfs_grace",
        "namespace": "dimfs",
        "nodeid": "srv2",
    }
    assert value(block["export"][0]["fsal"][0], "user_id") == "head"


def test_recovery_none_keeps_each_head_graceless_without_a_grace_database():
    data = layout(' recovery="none"')
    block = conf(data)
    (v4,) = block["nfsv4"]
    assert value(v4, "graceless") == "true" and "recoverybackend" not in v4
    assert "rados_kv" not in block and "ceph" in block
    rendered = files(data)
    assert GANESHA_GRACE not in rendered
    # a failover set's head still lifts its fence before ganesha starts
    assert rendered[GANESHA_GRACE_UNIT].count("ExecStartPre=") == 1
    assert f"ExecStartPre={GANESHA_UNFENCE}\n" in rendered[GANESHA_GRACE_UNIT]


def test_a_head_gets_a_membership_script_run_before_ganesha_starts(tmp_path):
    rendered = files(layout(' recovery="rados_cluster" recovery-pool="nfs_grace"'), "srv2")
    # the fence lifted first: a fenced head's membership call could not reach the cluster
    assert re.findall(r"^ExecStartPre=(.*)$", rendered[GANESHA_GRACE_UNIT], re.M) == [
        GANESHA_UNFENCE,
        GANESHA_GRACE,
    ]
    # run with a fake ganesha-rados-grace that knows no member: the script adds srv2
    fake = '#!/bin/sh\necho "$@" >> "$0.calls"\n[ "$9" = add ]\n'
    calls = run_grace_script(rendered[GANESHA_GRACE], fake, tmp_path)
    common = "--cephconf /etc/ceph/ceph.conf --userid dim --pool nfs_grace --ns dimfs"
    assert calls.splitlines() == [
        f"{common} member srv2",
        f"{common} add srv2",
    ]


def test_the_membership_script_asks_again_when_the_tool_dies_of_a_signal(tmp_path):
    rendered = files(layout(' recovery="rados_cluster"'), "srv1")
    # the first call dies of SIGSEGV (as Debian 12's tool does now and then), then a member
    fake = (
        '#!/bin/sh\necho "$9" >> "$0.calls"\n'
        '[ "$(wc -l < "$0.calls")" -gt 1 ] || kill -SEGV $$\nexit 0\n'
    )
    calls = run_grace_script(rendered[GANESHA_GRACE], fake, tmp_path)
    assert calls.split() == ["member", "member"]  # never "add"


def run_grace_script(script: str, fake_tool: str, folder: Path) -> str:
    """Run the rendered membership ``script`` with ``fake_tool`` as ganesha-rados-grace
    (it appends to ``$0.calls``); assert it succeeds; the calls the tool recorded."""
    run, calls = run_script(script, "ganesha-rados-grace", fake_tool, folder)
    assert run.returncode == 0, run.stderr
    return calls


DEAD = "#!/bin/sh\nexit 124\n"  # `timeout`'s status when the peer never answered


def run_script(
    script: str, tool: str, fake_tool: str, folder: Path, *args: str, probe: str = DEAD
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run a rendered ``script`` with ``fake_tool`` as the program ``tool`` (it appends to
    ``$0.calls``), ``logger`` and ``sleep`` no-ops, and ``probe`` as ``timeout`` (the fence's
    probe of the peer, by default a peer that never answers): how it ended, and the calls
    the tool recorded."""
    fakes = [(tool, fake_tool), ("logger", "#!/bin/sh\n"), ("sleep", "#!/bin/sh\n")]
    for name, text in [*fakes, ("timeout", probe)]:
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    path = folder / "script"
    path.write_text(script)
    env = {"PATH": f"{folder}:/usr/bin:/bin"}
    run = subprocess.run(["bash", str(path), *args], env=env, capture_output=True, text=True)
    calls = folder / f"{tool}.calls"
    return run, calls.read_text() if calls.exists() else ""


CEPH_CALLS = '#!/bin/sh\necho "$@" >> "$0.calls"\n'


def test_a_head_that_takes_a_peers_address_fences_that_peer_and_only_on_a_peers_address():
    rendered = files(layout(' user="head" ceph-conf="/etc/ceph/site.conf"'), "srv2")
    conf = rendered[KEEPALIVED_CONF]
    instances = dict(re.findall(r"vrrp_instance dim_(\w+) \{(.*?)\n\}", conf, re.S))
    assert f'notify_master "{FENCE} 10.20.0.11"' in instances["srv1"]  # srv1's own address
    assert "notify_master" not in instances["srv2"]  # its own address: nobody to fence
    assert rendered[FENCE].startswith("#!/bin/bash\n")


def test_the_fence_blocklists_the_peers_own_address_in_the_stores_cluster(tmp_path):
    rendered = files(layout(' user="head" ceph-conf="/etc/ceph/site.conf"'), "srv2")
    run, calls = run_script(rendered[FENCE], "ceph", CEPH_CALLS, tmp_path, "10.20.0.11")
    assert run.returncode == 0, run.stderr
    assert calls.splitlines() == [
        "--conf /etc/ceph/site.conf --id head --connect-timeout 10 osd blocklist add 10.20.0.11"
    ]


@pytest.mark.parametrize(
    "probe",
    [
        "#!/bin/sh\nexit 0\n",  # its ganesha answers (it gave up its address for another check)
        "#!/bin/sh\necho 'bash: connect: Connection refused' >&2\nexit 1\n",  # its kernel does
    ],
)
def test_a_peer_that_answers_on_its_own_address_is_alive_and_not_fenced(tmp_path, probe):
    rendered = files(layout(), "srv2")
    run, calls = run_script(
        rendered[FENCE], "ceph", CEPH_CALLS, tmp_path, "10.20.0.11", probe=probe
    )
    assert run.returncode == 0, run.stderr
    assert calls == ""  # its restarted ganesha ends its old sessions itself


@pytest.mark.parametrize("asked", ["10.20.0.12", "10.20.0.3", "10.20.0.1", "", "10.20.0.11 x"])
def test_the_fence_refuses_any_address_but_a_peers_own(tmp_path, asked):
    rendered = files(layout(), "srv2")  # srv2's own 10.20.0.12, srv1's service 10.20.0.1
    run, calls = run_script(rendered[FENCE], "ceph", CEPH_CALLS, tmp_path, asked)
    assert run.returncode == 2 and calls == ""
    assert run.stderr == f"dim-fence: '{asked}' is not the own address of a peer of srv2\n"


def test_the_fence_asks_again_while_the_cluster_does_not_answer_then_says_it_failed(tmp_path):
    rendered = files(layout(), "srv2")
    down = '#!/bin/sh\necho x >> "$0.calls"\necho "error connecting to the cluster" >&2\nexit 1\n'
    run, calls = run_script(rendered[FENCE], "ceph", down, tmp_path, "10.20.0.11")
    assert run.returncode == 1 and len(calls.split()) == 10
    assert run.stderr == (
        "dim-fence: could not fence 10.20.0.11: error connecting to the cluster\n"
    )


def test_a_head_lifts_the_fence_on_its_own_address_before_ganesha_starts(tmp_path):
    rendered = files(layout(' ceph-conf="/etc/ceph/site.conf"'), "srv1")
    run, calls = run_script(rendered[GANESHA_UNFENCE], "ceph", CEPH_CALLS, tmp_path)
    assert run.returncode == 0, run.stderr
    assert calls.splitlines() == [
        "--conf /etc/ceph/site.conf --id dim --connect-timeout 20 osd blocklist rm 10.20.0.11"
    ]


def test_a_head_outside_a_failover_set_is_never_fenced_nor_fences(tmp_path):
    alone = STORE.replace('servers="srv[1-2]"', 'servers="solo"')
    rendered = files(layout(store=alone), "solo")
    # its nodes wait for it: rados_cluster by default, their state reclaimed on its return
    assert parse(layout(store=alone), "pair.xml").stores["dimfs"].recovery == "rados_cluster"
    assert FENCE not in rendered and GANESHA_UNFENCE not in rendered
    assert re.findall(r"^ExecStartPre=(.*)$", rendered[GANESHA_GRACE_UNIT], re.M) == [GANESHA_GRACE]


def test_a_server_outside_the_store_exports_its_own_file_system():
    block = conf(layout(), "solo")
    assert all(e["fsal"][0] == {"name": ["VFS"]} for e in block["export"])
    assert "ceph" not in block and "rados_kv" not in block


@pytest.mark.parametrize(
    ("store", "message", "offending"),
    [
        (
            '<store name="s" cephfs="dimfs" servers="srv[1-3]"/>',
            "store s: no server srv3 in the layout",
            "srv3",
        ),
        (
            '<store name="s" cephfs="dimfs" servers="srv1"/>',
            "failover set pair: server srv1 exports store s, srv2 the state folder (no store): "
            "the servers of a set share one file system",
            "srv2",
        ),
        (
            '<store name="s" cephfs="dimfs" servers="srv[1-2]"/>'
            '<store name="t" cephfs="other" servers="srv2"/>',
            "server srv2 is a head of stores s and t: a server exports one store",
            "srv2",
        ),
        (
            '<store name="s" cephfs="dim fs" servers="srv[1-2]"/>',
            "invalid CephFS name 'dim fs'",
            None,
        ),
        (
            '<store name="s" cephfs="dimfs" servers="srv[1-2]" ceph-conf="etc/ceph.conf"/>',
            "ceph-conf",
            None,
        ),
        (
            '<store name="s" cephfs="dimfs" servers="srv[1-2]" user="dim;rm"/>',
            "invalid Ceph user name",
            None,
        ),
    ],
)
def test_a_bad_store_is_one_line_naming_the_problem(store, message, offending):
    with pytest.raises(LayoutError) as caught:
        parse(layout(store=store.replace("{", "{{").replace("}", "}}")), "pair.xml")
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith("pair.xml:")
    if offending:
        assert repr(offending) in text or offending in text


def test_a_store_head_must_serve_nfs_with_ganesha():
    data = layout().replace(
        b'<server name="solo" address="10.20.0.3" dhcp="dnsmasq" nfs="ganesha"/>',
        b'<server name="solo" address="10.20.0.3" dhcp="dnsmasq" nfs="kernel"/>',
    )
    data = data.replace(
        b'servers="srv[1-2]"/>\n</cluster>', b'servers="srv[1-2],solo"/>\n</cluster>'
    )
    with pytest.raises(LayoutError, match='store dimfs: server solo has nfs="kernel"'):
        parse(data, "pair.xml")
