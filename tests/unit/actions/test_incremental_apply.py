"""An incremental ``dim apply`` installs what a full one would, byte for byte, after any changes.

A seeded random walk of MACs set, imported and cleared, images assigned, nodes switched and
cluster.xml edited (among others the server's loaders, its HTTP server and nodes declared
secure-boot, and an iPXE template overridden or not: the links per MAC each asks for); after
every step one incremental apply into a root kept from step to step (which learns what
changed from the state DB's change journal), then a full apply in dry-run mode on that root,
which must find nothing to change, and the boot targets that ``dim serve`` falls back on
compared with a full rewrite's; every few steps a full apply into a fresh root too, and the
two trees compared: every file's bytes and mode, every link's target, and the installed-files
journal read as entries (it is a journal: the appended lines of successive applies are not
those of one apply, what they say is).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from dim.actions import nodes
from dim.actions.apply import apply
from dim.actions.context import Context
from dim.boot.targets import Snapshot
from dim.images import operations
from dim.paths import StatePaths
from dim.records import MACS_TABLE, NODE_CHANGES_TABLE, BootTarget
from dim.services import applied, incremental
from dim.services import apply as applier
from dim.services import dhcp as dhcp_files
from dim.services.apply import diff
from dim.services.manifest import PATH as MANIFEST
from dim.services.manifest import Manifest
from dim.services.rendering import PACKAGE_TEMPLATES, RenderedFile
from tests.conftest import require_binary
from tests.image_trees import base_tree
from tests.unit.conftest import LINKED, PAIR, PAIR_MACS, SMALL

# Only alpha has a version: its nodes get replicas (a copy each), so few nodes have it.
LAYOUT = """<?xml version="1.0"?>
<cluster name="inc" domain="inc.example">
  <network name="boot" subnet="10.30.0.0/16" gateway="10.30.0.1"/>
  <network name="fast" subnet="10.31.0.0/16"/>
  <network name="bmc" subnet="10.32.0.0/16"/>
  <server name="srv" address="10.30.0.2" dhcp="{dhcp}" nfs="kernel" http="{http}"{loaders}/>
  <image name="alpha"><persist path="/etc"/><volatile path="/tmp"/></image>
  <image name="beta"><persist path="/etc"/></image>
  <group name="rack" nodes="r[1-2]n[001-{rack}]" image="beta">
    <interface network="boot" ip="10.30.{{n1}}.{{n2}}"/>
    <interface network="fast" ip="10.31.{{n1}}.{{n2}}"/>
    <bmc driver="redfish" address="10.32.{{n1}}.{{n2}}" credentials="default"/>
    <node name="r1n00[1-3]" image="{override}"/>{secure}
  </group>
  <group name="gpu" nodes="g[01-40]" image="beta">
    <interface network="fast" ip="10.31.9.{{n1}}"/>
    <interface network="boot" ip="10.30.9.{{n1}}" hostname="{{name}}-boot"/>
  </group>
