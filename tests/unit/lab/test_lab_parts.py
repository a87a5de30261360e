"""The lab's pure parts: lab.json records, the daemon table, console stages, `dim lab run`'s
command line. What they drive (namespaces, daemons, QEMU) is proven in tests/e2e."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dim.cli import main
from dim.lab import cluster
from dim.lab.console import progress, without_kernel_messages
from dim.lab.daemons import daemon_specs
from dim.lab.processes import Process
from dim.lab.state import LabState
from dim.lab.workload import ERRORS
from tests.conftest import require_root


def test_lab_state_round_trips_through_lab_json_and_changes_make_new_records(
    tmp_path: Path,
) -> None:
    state = LabState(str(tmp_path), "dimtest", "kea")
    first = state.with_daemon(Process("ganesha", 11, "g.log"))
    second = first.with_daemon(Process("serve", 12, "s.log")).with_node(
        "node01", Process("node01", 13, "q.log", "tap0")
    )
    second.with_daemon(Process("ganesha", 14, "g.log")).save()
    loaded = LabState.load(tmp_path)
    assert loaded is not None
    assert [(d.name, d.pid) for d in loaded.daemons] == [("ganesha", 14), ("serve", 12)]
    assert loaded.nodes["node01"].tap == "tap0"
    assert state.daemons == () and first.nodes == {}
    assert loaded.without_node("node01").nodes == {}
    assert LabState.load(tmp_path / "none") is None


def test_the_daemon_table_names_the_flavours_dhcp_server_first_and_its_ports() -> None:
    for flavour, program in (("dnsmasq", "dnsmasq"), ("kea", "kea-dhcp4"), ("isc", "dhcpd")):
        specs = daemon_specs(Path("/lab"), flavour)
        # beside dnsmasq's DHCP (port=0) a DNS-only dnsmasq; beside Kea/dhcpd a TFTP-only one
        beside = "dns" if flavour == "dnsmasq" else "tftp"
        assert [s.name for s in specs][1:] == [beside, "ra", "ganesha", "serve"]
        assert program in specs[0].command and (specs[0].port, specs[0].udp) == (67, True)
        by_name = {s.name: s for s in specs}
        assert by_name["ganesha"].binds["/etc/ganesha"] == Path("/lab/root/etc/ganesha")
        conf, port = {
            "dns": ("/etc/dim/dnsmasq-dns.conf", 53),
            "tftp": ("/etc/dnsmasq.d/dim-tftp.conf", 69),
        }[beside]
        assert f"--conf-file={conf}" in by_name[beside].command
        assert (by_name[beside].port, by_name[beside].udp) == (port, True)


def test_console_progress_names_each_stage_and_step_once() -> None:
    seen: set[str] = set()
    text = "Linux version 6.1\ndim: step 1/9 modules\n"
    labels = ["kernel started", "initramfs running", "  dim: step 1/9 modules"]
    assert progress(text, seen) == labels
    assert progress(text + "dim: step 2/9 net\n", seen) == ["  dim: step 2/9 net"]


def test_lab_run_joins_the_command_prints_its_output_and_exits_with_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_root()  # dim lab refuses to run without root
    calls = []

    def run(folder: Path, name: str, command: str, *, timeout: float) -> tuple[int, str]:
        calls.append((folder, name, command, timeout))
        return 3, "hi\n"

    monkeypatch.setattr(cluster, "run", run)
    argv = ["lab", "run", "--dir", str(tmp_path), "node01", "--", "sh", "-c", "echo hi; exit 3"]
    assert main(argv) == 3  # the command's status, as dim's
    assert capsys.readouterr().out == "hi\n"
    assert calls == [(tmp_path, "node01", "sh -c 'echo hi; exit 3'", 30.0)]


def test_lab_run_without_a_lab_says_so_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_root()  # dim lab refuses to run without root
    assert main(["lab", "run", "--dir", str(tmp_path), "node01", "--", "true"]) == 1
    err = capsys.readouterr().err
    assert f"no lab is up in {tmp_path}" in err and "hint: dim lab up" in err


@pytest.mark.parametrize("flavour", ["dnsmasq", "kea", "isc"])
def test_the_lab_layout_parses_and_declares_an_image_per_debian_release(
    flavour: str, tmp_path: Path
) -> None:
    from dim.lab.images import RELEASES
    from dim.layout import parser

    layout = parser.parse(cluster.layout_text(flavour, 7), "lab.xml")
    assert {r.image for r in RELEASES.values()} <= set(layout.images)
    assert len(layout.nodes) == 7
    for release in RELEASES.values():
        image = layout.images[release.image]
        assert "vers=" not in image.nfs_options  # dim's default version, the one tested


def test_lab_up_refuses_an_unknown_debian_release_before_doing_anything(tmp_path: Path) -> None:
    code = main(["lab", "up", "--dir", str(tmp_path / "lab"), "--debian", "12,14"])
    assert code == 2
    assert not (tmp_path / "lab").exists()


def test_lab_boot_warns_when_firmware_and_secure_boot_declaration_disagree(tmp_path: Path) -> None:
    layout = cluster.layout_text("dnsmasq", 3).replace(
        "</group>", '  <node name="node02" secure-boot="yes"/>\n  </group>', 1
    )
    (tmp_path / "cluster.xml").write_text(layout)
    mismatches = cluster._secure_boot_mismatches
    (refused,) = mismatches(tmp_path, ["node01", "node02"], "uefi-secureboot")
    assert refused.startswith('node01 is not declared secure-boot="yes"')
    (wrong,) = mismatches(tmp_path, ["node01", "node02"], "bios-ipxe-rom")
    assert wrong.startswith('node02 is declared secure-boot="yes": it is sent shim')
    assert mismatches(tmp_path, ["node01", "node02"], "uefi-pxe") == []


def test_lab_env_points_dim_at_the_labs_layout_and_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", "env", "--dir", str(tmp_path / "my lab")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"export DIM_CONFIG='{tmp_path}/my lab/cluster.xml'",
        f"export DIM_STATE='{tmp_path}/my lab/state'",
        "unset DIM_DATABASE",
        f"export DIM_ROOT='{tmp_path}/my lab/root'",
        f"export DIM_NFS_PID_FILES='{tmp_path}/my lab/run/ganesha.pid'",
    ]


def test_lab_env_names_the_ganesha_of_each_server_of_a_lab_with_several(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for server in ("srv1", "srv2"):
        (tmp_path / "servers" / server / "run").mkdir(parents=True)
        (tmp_path / "servers" / server / "run" / "ganesha.pid").write_text("1\n")
    assert main(["lab", "env", "--dir", str(tmp_path)]) == 0
    pid_files = [f"{tmp_path}/servers/{s}/run/ganesha.pid" for s in ("srv1", "srv2")]
    assert f"export DIM_NFS_PID_FILES={':'.join(pid_files)}" in capsys.readouterr().out


def test_a_lab_with_a_database_server_points_every_dim_it_runs_at_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://dim:pw@10.77.0.1:5432/dim"
    LabState(str(tmp_path), "dimtest", "kea", database=url).save()
    assert main(["lab", "env", "--dir", str(tmp_path)]) == 0
    assert f"export DIM_DATABASE={url}" in capsys.readouterr().out.splitlines()
    assert cluster.context(tmp_path).database == url
    (serve,) = [s for s in daemon_specs(tmp_path, "kea") if s.name == "serve"]
    assert serve.command[:2] == ("env", f"DIM_DATABASE={url}") and url not in serve.command[2:]
    assert LabState.load(tmp_path).database == url


def test_a_lab_bmc_powers_its_node_as_lab_boot_does_with_its_last_firmware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dim.lab.bmcpower import LabPower

    calls = []
    monkeypatch.setattr(cluster, "boot", lambda folder, names, **kw: calls.append((names, kw)))
    monkeypatch.setattr(cluster, "power_off", lambda folder, names, **kw: calls.append(names))
    power = LabPower(tmp_path, "node03")
    power.start()  # never booted: the lab's default firmware
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "node03.firmware").write_text("uefi-pxe\n")
    power.start()
    power.stop()
    assert [c[1]["firmware"] for c in calls[:2]] == ["bios-ipxe-rom", "uefi-pxe"]
    assert calls[2] == ["node03"]
    assert not power.running()  # no lab.json: nothing runs


def test_kernel_messages_are_dropped_from_a_commands_output_even_inside_one_of_its_lines() -> None:
    # as the console gave it in CI: `uname -r` cut by a message, its newline after the message
    output = (
        "[   93.1] kvm_amd: Nested Paging disabled\n"
        "6.12.117+deb13-amd64[   94.330517] powernow_k8: Power state transitions not supported\n"
        "\nactive\n"
    )
    assert without_kernel_messages(output) == "6.12.117+deb13-amd64\nactive\n"


def test_the_workloads_error_report_keeps_the_kernels_nfs_messages_through_the_console(
    tmp_path: Path,
) -> None:
    # the report's dmesg lines must not look like console messages, or they would be dropped
    # and the failover tests could not see an NFS error
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dmesg"
    fake.write_text(
        "#!/bin/sh\necho '[   12.500000] nfs: server 10.0.0.1 not responding, timed out'\n"
        "echo '[   13.000000] NFS: Registering the id_resolver key type'\n"
    )
    fake.chmod(0o755)
    report = subprocess.run(
        ["sh", "-c", ERRORS],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        cwd=tmp_path,
    ).stdout
    assert without_kernel_messages(report) == (
        "kernel 12.500000: nfs: server 10.0.0.1 not responding, timed out\n"
    )


def test_discarding_a_lab_deletes_the_database_folder_it_links_to_outside(tmp_path: Path) -> None:
    outside, lab = tmp_path / "var-tmp" / "dim-lab-postgres-x", tmp_path / "lab"
    (outside / "base").mkdir(parents=True)
    lab.mkdir()
    (lab / "postgres").symlink_to(outside)
    cluster.discard_outside(lab)
    assert not outside.exists() and not (lab / "postgres").is_symlink()
    kept = tmp_path / "own"
    (kept / "postgres" / "base").mkdir(parents=True)  # the lab's own folder: not a link, kept
    cluster.discard_outside(kept)
    assert (kept / "postgres" / "base").is_dir()
