"""Persistent, volatile and shared paths on a booted node; nodes kept apart (items b and c).

The tiny image persists /etc and /root (bound from the node's own read-write export, its
replica ``<state>/nodes/<node>/tiny``), has /tmp on tmpfs, and everything else is the image's
live tree, read-only over NFS and shared by every node. Each NFS export of a replica admits its
node's address alone.

    CI=true .venv/bin/pytest tests/e2e/test_persistence.py
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Fleet, Lab

pytestmark = pytest.mark.e2e


def test_persistent_files_survive_a_reboot_volatile_ones_do_not_and_the_root_is_read_only(
    lab: Lab, fleet: Fleet
) -> None:
    lab.ok("node01", "echo kept > /etc/dim-e2e-kept && echo gone > /tmp/dim-e2e-gone && sync")
    # the shared root refuses a write, whoever asks
    status, said = lab.run("node01", "echo no > /dim-e2e-root")
    assert status != 0 and "Read-only file system" in said
    status, said = lab.run("node01", "touch /usr/dim-e2e-root")
    assert status != 0 and "Read-only file system" in said
    replica = lab.replica("node01", "tiny")
    assert (replica / "etc/dim-e2e-kept").read_text() == "kept\n"
    assert not (lab.live("tiny") / "dim-e2e-root").exists()
    assert not (lab.live("tiny") / "etc/dim-e2e-kept").exists()  # the image is untouched

    lab.boot(["node01"])  # a reset: QEMU stopped, started again, PXE again
    lab.marker("node01")
    assert lab.ok("node01", "cat /etc/dim-e2e-kept") == "kept\n"
    status, said = lab.run("node01", "cat /tmp/dim-e2e-gone")
    assert status != 0 and "No such file" in said
    assert (replica / "etc/dim-e2e-kept").read_text() == "kept\n"
    assert not list(replica.rglob("dim-e2e-gone"))  # never reached the server


def test_nodes_of_one_image_do_not_see_each_other_and_cannot_mount_each_others_replica(
    lab: Lab, fleet: Fleet
) -> None:
    # both booted the same image at once
    assert {lab.marker(n).group(2) for n in ("node01", "node02")} == {"tiny"}
    lab.ok("node01", "echo one > /etc/dim-e2e-mine && sync")
    lab.ok("node02", "echo two > /etc/dim-e2e-mine && echo x > /root/dim-e2e-only2 && sync")
    assert lab.ok("node01", "cat /etc/dim-e2e-mine") == "one\n"
    assert lab.ok("node02", "cat /etc/dim-e2e-mine") == "two\n"
    status, _ = lab.run("node01", "ls /root/dim-e2e-only2")
    assert status != 0
    assert (lab.replica("node01", "tiny") / "etc/dim-e2e-mine").read_text() == "one\n"
    assert (lab.replica("node02", "tiny") / "etc/dim-e2e-mine").read_text() == "two\n"
    assert not (lab.replica("node01", "tiny") / "root/dim-e2e-only2").exists()

    # node01 mounting node02's export by hand is refused; its own export mounts
    mount = "mkdir -p /tmp/mnt && mount -t nfs4 -o vers=4.2,addr=10.77.0.1,clientaddr=10.77.0.11"
    other, own = lab.replica("node02", "tiny"), lab.replica("node01", "tiny")
    status, said = lab.run("node01", f"{mount} 10.77.0.1:{other} /tmp/mnt", timeout=60)
    assert status != 0, said
    # not even in node01's view of the NFSv4 pseudo file system (or refused outright)
    assert re.search(r"mount: mounting .* failed: (No such file|Permission denied)", said), said
    assert lab.run("node01", "ls /tmp/mnt/etc/dim-e2e-mine")[0] != 0
    lab.ok("node01", f"{mount} 10.77.0.1:{own} /tmp/mnt", timeout=60)
    try:
        assert lab.ok("node01", "cat /tmp/mnt/etc/dim-e2e-mine") == "one\n"
    finally:
        lab.run("node01", "umount /tmp/mnt")