</cluster>
"""
RACKS = (40, 50, 60)  # nodes per rack, as cluster.xml is edited


# The server's loaders, which decide which links per MAC are rendered (dim.services.loaders):
# none (all iPXE), PXELINUX, GRUB, both, iPXE for Secure Boot nodes too, a site's own loader
LOADERS = (
    "",
    "",
    ' bios-loader="lpxelinux.0"',
    ' uefi-loader="grubx64.efi"',
    ' bios-loader="lpxelinux.0" uefi-http-loader="grubx64.efi"',
    ' secure-boot-loader="snponly.efi"',
    ' uefi-http-loader="site/own.efi"',
)
# nodes declared secure-boot (shim, then GRUB, reads their file by MAC), often, or none
SECURE = ("", *['\n    <node name="r[1-2]n0[04-25]" secure-boot="yes"/>'] * 2)


def _layout(
    dhcp: str,
    rack: int = 50,
    override: str = "alpha",
    http: str = "dim",
    loaders: str = "",
    secure: str = "",
) -> bytes:
    return LAYOUT.format(
        dhcp=dhcp,
        rack=f"{rack:03}",
        override=override,
        http=http,
        loaders=loaders,
        secure=secure,
    ).encode()


def _boot_settings(rng: random.Random) -> dict[str, str]:
    return {
        "http": rng.choice(["dim", "none"]),
        "loaders": rng.choice(LOADERS),
        "secure": rng.choice(SECURE),
    }


def _override_or_not(ctx: Context, rng: random.Random) -> str:
    """An override of an iPXE template, which makes every link per MAC rendered, or none."""
    override = ctx.template_dir / "image.ipxe.j2"
    if rng.random() < 0.3:
        ctx.template_dir.mkdir(exist_ok=True)
        text = (PACKAGE_TEMPLATES / "image.ipxe.j2").read_text()
        override.write_text(text + "# the site's own\n")
        return "image.ipxe.j2 overridden"
    override.unlink(missing_ok=True)
    return "no override"


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: a link's target, or a file's mode and bytes."""
    found: dict[str, tuple] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            relative = path[len(str(root)) :]
            if relative == MANIFEST:
                found[relative] = ("journal", Manifest.read(path).entries)
            elif os.path.islink(path):
                found[relative] = ("link", os.readlink(path))
            else:
                with open(path, "rb") as handle:
                    found[relative] = ("file", os.stat(path).st_mode, handle.read())
    return found


def _boot_targets(ctx: Context) -> dict[str, BootTarget]:
    return Snapshot(StatePaths(ctx.state).boot_targets).targets()


def _expected_targets(ctx: Context) -> dict[str, BootTarget]:
    """The boot targets as a full rewrite from every MAC and image would leave them."""
    observed = ctx.observed()
    return {
        mac: BootTarget(node, network, observed.images.get(node))
        for (node, network), mac in observed.macs.items()
    }


def _random_mac(rng: random.Random) -> str:
    return "52:54:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(4))


def _clear_mac(ctx: Context, node: str) -> None:
    """No command forgets a MAC (yet): the state DB as a future one would leave it, the
    change in the change journal as every change of a MAC is."""
    with sqlite3.connect(StatePaths(ctx.state).db) as db:
        db.execute(f"DELETE FROM {MACS_TABLE} WHERE node = ?", (node,))
        db.execute(f"INSERT INTO {NODE_CHANGES_TABLE} (node) VALUES (?)", (node,))


def _step(ctx: Context, rng: random.Random, names: list[str], dhcp: str) -> str:
    """One random change; what it was, for the failure message."""
    kind = rng.choice(["mac"] * 4 + ["clear", "image", "switch", "layout", "import"])
    node = rng.choice(names)
    if kind == "import":  # a few MACs at once, one of them on the second network
        chosen = rng.sample(names, 3)
        lines = [f"{n},{_random_mac(rng)}" for n in chosen[:2]] + [
            f"{chosen[2]},{_random_mac(rng)},fast"
        ]
        csv = ctx.state.parent / "some.csv"
        csv.write_text("\n".join(lines) + "\n")
        nodes.import_macs(ctx, csv)
        return f"import-macs {'; '.join(lines)}"
    if kind == "mac":
        mac = _random_mac(rng)
        nodes.set_mac(ctx, node, mac)
        return f"set {node} --mac {mac}"
    if kind == "clear":
        _clear_mac(ctx, node)
        return f"cleared the MAC of {node}"
    if kind == "image":
        image = rng.choice(["alpha", "beta"])
        nodes.set_image(ctx, node, image)
        return f"set {node} --image {image}"
    if kind == "switch":  # to the image with a version: a switch makes the node's replica
        nodes.switch(ctx, node, "alpha")
        return f"switch {node} alpha"
    rack, override = rng.choice(RACKS), rng.choice(["alpha", "beta"])
    # which links per MAC are rendered: http="none" the iPXE ones, the loaders and the
    # secure-boot nodes PXELINUX's and GRUB's, a template override all (dim.services.loaders)
    settings = _boot_settings(rng)
    ctx.config.write_bytes(_layout(dhcp, rack, override, **settings))
    return f"cluster.xml: rack of {rack}, override {override}, {settings}; " + _override_or_not(
        ctx, rng
    )


