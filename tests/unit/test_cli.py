"""The dim command, called in-process: output, exit status, and nothing lost on bad input."""

import importlib.util
import json
import shutil

from dim.cli import main
from dim.services import clients
from dim.services.nfs import ganesha_path
from tests.conftest import require, require_binary


def test_layout_check_summarises_a_valid_layout(dim):
    status, out, err = dim("layout", "check")
    assert status == 0, err
    assert "cluster t is valid" in out
    assert "nodes     6" in out
    assert "group     compute: 4 nodes" in out
    assert "warning: no MAC recorded for c[01-04],g[1-2]" in out


def test_layout_check_on_malformed_xml_prints_one_line_and_exits_2(dim, layout_file):
    layout_file.write_text(layout_file.read_text().replace("</group>", "</grop>", 1))
    status, out, err = dim("layout", "check")
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err == (
        f"dim: error: {layout_file}:12: malformed XML: "
        "Opening and ending tag mismatch: group line 8 and grop\n"
    )


def test_missing_layout_gives_a_hint(tmp_path, capsys):
    status = main(["--config", str(tmp_path / "nope.xml"), "layout", "check"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "cannot read the cluster layout" in err and "hint: pass --config" in err


def test_node_set_and_list_json(dim):
    assert dim("node", "set", "c01", "--mac", "52-54-00-00-00-01")[0] == 0
    status, out, _ = dim("node", "list", "@compute!c[02-03]", "--json")
    assert status == 0
    records = json.loads(out)
    assert [r["name"] for r in records] == ["c01", "c04"]
    assert records[0]["interfaces"][0]["mac"] == "52:54:00:00:00:01"
    assert records[0]["bmc"]["address"] == "10.11.0.11"


def test_node_list_table_for_people(dim):
    dim("node", "set", "c01", "--mac", "52:54:00:00:00:01")
    status, out, _ = dim("node", "list", "c0[1-2]")
    lines = out.splitlines()
    headers = ["NODE", "GROUP", "IP", "MAC", "IMAGE", "SERVER", "BMC", "BOOTED", "LAST", "BOOT"]
    assert lines[0].split() == headers
    assert lines[1].split() == [
        "c01",
        "compute",
        "10.10.0.11",
        "52:54:00:00:00:01",
        "alpha",
        "srv",
        "10.11.0.11",
        "-",
        "-",
    ]


def test_duplicate_mac_is_refused_and_the_database_is_unchanged(dim):
    dim("node", "set", "c01", "--mac", "52:54:00:00:00:01")
    status, _, err = dim("node", "set", "c02", "--mac", "52:54:00:00:00:01")
    assert status == 2
    assert "duplicate MAC address 52:54:00:00:00:01: c01 (boot) and c02 (boot)" in err
    records = json.loads(dim("node", "list", "--json")[1])
    assert [r["interfaces"][0]["mac"] for r in records if r["interfaces"][0]["mac"]] == [
        "52:54:00:00:00:01"
    ]


def test_mac_for_several_nodes_is_refused(dim):
    status, _, err = dim("node", "set", "c[01-02]", "--mac", "52:54:00:00:00:01")
    assert status == 2 and "--mac names one node" in err


def test_malformed_mac_is_refused(dim):
    status, _, err = dim("node", "set", "c01", "--mac", "52:54:00:00:00")
    assert status == 2 and "malformed MAC" in err


def test_bad_csv_records_nothing(dim, tmp_path):
    csv = tmp_path / "macs.csv"
    csv.write_text("c01,52:54:00:00:00:01\nc02,52:54:00:00:00:zz\n")
    status, _, err = dim("node", "import-macs", str(csv))
    assert status == 2
    assert f"{csv}:2: malformed MAC" in err
    listed = json.loads(dim("node", "list", "--json")[1])
    macs = {(r["name"], i["network"]): i["mac"] for r in listed for i in r["interfaces"]}
    names = ["c01", "c02", "c03", "c04", "g1", "g2"]
    assert macs == {(name, "boot"): None for name in names}  # not even c01's good line


def test_import_macs_then_image_assignment(dim, tmp_path):
    csv = tmp_path / "macs.csv"
    csv.write_text("node,mac\nc01,52:54:00:00:00:01\ng1,52:54:00:00:00:02\n")
    status, out, _ = dim("node", "import-macs", str(csv))
    assert status == 0 and "2 MACs, 2 changed" in out
    status, out, _ = dim("node", "set", "@gpu", "--image", "alpha")
    assert status == 0 and "g[1-2]: image alpha (2 changed)" in out
    status, out, _ = dim("layout", "show", "g1")
    assert "image alpha" in out


def test_unknown_node_set_exits_2(dim):
    status, _, err = dim("node", "list", "zz[1-2]")
    assert status == 2 and "unknown node(s) zz[1-2]" in err


def test_apply_dry_run_then_apply_then_nothing_to_do(dim, tmp_path):
    require_binary("dnsmasq", "dnsmasq")
    dim("node", "set", "c01", "--mac", "52:54:00:00:00:01")
    root = tmp_path / "root"
    status, out, _ = dim("apply", "--root", str(root), "--dry-run", "--diff")
    assert status == 0 and "would change" in out and "+dhcp-range=" in out
    assert not root.exists()
    status, out, _ = dim("apply", "--root", str(root))
    assert status == 0 and "validated: dns, dnsmasq" in out
    status, out, _ = dim("apply", "--root", str(root), "--json")
    report = json.loads(out)
    assert report["changes"] == [] and report["unchanged"] > 0


def test_apply_with_a_refused_template_exits_1_and_writes_nothing(dim, tmp_path, layout_file):
    require_binary("dnsmasq", "dnsmasq")
    templates = layout_file.parent / "templates"
    templates.mkdir()
    (templates / "dnsmasq.conf.j2").write_text("no-such-option=1\n")
    status, _, err = dim("apply", "--root", str(tmp_path / "root"))
    assert status == 1
    assert "dnsmasq refused the rendered /etc/dnsmasq.d/dim.conf" in err
    assert not (tmp_path / "root").exists()
    shutil.rmtree(templates)


def serve_with(layout_file, dhcp: str, attributes: str = "") -> None:
    """Make the small layout's server run ``dhcp`` without NFS, reloading with ``true``."""
    text = layout_file.read_text()
    old = '<server name="srv" address="10.10.0.2" dhcp="dnsmasq" nfs="ganesha"/>'
    assert old in text
    layout_file.write_text(
        text.replace(
            old,
            f'<server name="srv" address="10.10.0.2" dhcp="{dhcp}" nfs="none" {attributes}>'
            f'<reload service="{dhcp}" command="true"/>'
            # dnsmasq's DHCP has a DNS-only dnsmasq beside it, reloaded as well
            + ('<reload service="dns" command="true"/>' if dhcp == "dnsmasq" else "")
            + "</server>",
        )
    )


def replace_mac(dim):
    assert dim("node", "set", "c01", "--mac", "52:54:00:00:00:01")[0] == 0
    assert dim("node", "set", "c01", "--mac", "52:54:00:00:01:01")[0] == 0


def test_stale_leases_wait_for_an_apply_that_reloads(dim, tmp_path, layout_file):
    serve_with(layout_file, "isc")
    replace_mac(dim)
    root = str(tmp_path / "root")
    status, out, _ = dim("apply", "--root", root, "--dry-run", "--skip-validation")
    assert status == 0 and "would release stale leases: c01" in out
    status, out, _ = dim("apply", "--root", root, "--no-reload", "--skip-validation", "--json")
    assert status == 0
    assert json.loads(out)["release_pending"] == [
        {"node": "c01", "network": "boot", "mac": "52:54:00:00:00:01"}
    ]
    status, out, _ = dim("apply", "--root", root, "--reload", "--skip-validation")
    assert status == 0
    assert "stale leases need no release: c01 (ISC dhcpd keeps no lease" in out
    status, out, _ = dim("apply", "--root", root, "--reload", "--skip-validation", "--json")
    report = json.loads(out)
    assert report["release_not_needed"] == report["release_pending"] == []


def test_an_unreleased_stale_lease_warns_exits_1_and_stays(dim, tmp_path, layout_file):
    serve_with(layout_file, "dnsmasq")  # without interface=: dhcp_release cannot be used
    replace_mac(dim)
    root = str(tmp_path / "root")
    status, out, err = dim("apply", "--root", root, "--reload", "--skip-validation", "--json")
    assert status == 1
    (failed,) = json.loads(out)["release_failed"]
    assert (failed["node"], failed["ip"]) == ("c01", "10.10.0.11")
    assert "set interface=" in failed["error"]
    assert "dim: error: 1 stale DHCP lease not released" in err
    status, out, err = dim("apply", "--root", root, "--reload", "--skip-validation")
    assert status == 1
    assert "warning: the stale lease of c01 (52:54:00:00:00:01 on 10.10.0.11)" in err
    assert "hint: they stay recorded" in err


def test_templates_copy_makes_an_override(dim, layout_file):
    status, out, _ = dim("templates", "copy", "hosts.j2")
    assert status == 0
    assert (layout_file.parent / "templates" / "hosts.j2").is_file()
    assert "hosts.j2  (overridden)" in dim("templates", "list")[1]


def test_help_lists_the_commands(dim):
    status, out, _ = dim("--help")
    assert status == 0
    for command in ("apply", "layout", "node", "templates"):
        assert command in out


def test_apply_gives_replicas_to_nodes_whose_image_exists(dim, tmp_path):
    require_binary("rsync", "rsync")
    require_binary("dnsmasq", "dnsmasq")
    source = tmp_path / "tree"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "motd").write_text("hello\n")
    assert dim("image", "import", "alpha", "--from", str(source))[0] == 0
    status, out, _ = dim("apply", "--root", str(tmp_path / "root"), "--dry-run")
    assert status == 0 and "would create replicas for c[01-03]" in out
    assert not (tmp_path / "state" / "nodes").exists()
    status, out, _ = dim("apply", "--root", str(tmp_path / "root"))
    assert "created replicas for c[01-03]" in out
    assert (tmp_path / "state/nodes/c02/alpha/etc/motd").read_text() == "hello\n"
    status, out, _ = dim("apply", "--root", str(tmp_path / "root"))
    assert "created replicas" not in out


def test_a_command_that_exits_with_a_status_makes_it_mains_status():
    """`dim lab run` exits with its remote command's status through ctx.exit(N)."""
    import click

    from dim.cli import cli

    @cli.command("exits-with-seven", hidden=True)
    def exits_with_seven() -> None:
        click.get_current_context().exit(7)

    try:
        assert main(["exits-with-seven"]) == 7
        assert main(["--version"]) == 0
    finally:
        cli.commands.pop("exits-with-seven")


def test_a_relative_state_folder_renders_absolute_exports_and_kernel_arguments(
    tmp_path, layout_file, capsys, monkeypatch
):
    """--state relative/path: NFS daemons and nodes get paths that mean something to them."""
    require_binary("rsync", "rsync")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tree/etc").mkdir(parents=True)
    (tmp_path / "tree/etc/motd").write_text("hello\n")
    relative = ["--config", "cluster.xml", "--state", "relative/state"]
    assert main([*relative, "image", "import", "alpha", "--from", "tree"]) == 0
    assert main([*relative, "node", "set", "c01", "--mac", "52:54:00:00:00:01"]) == 0
    root = tmp_path / "root"
    status = main([*relative, "apply", "--root", "root", "--skip-validation", "--no-reload"])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    state = tmp_path / "relative/state"
    text = "".join(
        p.read_bytes().decode(errors="replace") for p in sorted(root.rglob("*")) if p.is_file()
    )
    assert text.count("relative/state") == text.count(f"{state}/") > 0  # every one absolute
    assert f"Path = {ganesha_path(f'{state}/images')};" in text  # ganesha's export
    assert f"Path = {ganesha_path(f'{state}/nodes/c01')};" in text
    assert f"dim.root=10.10.0.2:{state}/images/alpha/live" in text  # the kernel's arguments
    assert f"dim.rw=10.10.0.2:{state}/nodes" in text


def test_apply_without_a_loaders_package_is_one_error_line_and_writes_nothing(
    dim, tmp_path, monkeypatch
):
    gone = clients.ShippedFile(str(tmp_path / "no/snponly.efi"), "ipxe")
    monkeypatch.setitem(clients.SHIPPED, "snponly.efi", (("snponly.efi", gone),))
    root = tmp_path / "root"
    status, out, err = dim("apply", "--root", str(root), "--skip-validation")
    assert status == 1 and out == ""
    assert err.splitlines() == [
        f"dim: error: {tmp_path}/no/snponly.efi is missing: it is the boot loader "
        "/srv/dim/http/snponly.efi of uefi-http clients; nothing was installed",
        "hint: apt-get install ipxe",
    ]
    assert not root.exists()


def test_apply_warns_of_a_sites_own_loader_that_is_not_there(dim, tmp_path, layout_file):
    layout_file.write_bytes(
        layout_file.read_bytes().replace(
            b'nfs="ganesha"/>', b'nfs="ganesha" uefi-loader="my.efi"/>'
        )
    )
    status, _, err = dim("apply", "--root", str(tmp_path / "root"), "--skip-validation")
    assert status == 0
    assert "warning: /srv/dim/tftp/my.efi is missing: uefi-pxe clients are sent it" in err


def test_layout_show_says_which_nodes_boot_with_secure_boot(dim, layout_file):
    layout_file.write_bytes(
        layout_file.read_bytes().replace(
            b'<node name="c04" image="beta"/>', b'<node name="c04" image="beta" secure-boot="yes"/>'
        )
    )
    status, out, _ = dim("layout", "show", "c[03-04]")
    assert status == 0
    assert "c04  (group compute, server srv, image beta, Secure Boot)" in out
    assert "c03  (group compute, server srv, image alpha)" in out
    status, out, _ = dim("layout", "show", "c[03-04]", "--json")
    assert [r["secure_boot"] for r in json.loads(out)] == [False, True]


def test_the_state_db_is_the_one_database_or_dim_database_names(dim, database, monkeypatch):
    if database:
        monkeypatch.setenv("DIM_DATABASE", database)
    assert dim("node", "set", "c01", "--mac", "52:54:00:00:00:01")[0] == 0
    status, _, err = dim("node", "set", "c02", "--mac", "52:54:00:00:00:01")
    assert status == 2 and "duplicate MAC address" in err
    assert dim("node", "set", "c01", "--image", "beta")[0] == 0
    monkeypatch.delenv("DIM_DATABASE", raising=False)
    options = ("--database", database) if database else ()
    records = json.loads(dim(*options, "node", "list", "c0[1-2]", "--json")[1])
    assert [(r["interfaces"][0]["mac"], r["image"]) for r in records] == [
        ("52:54:00:00:00:01", "beta"),
        (None, "alpha"),
    ]


def test_an_unreachable_state_db_exits_1_without_showing_its_password(dim):
    require(importlib.util.find_spec("psycopg") is not None, "psycopg is not installed")
    down = ("--database", "postgresql://dim:s3cret@127.0.0.1:1/dim")
    for command in (("node", "set", "c01", "--mac", "52:54:00:00:00:01"), ("node", "list")):
        status, out, err = dim(*down, *command)
        assert status == 1 and out == ""
        assert err.startswith("dim: error: cannot open the state DB postgresql+psycopg://dim:***@")
        assert "s3cret" not in err and "hint: is the database server up" in err


def test_layout_check_names_each_failover_set_with_its_servers_own_addresses(dim, layout_file):
    from tests.unit.conftest import PAIR

    layout_file.write_bytes(PAIR)
    status, out, err = dim("layout", "check")
    assert status == 0, err
    assert "  failover  pair: srv1 (own 10.20.0.11), srv2 (own 10.20.0.12); no preempt\n" in out
    status, out, err = dim("layout", "check", "--json")
    assert json.loads(out)["failover"]["pair"]["servers"] == ["srv1", "srv2"]


def test_layout_check_warns_of_this_machines_neighbour_table_too_small_for_its_nodes(
    tmp_path, capsys, monkeypatch
):
    from tests.unit.services.test_limits import RACKS

    layout = tmp_path / "racks.xml"
    layout.write_text(RACKS.replace("@dhcp", "dnsmasq"))
    monkeypatch.setattr("dim.actions.layout._local_addresses", lambda: {"10.80.0.2"})
    monkeypatch.setattr(
        "dim.actions.layout._thresholds",
        lambda: {f"net.ipv4.neigh.default.gc_thresh{n}": 1024 for n in (1, 2, 3)},
    )
    argv = ["--config", str(layout), "--state", str(tmp_path / "state"), "layout", "check"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "  warning: net.ipv4.neigh.default.gc_thresh3 is 1024 on this machine (server srv), "
        "16384 needed for its 4000 node addresses: dim apply sets it in "
        "/etc/sysctl.d/60-dim-server.conf\n"
    ) in out
    assert out.count("  warning: net.ipv4.neigh.default.gc_thresh") == 3
    assert main([*argv, "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert len([w for w in warnings if "gc_thresh" in w]) == 3


def test_layout_check_on_a_dnsmasq_server_warns_of_its_size_and_of_dim_dns_missing(
    tmp_path, capsys, monkeypatch
):
    from tests.unit.services.test_limits import RACKS

    layout = tmp_path / "racks.xml"
    layout.write_text(RACKS.replace("@dhcp", "dnsmasq"))
    monkeypatch.setattr("dim.actions.layout._local_addresses", lambda: {"10.80.0.2"})
    monkeypatch.setattr("dim.services.units.installed", lambda unit: False)
    argv = ["--config", str(layout), "--state", str(tmp_path / "state"), "layout", "check"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "  warning: server srv serves 2000 nodes with dnsmasq's DHCP, too slow past " in out
    assert "  warning: dim-dns.service is not installed on this machine (server srv, " in out
    monkeypatch.setattr("dim.services.units.installed", lambda unit: True)
    assert main(argv) == 0
    assert "dim-dns.service" not in capsys.readouterr().out


def test_apply_installs_the_neighbour_tables_sysctl_file_for_2000_nodes(tmp_path, capsys):
    require_binary("dnsmasq", "dnsmasq")
    from tests.unit.services.test_limits import RACKS

    layout = tmp_path / "racks.xml"
    layout.write_text(RACKS.replace("@dhcp", "dnsmasq"))
    root = tmp_path / "root"
    argv = ["--config", str(layout), "--state", str(tmp_path / "state"), "apply", "--root"]
    assert main([*argv, str(root), "--no-reload", "--json"]) == 0
    changes = {c["path"]: c for c in json.loads(capsys.readouterr().out)["changes"]}
    assert changes["/etc/sysctl.d/60-dim-server.conf"]["service"] == "sysctl"
    installed = (root / "etc/sysctl.d/60-dim-server.conf").read_text()
    assert "net.ipv4.neigh.default.gc_thresh3 = 16384\n" in installed
