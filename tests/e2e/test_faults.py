"""Bad input and faults around a network boot (issue 4, item 5), in the running lab.

- a MAC that dim does not know: dnsmasq offers it nothing (its ranges are static), and
  ``dim serve`` answers the script iPXE would chain to with a 404 iPXE script that says what
  to do, and logs one line naming the MAC (iPXE prints on VGA, not on the serial console, so
  the proof is the HTTP answer and the log);
- the NFS server restarted under a running node: the node's commands wait and carry on once
  ganesha answers again; a file written before and one written after are both on the server;
- an image without a kernel, or without a module the boot needs: ``dim boot build`` fails
  with one clear error, on the real tree of the lab, and the previous build stays as it was.

Unit tests cover the same errors on fake trees: tests/unit/boot/test_build.py
(``test_an_image_without_kernel_is_one_error_line_and_exit_2``,
``test_an_image_without_its_nfs_module_is_refused_naming_it``) and
tests/unit/boot/test_serve.py (``test_unknown_mac_is_a_404_ipxe_message_and_a_log_line_naming_it``).

    CI=true .venv/bin/pytest tests/e2e/test_faults.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from dim.lab import cluster
from dim.lab.daemons import dim_argv
from dim.lab.processes import alive, sleep_until
from dim.lab.state import LabState
from tests.e2e.conftest import Fleet, Lab

pytestmark = pytest.mark.e2e

UNKNOWN = "52:54:00:77:00:63"  # node99's MAC in the lab: never recorded


def test_an_unknown_mac_gets_no_address_and_dim_serve_answers_404_with_a_log_line(
    lab: Lab, fleet: Fleet
) -> None:
    # a real node with that MAC: dnsmasq hears it and offers nothing
    cluster.boot(lab.folder, ["node99"], say=lab.say)
    try:
        pattern = rf"DHCPDISCOVER\(br0\) {UNKNOWN} no address available"
        assert sleep_until(lambda: re.search(pattern, lab.log("dnsmasq")), 60), lab.log("dnsmasq")[
            -2000:
        ]
    finally:
        lab.power_off(["node99"])
    assert f"GET /dim/nodes/{UNKNOWN.replace(':', '-')}" not in lab.log("serve")

    # the script iPXE would chain to for it: 404, an iPXE script saying what to do
    status, body = lab.http("/boot.ipxe")
    assert status == 200 and "chain http://10.77.0.1:8080/dim/nodes/${mac:hexhyp}.ipxe" in body
    status, body = lab.http(f"/dim/nodes/{UNKNOWN.replace(':', '-')}.ipxe")
    assert status == 404
    assert body.startswith("#!ipxe\n")
    assert f"echo dim: unknown MAC {UNKNOWN} (record it: dim node set NODE --mac {UNKNOWN})" in body
    assert "sleep 30" in body and "reboot" in body
    log = lab.log("serve")
    assert re.search(rf"refused: unknown MAC {UNKNOWN} \(record it", log), log[-2000:]
    assert len([line for line in log.splitlines() if UNKNOWN in line]) == 1, log[-2000:]
    assert re.search(rf"GET /dim/nodes/{UNKNOWN.replace(':', '-')}\.ipxe 404", log)
    # nothing recorded as a boot for it; the known nodes' boots are still there
    nodes = json.loads(lab.dim("node", "list", "--json").stdout)
    booted = {n["name"]: n["last_boot"] for n in nodes if n["name"] in fleet.seconds}
    assert sorted(booted) == sorted(fleet.seconds)
    assert all(booted.values()), booted


def test_a_node_carries_on_when_the_nfs_server_restarts_under_it(lab: Lab, fleet: Fleet) -> None:
    node = "node01"
    lab.ok(node, "echo before > /etc/dim-e2e-before && sync")
    old = next(d.pid for d in LabState.load(lab.folder).daemons if d.name == "ganesha")
    outage = threading.Thread(
        target=cluster.restart, args=(lab.folder, "ganesha"), kwargs={"down_for": 5.0}
    )
    outage.start()
    try:
        assert sleep_until(lambda: not alive(old), 15)
        # typed while ganesha is down: a write and reads of the root must wait, then work
        started = time.monotonic()
        status, output = lab.run(
            node,
            "cat /etc/dim-e2e-before && echo after > /etc/dim-e2e-after && sync"
            " && md5sum /bin/busybox > /dev/null && ls /usr/bin | wc -l",
            timeout=180,
        )
        waited = time.monotonic() - started
    finally:
        outage.join()
    assert status == 0, output
    assert output.splitlines()[0] == "before" and int(output.splitlines()[1]) > 50
    assert waited >= 2.0, f"the command did not wait for the server ({waited:.1f} s)"
    new = next(d.pid for d in LabState.load(lab.folder).daemons if d.name == "ganesha")
    assert new != old and alive(new)
    replica = lab.replica(node, "tiny")
    assert (replica / "etc/dim-e2e-before").read_text() == "before\n"
    assert (replica / "etc/dim-e2e-after").read_text() == "after\n"
    assert lab.ok(node, "cat /etc/dim-e2e-after") == "after\n"


LAYOUT = """<?xml version="1.0"?>
<cluster name="broken" domain="broken.dim">
  <network name="boot" subnet="10.79.0.0/24" gateway="10.79.0.1"/>
  <server name="srv" address="10.79.0.1" dhcp="none" nfs="ganesha"/>
  <image name="tiny"><persist path="/etc"/></image>
