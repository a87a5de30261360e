"""``dim image rm`` and ``gc``, bad input, and the image lock, on small synthetic trees."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from dim.errors import ImageBusy
from dim.images import operations
from dim.images.commit import changing
from tests.image_trees import T1, inode, snapshot, touch_tree, version_tree, write


def _three_versions(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    for n in (2, 3):
        write(src, "etc/motd", f"version {n}\n", mtime=T1 + n)
        touch_tree(src)
        dim.ok("image", "sync", "alpha", "--from", str(src))


# -- rm ----------------------------------------------------------------------------------------


def test_rm_is_refused_while_nodes_use_the_image_and_names_them(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    dim.ok("node", "switch", "n[1-3]", "alpha")
    run = dim("image", "rm", "alpha", "--yes")
    assert run.status == 2
    assert run.err.splitlines()[0] == "dim: error: image alpha is used by n[1-3]"
    assert "hint: switch them to another image first" in run.err
    assert dim.store.versions("alpha") == [1] and dim.store.replicas("alpha") == ["n1", "n2", "n3"]


def test_rm_works_once_the_nodes_switched_away_and_takes_their_replicas(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    dim.ok("image", "import", "beta", "--from", str(src))
    dim.ok("node", "switch", "n[1-2]", "alpha")
    dim.ok("node", "switch", "n[1-2]", "beta")
    out = dim.ok("image", "rm", "alpha", "--yes")
    assert out == "alpha: removed, with the replicas of n[1-2]\n"
    assert not dim.store.paths.image("alpha").exists()
    assert not (dim.state / "nodes/n1/alpha").exists()
    assert not (dim.state / "nodes/n1/alpha.version").exists()
    assert (dim.state / "nodes/n1/beta/etc/motd").exists()
    assert dim.store.versions("beta") == [1]


def test_rm_of_an_image_not_in_the_store_is_refused(dim):
    run = dim("image", "rm", "alpha", "--yes")
    assert (run.status, run.err) == (2, "dim: error: image alpha is not in the store\n")


# -- gc ----------------------------------------------------------------------------------------


def test_gc_removes_old_versions_and_never_the_latest(dim, src):
    _three_versions(dim, src)
    v1 = dim.store.paths.version("alpha", 1)  # whole: the first version
    shared = inode(v1 / "usr/lib/libbig.so")
    out = dim.ok("image", "gc", "alpha", "--dry-run")
    assert out.startswith("alpha: would remove versions [1-2] (")
    assert dim.store.versions("alpha") == [1, 2, 3]
    out = dim.ok("image", "gc", "alpha")
    assert out == "alpha: removed versions [1-2] (18 B) and 0 reset replicas; kept 3\n"
    assert dim.store.versions("alpha") == [3]
    assert not (dim.store.paths.image("alpha") / "meta/1.json").exists()
    live = dim.store.paths.live("alpha")
    assert inode(live / "usr/lib/libbig.so") == shared  # shared files live on
    assert (live / "etc/motd").read_text() == "version 3\n"
    out = dim.ok("image", "gc", "alpha")
    assert out == "alpha: removed versions - (0 B) and 0 reset replicas; kept 3\n"


def test_gc_folds_a_removed_version_into_the_next_kept_one_whose_tree_stays_the_same(dim, src):
    _three_versions(dim, src)
    trees = {n: snapshot(version_tree(dim.store, "alpha", n)) for n in (2, 3)}
    assert dim.store.paths.changes_file("alpha", 3).exists()  # versions 2 and 3: changes only
    operations.gc(dim.store, _alpha(dim), in_use={3})
    assert dim.store.versions("alpha") == [3]
    assert not dim.store.paths.changes_file("alpha", 3).exists()  # whole: version 1 was
    assert snapshot(dim.store.paths.version("alpha", 3)) == trees[3]
    assert dim.ok("image", "check", "alpha") == "alpha: consistent\n"


def test_gc_of_a_middle_version_keeps_the_change_lists_of_the_next(dim, src):
    _three_versions(dim, src)
    tree = snapshot(version_tree(dim.store, "alpha", 3))
    result = operations.gc(dim.store, _alpha(dim), in_use={1})
    assert (result.removed_versions, result.kept_versions) == ([2], [1, 3])
    assert dim.store.paths.changes_file("alpha", 3).exists()
    assert snapshot(version_tree(dim.store, "alpha", 3)) == tree
    assert json.loads(dim.ok("image", "diff", "alpha", "1", "3", "--json"))["changed"] == [
        "/etc/motd"
    ]


def test_a_store_of_whole_versions_made_by_an_older_dim_keeps_working(dim, src):
    """Before issue 14 every version was a whole hard-link farm, with no change lists."""
    _three_versions(dim, src)
    wholes = {n: version_tree(dim.store, "alpha", n) for n in (2, 3)}
    trees = {n: snapshot(wholes[n]) for n in (2, 3)}
    for n, whole in wholes.items():
        shutil.rmtree(dim.store.paths.version("alpha", n))
        whole.rename(dim.store.paths.version("alpha", n))
        dim.store.paths.changes_file("alpha", n).unlink()
    assert dim.ok("image", "check", "alpha") == "alpha: consistent\n"
    assert dim.ok("image", "diff", "alpha", "2", "3").splitlines() == ["~ /etc/motd"]
    dim.ok("image", "rollback", "alpha", "2")
    assert snapshot(dim.store.paths.live("alpha")) == trees[2]
    assert dim.store.paths.changes_file("alpha", 4).exists()  # new versions: changes only
    operations.gc(dim.store, _alpha(dim))
    assert dim.store.versions("alpha") == [4]
    assert snapshot(dim.store.paths.version("alpha", 4)) == trees[2]


def test_gc_keeps_a_version_a_running_node_booted_from(dim, src):
    _three_versions(dim, src)
    result = operations.gc(dim.store, _alpha(dim), in_use={2})
    assert (result.removed_versions, result.kept_versions) == ([1], [2, 3])
    assert dim.store.versions("alpha") == [2, 3]


def test_gc_command_keeps_the_version_a_node_last_booted(dim, src):
    from dim.state import Boot, StateDB

    _three_versions(dim, src)
    StateDB.open(dim.state).record_boots([Boot("n1", "alpha", "1", "10.0.0.1", 1.0)])
    out = dim.ok("image", "gc", "alpha")
    assert out.startswith("alpha: removed versions 2 (")
    assert dim.store.versions("alpha") == [1, 3]


def test_gc_keeps_the_versions_of_live_and_of_every_replica(dim, src, monkeypatch):
    """Recovery brings live and replicas to the latest before gc looks, so this state (left by
    a crash) is only reachable with recovery turned off: gc's own rule must still hold."""
    _three_versions(dim, src)
    dim.ok("node", "switch", "n1", "alpha")
    write(src, "etc/motd", "version 4\n", mtime=T1 + 4)
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    (dim.state / "images/alpha/live.version").write_text("2\n")
    (dim.state / "nodes/n1/alpha.version").write_text("1\n")
    monkeypatch.setattr(operations, "recover", lambda store, image: [])
    result = operations.gc(dim.store, _alpha(dim))
    assert (result.removed_versions, result.kept_versions) == ([3], [1, 2, 4])