@pytest.mark.parametrize("dhcp", ["dnsmasq", "kea", "isc"])
def test_incremental_applies_install_what_a_full_apply_installs_after_random_changes(
    tmp_path, dhcp, monkeypatch
):
    steps = 20
    spliced = []  # the applies that rendered only the changed nodes
    render_changes = incremental.render_changes
    monkeypatch.setattr(
        incremental, "render_changes", lambda *a: spliced.append(render_changes(*a)) or spliced[-1]
    )
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    config = tmp_path / "cluster.xml"
    config.write_bytes(_layout(dhcp, **_boot_settings(rng)))
    ctx = Context(config=config, state=tmp_path / "state")
    source = base_tree(tmp_path / "src")
    store = ctx.store()
    operations.import_image(store, ctx.cluster().images["alpha"], str(source), incremental=False)
    # the nodes every rack size keeps, and the gpu nodes, who boot on the second network
    # (a second subnet in the DHCP files, with hosts of its own)
    names = [
        n.name for n in ctx.cluster().nodes if n.group == "gpu" or n.name[-3:] <= f"{min(RACKS):03}"
    ]
    csv = tmp_path / "macs.csv"
    csv.write_text(
        "".join(f"{name},52:54:00:00:00:{n:02x}\n" for n, name in enumerate(rng.sample(names, 60)))
    )
    nodes.import_macs(ctx, csv)
    kept = tmp_path / "kept"
    apply(ctx, root=kept, do_reload=False, validation=False)
    done = []
    for step in range(steps):
        done.append(_step(ctx, rng, names, dhcp))
        apply(ctx, root=kept, do_reload=False, validation=False)
        check = apply(ctx, root=kept, dry_run=True, validation=False, full=True)
        assert check.result.changes == [], f"seed {seed}, after: {'; '.join(done)}"
        assert _boot_targets(ctx) == _expected_targets(ctx), f"seed {seed}: {'; '.join(done)}"
        if step % 5 == 4:
            fresh = tmp_path / f"fresh-{step}"
            apply(ctx, root=fresh, do_reload=False, validation=False, full=True)
            assert _tree(kept) == _tree(fresh), f"seed {seed}, after: {'; '.join(done)}"
    used = sum(1 for s in spliced if s is not None)
    assert used >= steps // 2, f"seed {seed}: {used} incremental"


# (change, whether it is spliced): the first, last and only hosts of a subnet. The rack nodes
# boot on the server's network, declared even without a host; the gpu nodes on another.
EDGES = [
    ({"r1n002": "52:54:00:00:02:02"}, True),  # the last of its subnet, replaced
    ({"r1n002": None}, True),  # the last taken away: the one before becomes the last
    ({"r2n050": "52:54:00:00:02:50"}, True),  # a new last
    ({"r1n001": "52:54:00:00:01:11"}, True),  # the first
    ({"r1n001": None, "r2n050": None}, True),  # the server's subnet emptied
    ({"r2n001": "52:54:00:00:02:01"}, True),  # a host in the empty list
    ({"g02": "52:54:00:00:09:02"}, True),  # a second host in the other subnet, last
    ({"g01": None, "g02": None}, False),  # the other subnet's hosts gone: one subnet less
    ({"g40": "52:54:00:00:09:40"}, False),  # and back
]


def _watched_splices(tmp_path, dhcp, monkeypatch) -> tuple[list, Context]:
    """A context on ``_layout(dhcp)``, and the list that each ``render_changes`` result
    (None where it could not splice) is appended to."""
    spliced = []
    render_changes = incremental.render_changes
    monkeypatch.setattr(
        incremental, "render_changes", lambda *a: spliced.append(render_changes(*a)) or spliced[-1]
    )
    config = tmp_path / "cluster.xml"
    config.write_bytes(_layout(dhcp))
    return spliced, Context(config=config, state=tmp_path / "state")


