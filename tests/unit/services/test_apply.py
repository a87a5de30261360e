"""apply: atomic, minimal, validated by the real daemon, and nothing changes on failure."""

import os
from pathlib import Path

import pytest

from dim.errors import ApplyError, ValidationError
from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services import apply as applier
from dim.services.manifest import Manifest
from dim.services.render import render_all
from dim.services.rendering import RenderContext
from tests.conftest import require_binary
from tests.unit.conftest import SMALL


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file under root with what would show a rewrite: inode, mtime, content or link."""
    result = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            st = path.lstat()
            result[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns, os.readlink(path))
        elif path.is_file():
            st = path.stat()
            result[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns, path.read_bytes())
    return result


def install(inventory: Inventory, root: Path, template_dir=None, **options):
    files = render_all(RenderContext(inventory, "srv", Path("/var/lib/dim"), template_dir))
    return applier.apply(files, root, reload_command=lambda s: None, do_reload=False, **options)


@pytest.fixture(autouse=True)
def _dnsmasq():
    require_binary("dnsmasq", "dnsmasq")


def test_first_apply_creates_everything_and_validates(linked_inventory, tmp_path):
    result = install(linked_inventory, tmp_path)
    assert result.counts()["create"] == len(result.changes) > 0
    assert result.validated == ["dns", "dnsmasq"]  # dnsmasq's DNS-only file, and its DHCP's
    assert (tmp_path / "etc/dnsmasq.d/dim.conf").is_file()
    assert os.readlink(tmp_path / "srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-00-01") == "dim-alpha"
    assert not list(tmp_path.rglob(".*.dim-*")), "no temporary file is left behind"


def test_reapplying_unchanged_configuration_writes_nothing(small_inventory, tmp_path):
    install(small_inventory, tmp_path)
    before = snapshot(tmp_path)
    result = install(small_inventory, tmp_path)
    assert result.changes == []
    assert snapshot(tmp_path) == before


def test_changing_one_mac_rewrites_only_what_depends_on_it(linked_inventory, tmp_path):
    install(linked_inventory, tmp_path)
    before = snapshot(tmp_path)
    macs = dict(linked_inventory.macs)
    macs[("c01", "boot")] = "52:54:00:00:00:99"
    result = install(Inventory(linked_inventory.cluster, macs, linked_inventory.images), tmp_path)
    after = snapshot(tmp_path)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {
        "etc/dim/dnsmasq.hosts",
        "etc/dim/applied.list",
        "srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-00-01",
        "srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-00-99",
        "srv/dim/tftp/grub/nodes/52:54:00:00:00:01.cfg",
        "srv/dim/tftp/grub/nodes/52:54:00:00:00:99.cfg",
    }
    assert result.counts() == {"create": 2, "update": 1, "remove": 2}
    assert "srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-00-01" not in after


def test_the_ipxe_links_per_mac_go_when_dim_serve_answers_and_nothing_else_changes(
    small_inventory, tmp_path
):
    """A root applied for an HTTP root that another server serves (``http="none"``), then
    with the default, as a site that declared it and changed its mind, or an upgrade from a
    dim that rendered them always: the links go, every other file stays as it was."""
    data = SMALL.replace(b'<server name="srv"', b'<server http="none" name="srv"')
    elsewhere = Inventory(parse(data, "small.xml"), small_inventory.macs, small_inventory.images)
    install(elsewhere, tmp_path)
    nodes = tmp_path / "srv/dim/http/dim/nodes"
    assert os.readlink(nodes / "52-54-00-00-00-01.ipxe") == "../images/alpha.ipxe"
    before = snapshot(tmp_path)
    result = install(small_inventory, tmp_path)
    after = snapshot(tmp_path)
    assert result.counts() == {"create": 0, "update": 0, "remove": 4}
    assert {c.path for c in result.changes} == {
        f"/srv/dim/http/dim/nodes/{mac}.ipxe"
        for mac in (
            "52-54-00-00-00-01",
            "52-54-00-00-00-02",
            "52-54-00-00-00-04",
            "52-54-00-00-01-01",
        )
    }
    assert not list(nodes.iterdir())
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {"etc/dim/applied.list"} | {
        k for k in before if k.startswith("srv/dim/http/dim/nodes/")
    }
    assert not install(small_inventory, tmp_path).changes


def test_the_pxelinux_and_grub_links_go_when_no_loader_reads_them_and_nothing_else_changes(
    linked_inventory, small_inventory, tmp_path
):
    """A root applied for a server that sends PXELINUX and GRUB, then with the defaults (iPXE
    for every kind of client), as a site that changed its loaders, or an upgrade from a dim
    that rendered them always: the dry run lists the links as removed, the apply removes
    them, and every other file but the DHCP file that names the loaders stays as it was."""
    install(linked_inventory, tmp_path)
    tftp = tmp_path / "srv/dim/tftp"
    assert os.readlink(tftp / "pxelinux.cfg/01-52-54-00-00-00-01") == "dim-alpha"
    before = snapshot(tmp_path)
    macs = ("52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:04", "52:54:00:00:01:01")
    links = {f"/srv/dim/tftp/grub/nodes/{mac}.cfg" for mac in macs} | {
        f"/srv/dim/tftp/pxelinux.cfg/01-{mac.replace(':', '-')}" for mac in macs
    }
    preview = install(small_inventory, tmp_path, dry_run=True)
    assert {c.path for c in preview.changes if c.action == "remove"} == links
    assert snapshot(tmp_path) == before
    result = install(small_inventory, tmp_path)
    assert result.counts() == {"create": 0, "update": 1, "remove": 8}
    assert {c.path for c in result.changes} == links | {"/etc/dnsmasq.d/dim.conf"}
    assert not list((tftp / "grub/nodes").iterdir())
    assert sorted(p.name for p in (tftp / "pxelinux.cfg").iterdir()) == [
        "default",
        "dim-alpha",
        "dim-beta",
    ]
    after = snapshot(tmp_path)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {"etc/dim/applied.list", "etc/dnsmasq.d/dim.conf"} | {
        k.lstrip("/") for k in links
    }
    assert not install(small_inventory, tmp_path).changes


def test_refused_configuration_changes_nothing(small_inventory, tmp_path):
    install(small_inventory, tmp_path)
    before = snapshot(tmp_path)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "dnsmasq.conf.j2").write_text("dhcp-range=not-an-address,static\n")
    (templates / "hosts.j2").write_text("# changed too\n")
    root = tmp_path
    with pytest.raises(
        ValidationError, match="dnsmasq refused the rendered /etc/dnsmasq.d/dim.conf"
    ):
        install(small_inventory, root, templates)
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("templates")} == before


def test_dry_run_validates_and_writes_nothing(small_inventory, tmp_path):
    result = install(small_inventory, tmp_path, dry_run=True)
    assert result.changes and result.validated == ["dns", "dnsmasq"]
    assert list(tmp_path.iterdir()) == []


def test_missing_validator_is_an_error_unless_skipped(small_inventory, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ApplyError, match="dnsmasq is not installed"):
        install(small_inventory, tmp_path / "root")
    assert not (tmp_path / "root").exists()
    result = install(small_inventory, tmp_path / "root", validation=False)
    assert result.not_validated == ["dns", "dnsmasq"]


def test_interrupted_write_leaves_whole_files_and_a_rerun_completes(
    linked_inventory, tmp_path, monkeypatch
):
    real = applier.install_link
    calls = []

    def failing(where, link, **options):
        calls.append(where)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        real(where, link, **options)

    monkeypatch.setattr(applier, "install_link", failing)
    with pytest.raises(ApplyError, match="No space left on device"):
        install(linked_inventory, tmp_path)
    assert not list(tmp_path.rglob(".*.dim-*"))
    monkeypatch.setattr(applier, "install_link", real)
    install(linked_inventory, tmp_path)
    assert install(linked_inventory, tmp_path).changes == []


def test_a_file_no_longer_rendered_is_removed(linked_inventory, tmp_path):
    install(linked_inventory, tmp_path)
    macs = {k: v for k, v in linked_inventory.macs.items() if k[0] != "g1"}
    install(Inventory(linked_inventory.cluster, macs, linked_inventory.images), tmp_path)
    assert not (tmp_path / "srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-01-01").exists()
    installed = Manifest.read(str(tmp_path / "etc/dim/applied.list")).paths()
    assert "/srv/dim/tftp/pxelinux.cfg/01-52-54-00-00-01-01" not in installed


def test_reload_runs_only_for_changed_services(small_inventory, tmp_path):
    marker = tmp_path / "reloaded"
    files = render_all(RenderContext(small_inventory, "srv", Path("/var/lib/dim")))
    command = f"echo {{}} >> {marker}"

    def reload_command(service):
        return command.format(service)

    result = applier.apply(files, tmp_path / "root", reload_command=reload_command)
    assert result.reloaded == ["dns", "dnsmasq", "ganesha"]
    assert marker.read_text().split() == ["dns", "dnsmasq", "ganesha"]
    result = applier.apply(files, tmp_path / "root", reload_command=reload_command)
    assert result.reloaded == []


def test_failed_reload_is_reported_after_the_files_are_in_place(small_inventory, tmp_path):
    files = render_all(RenderContext(small_inventory, "srv", Path("/var/lib/dim")))
    with pytest.raises(ApplyError, match="reloading it failed .* exited 3"):
        applier.apply(files, tmp_path, reload_command=lambda s: "exit 3")
    assert (tmp_path / "etc/dnsmasq.d/dim.conf").is_file()


def test_kea_validation_does_not_need_the_servers_interface_here(tmp_path):
    require_binary("kea-dhcp4", "kea-dhcp4-server")
    from dim.layout.parser import parse

    cluster = parse(
        b"""<cluster name="k"><network name="boot" subnet="10.9.0.0/24"/>
        <server name="s" address="10.9.0.1" dhcp="kea" nfs="none" interface="nosuch0"/>
        <group name="g" nodes="n[1-2]"><interface network="boot" ip="10.9.0.{10+n1}"/></group>
        </cluster>""",
        "k.xml",
    )
    inventory = Inventory(cluster, {("n1", "boot"): "52:54:00:00:09:01"}, {})
    files = render_all(RenderContext(inventory, "s", Path("/var/lib/dim")))
    result = applier.apply(files, tmp_path, reload_command=lambda s: None, do_reload=False)
    assert result.validated == ["kea", "tftp"]  # Kea, and dnsmasq for its TFTP
    assert b'"interfaces": [ "nosuch0" ]' in (tmp_path / "etc/kea/kea-dhcp4.conf").read_bytes()
    tftp = (tmp_path / "etc/dnsmasq.d/dim-tftp.conf").read_text()
    assert "\nport=0\n" in tftp and "\ninterface=nosuch0\n" in tftp
    assert "\nenable-tftp\ntftp-root=/srv/dim/tftp\n" in tftp


def test_a_bad_line_spliced_into_an_installed_hosts_file_is_refused_and_nothing_changes(
    small_inventory, tmp_path
):
    """dnsmasq's test mode sees only the lines the installed hosts file lacks (the others
    were checked when it was installed): a bad one among 2,000 is still refused by name."""
    install(small_inventory, tmp_path)
    hosts = [
        f"52:54:00:00:{n // 256:02x}:{n % 256:02x},10.10.{n // 256}.{n % 256},h{n}"
        for n in range(2000)
    ]
    files = render_all(RenderContext(small_inventory, "srv", Path("/var/lib/dim")))
    (entry,) = [f for f in files if f.path == "/etc/dim/dnsmasq.hosts"]
    entry.content = "".join(f"{h}\n" for h in hosts).encode()
    applier.apply(files, tmp_path, reload_command=lambda s: None, do_reload=False)
    before = snapshot(tmp_path)
    hosts[1000] = "zz:zz,10.10.3.232,h1000"
    entry.content = "".join(f"{h}\n" for h in hosts).encode()
    with pytest.raises(ValidationError, match="bad hex constant"):
        applier.apply(files, tmp_path, reload_command=lambda s: None, do_reload=False)
    assert snapshot(tmp_path) == before