def _alpha(dim):
    from dim.layout.parser import load

    return load(dim.config).images["alpha"]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("image", "import", "../alpha", "--from", "SRC"),
        ("image", "import", "alpha/x", "--from", "SRC"),
        ("image", "sync", "..", "--from", "SRC"),
        ("image", "exec", "a/b", "--", "true"),
        ("image", "rollback", "../alpha", "1"),
        ("image", "rm", "../nodes", "--yes"),
        ("image", "rm", "alpha/../../nodes", "--yes"),
        ("image", "show", "../nodes"),
        ("image", "versions", "../images/alpha"),
        ("image", "diff", "../images/alpha", "1", "1"),
        ("image", "gc", "../alpha"),
        ("image", "check", "../alpha"),
        ("node", "switch", "../n1", "alpha"),
        ("node", "switch", "n1", "../alpha"),
        ("node", "reset", "n1/..", "--yes"),
        ("node", "diff", "../n1"),
    ],
)
def test_names_with_a_slash_or_dotdot_are_refused_and_nothing_changes(dim, src, args):
    dim.ok("image", "import", "alpha", "--from", str(src))
    dim.ok("node", "switch", "n1", "alpha")
    before = _contents(dim.state)
    run = dim(*[str(src) if a == "SRC" else a for a in args])
    assert run.status == 2, run
    assert run.err.startswith("dim: error: ") and run.out == ""
    assert _contents(dim.state) == before
    assert (dim.state / "nodes/n1/alpha/etc/motd").exists()


