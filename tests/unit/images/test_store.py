"""The image store on small synthetic trees: layout, versions sharing inodes, live, sources.

No root needed: the trees hold files, directories, symbolic links, hard links, a fifo, a socket
and ``user.*`` extended attributes. Owners, devices and ``trusted.*`` attributes are tested as
root in tests/integration/test_images_metadata.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from dim.images import sources
from tests.image_trees import T0, T1, digest, inode, snapshot, touch_tree, version_tree, write


def test_import_from_a_directory_makes_live_and_version_1_equal_to_the_source(dim, src):
    out = dim.ok("image", "import", "alpha", "--from", str(src))
    assert out.startswith("alpha: version 1: ")
    image = dim.state / "images" / "alpha"
    assert sorted(os.listdir(image)) == ["live", "live.version", "meta", "versions"]
    assert os.listdir(image / "versions") == ["1"]
    assert (image / "live.version").read_text() == "1\n"
    meta = json.loads((image / "meta" / "1.json").read_text())
    assert meta["version"] == 1 and meta["source"] == f"directory:{src}"
    assert snapshot(image / "versions" / "1") == snapshot(src)
    assert digest(image / "live") == digest(src)


def test_live_holds_the_inodes_of_the_latest_version(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    live, v1 = dim.store.paths.live("alpha"), dim.store.paths.version("alpha", 1)  # whole
    for path in ("etc/motd", "usr/lib/libbig.so", "usr/bin/alias", "var/lib/app/fifo"):
        assert inode(live / path) == inode(v1 / path), path
    # the hard-linked pair of the source stays one inode, shared by version and live
    st = os.lstat(v1 / "usr/share/doc/a")
    assert st.st_ino == inode(v1 / "usr/share/doc/b") == inode(live / "usr/share/doc/b")
    assert st.st_nlink == 4  # two names in versions/1, two in live


def test_sync_gives_new_inodes_only_to_what_changed(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    write(src, "etc/app/app.conf", "level=2\n", mtime=T1)  # changed
    write(src, "etc/app/new.conf", "new\n", mtime=T1)  # added
    os.unlink(src / "var/lib/app/state")  # removed
    touch_tree(src)
    out = dim.ok("image", "sync", "alpha", "--from", str(src))
    assert "version 2: 1 added, 1 changed, 1 removed" in out
    v1, v2, live = (
        version_tree(dim.store, "alpha", 1),
        version_tree(dim.store, "alpha", 2),
        dim.store.paths.live("alpha"),
    )
    unchanged = [p for p, e in snapshot(v2).items() if e[0][0] != "d"]
    unchanged = [p for p in unchanged if p not in ("etc/app/app.conf", "etc/app/new.conf")]
    assert len(unchanged) > 10
    for path in unchanged:
        st1, st2 = os.lstat(v1 / path), os.lstat(v2 / path)
        assert st1.st_ino == st2.st_ino == inode(live / path), path
        assert st2.st_nlink >= 3, path  # versions/1, versions/2 and live
    assert inode(v2 / "etc/app/app.conf") != inode(v1 / "etc/app/app.conf")
    # version 2's folder holds what it wrote, nothing else; the old file lives in version 1's
    folder = dim.store.paths.version("alpha", 2)
    assert sorted(p for p, e in snapshot(folder).items() if e[0][0] != "d") == [
        "etc/app/app.conf",
        "etc/app/new.conf",
    ]
    old = dim.store.paths.version("alpha", 1) / "etc/app/app.conf"
    assert os.lstat(old).st_nlink == 2  # versions/1 and the tree materialised above
    assert (v1 / "etc/app/app.conf").read_text() == "level=1\n"
    assert (v1 / "var/lib/app/state").exists() and not (v2 / "var/lib/app/state").exists()
    assert snapshot(v2) == snapshot(src)
    assert digest(live) == digest(v2)
    assert dim.ok("image", "diff", "alpha", "1", "2").splitlines() == [
        "+ /etc/app/new.conf",
        "~ /etc/app/app.conf",
        "- /var/lib/app/state",
    ]


def test_a_change_within_the_same_second_is_still_seen(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    where = write(src, "etc/motd", "WELCOME\n")  # same size
    os.utime(where, ns=(T0 + 1, T0 + 1))  # one nanosecond later
    dim.ok("image", "sync", "alpha", "--from", str(src))
    assert (dim.store.paths.live("alpha") / "etc/motd").read_text() == "WELCOME\n"


def test_sync_without_any_change_records_no_version(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    out = dim.ok("image", "sync", "alpha", "--from", str(src))
    assert out == "alpha: nothing changed, no version recorded\n"
    assert dim.store.versions("alpha") == [1]


def test_metadata_only_changes_are_versions_too(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    os.chmod(src / "usr/bin/tool", 0o700)
    os.setxattr(src / "etc/motd", "user.dim.test", b"other value")
    os.removexattr(src / "etc/motd", "user.dim.test")
    os.setxattr(src / "etc/app/keep.conf", "user.dim.new", b"1")
    os.chmod(src / "var/lib/app/fifo", 0o600)
    os.unlink(src / "usr/bin/alias")
    os.symlink("../lib/libbig.so", src / "usr/bin/alias")
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    assert sorted(dim.ok("image", "diff", "alpha", "1", "2").splitlines()) == [
        "~ /etc/app/keep.conf",
        "~ /etc/motd",
        "~ /usr/bin/alias",
        "~ /usr/bin/tool",
        "~ /var/lib/app/fifo",
    ]
    assert digest(dim.store.paths.live("alpha")) == digest(src)


def test_a_process_holding_a_replaced_file_keeps_reading_the_old_content(dim, src):
    write(src, "usr/lib/libc.so", b"old library " * 1000)
    touch_tree(src)
    dim.ok("image", "import", "alpha", "--from", str(src))
    live = dim.store.paths.live("alpha")
    with open(live / "usr/lib/libc.so", "rb") as running:
        first = running.read(12)
        write(src, "usr/lib/libc.so", b"NEW LIBRARY! " * 1000, mtime=T1)
        touch_tree(src)
        dim.ok("image", "sync", "alpha", "--from", str(src))
        assert (live / "usr/lib/libc.so").read_bytes().startswith(b"NEW LIBRARY!")
        rest = running.read()
        assert os.fstat(running.fileno()).st_nlink == 1  # kept alive by versions/1 alone
    assert first + rest == b"old library " * 1000
    assert inode(live / "usr/lib/libc.so") == inode(
        version_tree(dim.store, "alpha", 2) / "usr/lib/libc.so"
    )


@pytest.mark.parametrize("suffix, mode", [(".tar", "w"), (".tar.gz", "w:gz")])
def test_import_from_a_tarball(dim, src, tmp_path, suffix, mode):
    tarball = tmp_path / f"image{suffix}"
    run = subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-acf", str(tarball), "-C", str(src), "."],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    with tarfile.open(tarball, mode.replace("w", "r")) as made:  # the kind we meant to make
        assert "./etc/motd" in made.getnames()
    out = dim.ok("image", "import", "alpha", "--from", str(tarball))
    assert "version 1" in out
    expected = snapshot(src)
    del expected["var/lib/app/socket"]  # tar leaves sockets out ("socket ignored")
    assert snapshot(version_tree(dim.store, "alpha", 1)) == expected
    assert digest(dim.store.paths.live("alpha")) == digest(version_tree(dim.store, "alpha", 1))
    assert not list(dim.store.paths.image("alpha").glob(".staging-*"))


def test_rollback_makes_live_exactly_version_k_again(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    digests = {1: digest(src)}
    for n in (2, 3):
        write(src, f"etc/app/v{n}.conf", f"{n}\n", mtime=T1 + n)
        write(src, "usr/bin/tool", f"#!/bin/sh\necho {n}\n", 0o755, mtime=T1 + n)
        os.chmod(src / "etc/app", 0o750)
        os.setxattr(src / "etc/motd", "user.dim.test", f"v{n}".encode())
        (src / "var/lib/app/fifo").unlink(missing_ok=True)
        touch_tree(src)
        dim.ok("image", "sync", "alpha", "--from", str(src))
        digests[n] = digest(src)
    out = dim.ok("image", "rollback", "alpha", "1")
    assert out.startswith("alpha: version 4: ")
    live = dim.store.paths.live("alpha")
    assert snapshot(live) == snapshot(version_tree(dim.store, "alpha", 1))
    assert digest(live) == digests[1] == digest(version_tree(dim.store, "alpha", 4))
    # the rolled-back version is made of version 1's inodes, not copies
    assert inode(live / "usr/bin/tool") == inode(
        version_tree(dim.store, "alpha", 1) / "usr/bin/tool"
    )
    dim.ok("image", "rollback", "alpha", "3")
    assert digest(live) == digests[3]
    meta = json.loads(dim.ok("image", "versions", "alpha", "--json"))
    assert [m["source"] for m in meta][-2:] == ["rollback to 1", "rollback to 3"]


def test_rollback_to_a_version_that_does_not_exist_is_refused(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    run = dim("image", "rollback", "alpha", "7")
    assert run.status == 1
    assert run.err.splitlines()[0] == "dim: error: image alpha has no version 7"
    assert dim.store.versions("alpha") == [1]


def test_versions_list_and_diff_commands(dim, src):
    dim.ok("image", "import", "alpha", "--from", str(src))
    write(src, "etc/motd", "changed\n", mtime=T1)
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    lines = dim.ok("image", "versions", "alpha").splitlines()
    assert lines[0].split() == [
        "VERSION",
        "CREATED",
        "ADDED",
        "CHANGED",
        "REMOVED",
        "NEW",
        "SOURCE",
    ]
    assert [ln.split()[0] for ln in lines[1:]] == ["1", "2"]
    assert lines[2].split()[3:6] == ["0", "1", "0"]
    listing = json.loads(dim.ok("image", "list", "--json"))
    assert listing == [
        {
            "name": "alpha",
            "arch": None,  # a tree of text files: no ELF binary tells
            "versions": [1, 2],
            "live": 2,
            "nodes": "",
            "replicas": 0,
            "declared": True,
        },
        {
            "name": "beta",
            "arch": None,
            "versions": [],
            "live": None,
            "nodes": "",
            "replicas": 0,
            "declared": True,
        },
    ]
    assert json.loads(dim.ok("image", "diff", "alpha", "2", "1", "--json")) == {
        "added": [],
        "changed": ["/etc/motd"],
        "removed": [],
    }
    run = dim("image", "diff", "alpha", "1", "9")
    assert run.status == 1 and "image alpha has no version 9" in run.err


def test_exec_keeps_its_overlay_in_the_store_on_a_local_file_system(tmp_path):
    store_folder = tmp_path / "images" / "alpha" / ".exec-42"
    store_folder.parent.mkdir(parents=True)
    assert sources.filesystem_type(Path("/proc/self")) == "proc"
    assert sources.upper_folder(store_folder, 42) == store_folder


def test_exec_keeps_its_overlay_on_a_local_disk_when_the_store_is_on_fuse(tmp_path, monkeypatch):
    """ceph-fuse cannot be an overlay's upper layer (no RENAME_WHITEOUT)."""
    monkeypatch.setattr(sources, "filesystem_type", lambda path: "fuse.ceph-fuse")
    monkeypatch.setattr(sources, "SCRATCH", tmp_path / "scratch")
    (tmp_path / "scratch").mkdir()
    folder = sources.upper_folder(tmp_path / "store" / ".exec-42", 42)
    assert folder.parent == tmp_path / "scratch" and folder.name.startswith("dim-exec-42-")
    assert folder.is_dir()