@pytest.mark.parametrize("dhcp", ["dnsmasq", "kea", "isc"])
def test_the_first_last_and_only_hosts_of_a_subnet_are_spliced_as_a_full_apply_renders_them(
    tmp_path, dhcp, monkeypatch
):
    spliced, ctx = _watched_splices(tmp_path, dhcp, monkeypatch)
    for name, mac in [("r1n001", "01:01"), ("r1n002", "01:02"), ("g01", "09:01")]:
        nodes.set_mac(ctx, name, f"52:54:00:00:{mac}")
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False, validation=False)
    for number, (macs, splices) in enumerate(EDGES):
        for name, mac in macs.items():
            if mac is None:
                _clear_mac(ctx, name)
            else:
                nodes.set_mac(ctx, name, mac)
        apply(ctx, root=root, do_reload=False, validation=False)
        assert (spliced[-1] is not None) == splices, f"step {number}: {macs}"
        check = apply(ctx, root=root, dry_run=True, validation=False, full=True)
        assert [c.path for c in check.result.changes] == [], f"step {number}: {macs}"


@pytest.mark.parametrize(("dhcp", "splices"), [("dnsmasq", True), ("kea", True), ("isc", False)])
def test_a_failover_sets_hosts_are_spliced_with_their_servers_tags_where_they_can_be(
    tmp_path, dhcp, splices, monkeypatch
):
    spliced = []
    render_changes = incremental.render_changes
    monkeypatch.setattr(
        incremental, "render_changes", lambda *a: spliced.append(render_changes(*a)) or spliced[-1]
    )
    config = tmp_path / "pair.xml"
    config.write_bytes(PAIR.replace(b'dhcp="dnsmasq"', f'dhcp="{dhcp}"'.encode()))
    ctx = Context(config=config, state=tmp_path / "state")
    for (name, _), mac in PAIR_MACS.items():
        nodes.set_mac(ctx, name, mac)
    root = tmp_path / "root"
    apply(ctx, root=root, server="srv1", do_reload=False, validation=False)
    for number, (name, mac) in enumerate(
        [
            ("b1", "52:54:00:20:01:11"),
            ("a2", "52:54:00:20:00:12"),
            ("b2", None),
            ("b2", "52:54:00:20:01:12"),
        ]
    ):
        if mac is None:
            _clear_mac(ctx, name)
        else:
            nodes.set_mac(ctx, name, mac)
        apply(ctx, root=root, server="srv1", do_reload=False, validation=False)
        # dhcpd in a failover set keeps no record: the apply does not try to splice
        assert len(spliced) == (number + 1 if splices else 0), f"step {number}"
        assert None not in spliced, f"step {number}: {name} {mac}"
        check = apply(ctx, root=root, server="srv1", dry_run=True, validation=False, full=True)
        assert [c.path for c in check.result.changes] == [], f"step {number}: {name} {mac}"


@pytest.mark.parametrize("dhcp", ["dnsmasq", "kea", "isc"])
def test_an_override_of_the_template_that_holds_the_hosts_renders_everything(
    tmp_path, dhcp, monkeypatch
):
    spliced, ctx = _watched_splices(tmp_path, dhcp, monkeypatch)
    template = incremental.HOSTS_TEMPLATES[dhcp]
    ctx.template_dir.mkdir()
    package = (PACKAGE_TEMPLATES / template).read_text()
    (ctx.template_dir / template).write_text(package.replace("{{ h.mac }}", "{{ h.mac | upper }}"))
    nodes.set_mac(ctx, "r1n001", "52:54:00:00:00:01")
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False, validation=False)
    nodes.set_mac(ctx, "r1n001", "52:54:00:00:00:aa")
    apply(ctx, root=root, do_reload=False, validation=False)
    assert spliced == []  # no record kept: not even tried
    hosts = {"dnsmasq": dhcp_files.DNSMASQ_HOSTS, "kea": dhcp_files.KEA_CONF}
    installed = (root / hosts.get(dhcp, dhcp_files.ISC_CONF).lstrip("/")).read_bytes()
    assert b"52:54:00:00:00:AA" in installed and b"52:54:00:00:00:aa" not in installed


