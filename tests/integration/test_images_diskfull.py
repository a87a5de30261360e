"""A state folder that fills up in the middle of an operation, as root: a small tmpfs.

The test mounts a tmpfs of a few megabytes as the state folder (unmounted in a finalizer),
then asks for more than fits: while rsync fills the staging folder, and while dim copies a
new file into the node replicas. Each time dim must stop with one error line and a non-zero
status, leave the store consistent (no half version, live and replicas as they were or
completed by ``dim image check``), and succeed once there is room again.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import require_root
from tests.image_trees import T1, Dim, base_tree, snapshot, temporaries, touch_tree, write

pytestmark = pytest.mark.integration


@pytest.fixture
def small_state(tmp_path, capsys, request) -> Dim:
    """dim with its state folder on a 2 MB tmpfs."""
    require_root()
    dim = Dim(tmp_path, capsys)
    dim.state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(dim.state)], check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(dim.state)], check=True))
    return dim


def _grow(dim, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(dim.state)], check=True)


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if not ln.startswith("hint: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("dim: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_an_import_bigger_than_the_disk_fails_cleanly_and_runs_again_with_room(
    small_state, tmp_path
):
    dim = small_state
    src = base_tree(tmp_path / "src")
    for n in range(6):
        write(src, f"usr/lib/big{n}.so", os.urandom(512 * 1024))
    touch_tree(src)
    run = dim("image", "import", "alpha", "--from", str(src))
    assert run.status == 1
    line = _one_error_line(run.err)
    assert line.startswith(f"dim: error: cannot read directory:{src}: ")
    assert "No space left on device" in line
    assert dim.store.versions("alpha") == []
    assert not list(dim.store.paths.image("alpha").glob(".staging-*"))
    assert dim.ok("image", "versions", "alpha").splitlines()[1:] == []
    _grow(dim, "20m")
    dim.ok("image", "import", "alpha", "--from", str(src))
    assert snapshot(dim.store.paths.live("alpha")) == snapshot(src)


def test_a_sync_that_fills_the_disk_leaves_version_and_live_as_they_were(small_state, tmp_path):
    dim = small_state
    src = base_tree(tmp_path / "src")
    dim.ok("image", "import", "alpha", "--from", str(src))
    before = snapshot(dim.store.paths.live("alpha"))
    write(src, "usr/lib/huge.so", os.urandom(3 * 1024 * 1024), mtime=T1)
    touch_tree(src)
    run = dim("image", "sync", "alpha", "--from", str(src))
    assert run.status == 1
    assert "No space left on device" in _one_error_line(run.err)
    assert dim.store.versions("alpha") == [1]
    assert snapshot(dim.store.paths.live("alpha")) == before
    _grow(dim, "20m")
    dim.ok("image", "sync", "alpha", "--from", str(src))
    assert snapshot(dim.store.paths.live("alpha")) == snapshot(src)


def test_a_replica_copy_that_fills_the_disk_fails_cleanly_and_check_completes_it(
    small_state, tmp_path
):
    """The version fits, live costs nothing (hard links), the second replica's copy does not
    fit: dim must say so in one line, and ``dim image check`` finish once there is room."""
    dim = small_state
    _grow(dim, "3m")
    src = base_tree(tmp_path / "src")
    dim.ok("image", "import", "alpha", "--from", str(src))
    dim.ok("node", "switch", "n[1-2]", "alpha")
    write(src, "etc/large.conf", os.urandom(1200 * 1024), mtime=T1)
    touch_tree(src)
    run = dim("image", "sync", "alpha", "--from", str(src))
    assert run.status == 1
    line = _one_error_line(run.err)
    assert line == "dim: error: cannot change image alpha: No space left on device"
    assert run.err.splitlines()[1].startswith("hint: fix the cause (df -h ")
    assert dim.store.versions("alpha") == [1, 2]  # the version was complete
    assert dim.store.live_version("alpha") == 2
    _grow(dim, "20m")
    out = dim.ok("image", "check", "alpha")
    assert "repaired: brought the replica of n2 to version 2" in out
    for node in ("n1", "n2"):
        replica = dim.store.paths.replica(node, "alpha")
        assert dim.store.replica_version(node, "alpha") == 2
        assert temporaries(replica) == [], node
        large = (replica / "etc/large.conf").read_bytes()
        assert large == (src / "etc/large.conf").read_bytes(), node
    assert dim.ok("image", "check", "alpha") == "alpha: consistent\n"