def _contents(state):
    """Every path of the state folder but the lock files and SQLite's own journal files."""
    return sorted(
        str(p) for p in state.rglob("*") if "locks" not in p.parts and "state.db" not in p.name
    )


def test_a_source_that_does_not_exist_is_refused(dim, tmp_path):
    run = dim("image", "import", "alpha", "--from", str(tmp_path / "nowhere"))
    assert run.status == 2
    assert run.err == (
        f"dim: error: source '{tmp_path / 'nowhere'}' does not exist\n"
        "hint: give a directory, a tarball or ssh://HOST[/PATH]\n"
    )
    assert not dim.store.paths.image("alpha").exists() or dim.store.versions("alpha") == []


def test_a_tarball_that_is_not_one_fails_cleanly(dim, tmp_path, src):
    bogus = tmp_path / "image.tar.gz"
    bogus.write_bytes(b"this is not a tarball\n" * 10)
    run = dim("image", "import", "alpha", "--from", str(bogus))
    assert run.status == 1
    assert run.err.startswith(f"dim: error: cannot unpack {bogus}: ")
    assert dim.store.versions("alpha") == []
    assert [p.name for p in dim.store.paths.image("alpha").iterdir()] == []
    dim.ok("image", "import", "alpha", "--from", str(src))  # the store is usable


def test_import_and_sync_are_not_interchangeable(dim, src):
    run = dim("image", "sync", "alpha", "--from", str(src))
    assert run.status == 2 and "image alpha has no version yet" in run.err
    dim.ok("image", "import", "alpha", "--from", str(src))
    run = dim("image", "import", "alpha", "--from", str(src))
    assert run.status == 2 and "image alpha exists already" in run.err
    run = dim("image", "import", "gamma", "--from", str(src))
    assert run.status == 2 and "unknown image 'gamma'" in run.err


# -- the lock ----------------------------------------------------------------------------------

_HOLD = """
import sys, time
from pathlib import Path
from dim.images.store import Store
with Store(Path(sys.argv[1])).locked("alpha"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    released = time.time()
print(released, flush=True)
"""


def _holder(dim, seconds):
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(dim.state), str(seconds)], stdout=subprocess.PIPE
    )
    assert process.stdout.readline() == b"locked\n"
    return process


def test_a_second_change_waits_for_the_first(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    holder = _holder(dim, 1.5)
    try:
        write(src, "etc/motd", "after the wait\n", mtime=T1)
        touch_tree(src)
        started = time.monotonic()
        dim.ok("image", "sync", "alpha", "--from", str(src))
        waited = time.monotonic() - started
        released = float(holder.stdout.readline())
    finally:
        holder.kill()
        holder.wait()
    assert waited >= 1.0
    assert dim.store.versions("alpha") == [1, 2]
    # the version was recorded after the first command let go of the lock
    assert dim.store.version("alpha", 2).meta["created"] >= released


def test_with_a_wait_timeout_a_busy_image_fails_clearly(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    holder = _holder(dim, 30)
    try:
        started = time.monotonic()
        with (
            pytest.raises(ImageBusy) as caught,
            changing(dim.store, _alpha(dim), wait=0.3) as _change,
        ):
            pass
        assert time.monotonic() - started >= 0.3  # it waited as long as it was told
        assert holder.poll() is None  # and gave up while the lock was still held
    finally:
        holder.kill()
        holder.wait()
    assert str(caught.value) == (
        f"image alpha is being changed by another dim command (pid {holder.pid})"
    )
    assert caught.value.hint == "wait for it to finish, then run this command again"
    assert dim.store.versions("alpha") == [1]