DAEMONS = {
    "kea": ("kea-dhcp4", "kea-dhcp4-server", "/etc/kea/kea-dhcp4.conf", b'{ "hw-address": '),
    "isc": ("dhcpd", "isc-dhcp-server", "/etc/dhcp/dhcpd.conf", b"hardware ethernet"),
}


@pytest.mark.parametrize("dhcp", ["kea", "isc"])
def test_a_spliced_file_is_checked_by_its_daemon_as_its_new_entries_alone(
    tmp_path, dhcp, monkeypatch
):
    program, package, path, entry = DAEMONS[dhcp]
    require_binary(program, package)
    config = tmp_path / "cluster.xml"
    config.write_bytes(_layout(dhcp))
    ctx = Context(config=config, state=tmp_path / "state")
    for number, name in enumerate(["r1n001", "r1n002", "r1n003", "g01"], start=1):
        nodes.set_mac(ctx, name, f"52:54:00:00:00:{number:02x}")
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False)
    checked = []
    validator = applier.VALIDATORS[dhcp]
    monkeypatch.setitem(
        applier.VALIDATORS, dhcp, lambda files, *a: checked.append(files) or validator(files, *a)
    )
    nodes.set_mac(ctx, "r1n002", "52:54:00:00:aa:02")
    report = apply(ctx, root=root, do_reload=False)
    assert ("update", path) in [(c.action, c.path) for c in report.result.changes]
    assert report.result.validated == [dhcp]
    (small,) = [files[path] for files in checked]
    assert small.count(entry) == 1 and b"52:54:00:00:aa:02" in small
    # and the daemon takes the whole spliced file as well
    installed = (root / path.lstrip("/")).read_bytes()
    assert installed.count(entry) == 4 and b"52:54:00:00:aa:02" in installed
    applier.validate([RenderedFile(path, installed, service=dhcp)], [dhcp], root)


def test_a_one_node_change_renders_that_node_alone_and_validates_its_new_line(ctx, tmp_path):
    require_binary("dnsmasq", "dnsmasq")
    ctx.config.write_bytes(LINKED)  # PXELINUX and GRUB: a link per MAC for each
    for number, name in enumerate(["c01", "c02", "c03"], start=1):
        nodes.set_mac(ctx, name, f"52:54:00:00:00:{number:02x}")
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False)
    nodes.set_mac(ctx, "c02", "52:54:00:00:aa:02")
    preview = apply(ctx, root=root, do_reload=False, dry_run=True)
    (hosts,) = [c for c in preview.result.changes if c.path == "/etc/dim/dnsmasq.hosts"]
    assert "-52:54:00:00:00:02,10.10.0.12,c02\n+52:54:00:00:aa:02,10.10.0.12,c02" in diff(hosts)
    report = apply(ctx, root=root, do_reload=False)
    changes = sorted((c.action, c.path) for c in report.result.changes)
    assert changes == [
        ("create", "/srv/dim/tftp/grub/nodes/52:54:00:00:aa:02.cfg"),
        ("create", "/srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-aa-02"),
        ("remove", "/srv/dim/tftp/grub/nodes/52:54:00:00:00:02.cfg"),
        ("remove", "/srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-00-02"),
        ("update", "/etc/dim/dnsmasq.hosts"),
    ]
    assert report.result.validated == ["dnsmasq"]
    counts = report.result.counts()
    fresh = apply(ctx, root=tmp_path / "fresh", do_reload=False, full=True)  # all created
    assert report.result.unchanged + counts["create"] + counts["update"] == len(
        fresh.result.changes
    )