</cluster>
"""


def dim(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["--config", str(folder / "cluster.xml"), "--state", str(folder / "state"), *args]
    return subprocess.run(
        [*dim_argv(folder)[:3], *argv], capture_output=True, text=True, check=False
    )


def test_a_kernel_or_a_module_missing_from_a_real_image_is_one_clear_error_and_nothing_lost(
    lab: Lab, tmp_path: Path
) -> None:
    (tmp_path / "cluster.xml").write_text(LAYOUT)
    tree = tmp_path / "tree"
    shutil.copytree(lab.folder / "trees" / "tiny", tree, symlinks=True)
    assert dim(tmp_path, "image", "import", "tiny", "--from", str(tree)).returncode == 0
    assert dim(tmp_path, "boot", "build", "tiny").returncode == 0
    good = tmp_path / "state/boot/tiny/1"
    before = {p.name: p.read_bytes() for p in good.iterdir()}

    # version 2: the kernel removed
    run = dim(tmp_path, "image", "exec", "tiny", "--", "sh", "-c", "rm /boot/vmlinuz-*")
    assert run.returncode == 0, run.stderr
    run = dim(tmp_path, "boot", "build", "tiny")
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert lines[0] == "dim: error: image tiny (version 2) has no kernel: no /boot/vmlinuz-* in it"
    assert all(line.startswith("hint: ") for line in lines[1:]), run.stderr  # one error
    assert not (tmp_path / "state/boot/tiny/2").exists()

    # versions 3 and 4: the kernel back (a rollback), then the NFSv4 module gone, depmod run
    assert dim(tmp_path, "image", "rollback", "tiny", "1").returncode == 0
    drop = "rm $(find /lib/modules -name 'nfsv4.ko*') && depmod -b / $(ls /lib/modules)"
    run = dim(tmp_path, "image", "exec", "tiny", "--", "sh", "-c", drop)
    assert run.returncode == 0, run.stderr
    run = dim(tmp_path, "boot", "build", "tiny")
    assert run.returncode == 2
    first, *rest = run.stderr.splitlines()
    assert first.startswith("dim: error: image tiny lacks the kernel module nfsv4"), run.stderr
    assert all(line.startswith("hint: ") for line in rest), run.stderr  # one error

    # the good build of version 1 is untouched
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