def test_a_secure_boot_nodes_change_moves_its_grub_link_alone(ctx, tmp_path, monkeypatch):
    """The default loaders (iPXE) and c02 declared secure-boot: shim loads GRUB, which reads
    c02's file by its MAC; the incremental apply moves that link, and no other is rendered."""
    secure = b'<node name="c02" secure-boot="yes"/>\n    <node name="c04" image="beta"/>'
    ctx.config.write_bytes(SMALL.replace(b'<node name="c04" image="beta"/>', secure))
    for number, name in enumerate(["c01", "c02", "c03"], start=1):
        nodes.set_mac(ctx, name, f"52:54:00:00:00:{number:02x}")
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False, validation=False)
    assert [p.name for p in (root / "srv/dim/tftp/grub/nodes").iterdir()] == [
        "52:54:00:00:00:02.cfg"
    ]
    nodes.set_mac(ctx, "c02", "52:54:00:00:aa:02")
    nodes.set_mac(ctx, "c03", "52:54:00:00:aa:03")
    spliced = []
    render_changes = incremental.render_changes
    monkeypatch.setattr(
        incremental, "render_changes", lambda *a: spliced.append(render_changes(*a)) or spliced[-1]
    )
    report = apply(ctx, root=root, do_reload=False, validation=False)
    assert spliced and spliced[0] is not None  # the incremental apply
    assert sorted((c.action, c.path) for c in report.result.changes) == [
        ("create", "/srv/dim/tftp/grub/nodes/52:54:00:00:aa:02.cfg"),
        ("remove", "/srv/dim/tftp/grub/nodes/52:54:00:00:00:02.cfg"),
        ("update", "/etc/dim/dnsmasq.hosts"),
    ]
    assert not apply(ctx, root=root, do_reload=False, validation=False, full=True).result.changes


def test_a_changed_layout_or_an_emptied_root_renders_everything(ctx, tmp_path, monkeypatch):
    nodes.set_mac(ctx, "c01", "52:54:00:00:00:01")
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False, validation=False)
    partial = []
    real = applied.Applied.read
    monkeypatch.setattr(applied.Applied, "read", lambda *a: partial.append(real(*a)) or partial[-1])
    apply(ctx, root=root, do_reload=False, validation=False)
    assert partial[-1] is not None  # the same inputs: the record is used
    ctx.config.write_bytes(ctx.config.read_bytes().replace(b"c[01-04]", b"c[01-05]"))
    apply(ctx, root=root, do_reload=False, validation=False)
    assert partial[-1] is None  # another cluster.xml: another fingerprint
    apply(ctx, root=root, do_reload=False, validation=False)
    assert partial[-1] is not None
    shutil.rmtree(root)  # the record is of a root that is no more
    nodes.set_mac(ctx, "c02", "52:54:00:00:00:02")
    report = apply(ctx, root=root, do_reload=False, validation=False)
    assert partial[-1] is None and report.result.unchanged == 0
    assert (root / "etc/dim/hosts").is_file()


def test_a_state_db_made_again_is_not_read_as_the_journal_the_record_consumed(ctx, tmp_path):
    for number, name in enumerate(["c01", "c02", "c03"], start=1):
        nodes.set_mac(ctx, name, f"52:54:00:00:00:{number:02x}")
    root = tmp_path / "root"
    apply(ctx, root=root, do_reload=False, validation=False)
    db = StatePaths(ctx.state).db
    for path in db.parent.glob(db.name + "*"):
        path.unlink()  # its journal restarts: one entry, where the record consumed three
    nodes.set_mac(ctx, "c01", "52:54:00:00:00:11")
    apply(ctx, root=root, do_reload=False, validation=False)
    check = apply(ctx, root=root, dry_run=True, validation=False, full=True)
    assert check.result.changes == []
    hosts = (root / "etc/dim/dnsmasq.hosts").read_text()
    assert "52:54:00:00:00:11" in hosts and "52:54:00:00:00:02" not in hosts
    assert _boot_targets(ctx) == _expected_targets(ctx)
