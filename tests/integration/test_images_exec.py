"""``dim image exec``: a command in a chroot over an overlay of the latest version, as root.

The new version must be exactly what the command left. To know what it left, the command
pauses at its end, and the test reads the tree it sees through ``/proc/PID/root`` (its chroot:
the merged overlay) before letting it finish: that snapshot must equal the new version's. The
command's shell says it paused through /dev/shm, which exec binds from the host; the test finds
its pid by its command line (exec runs it in a PID namespace of its own).
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require_binary, require_root
from tests.image_trees import (
    T1,
    Dim,
    busybox_tree,
    inode,
    snapshot,
    touch_tree,
    version_tree,
    write,
)

pytestmark = pytest.mark.integration

RUNTIME = ("proc", "sys", "dev", "run", "tmp")  # mounted over by exec: not the command's


@pytest.fixture
def dim(tmp_path, capsys) -> Dim:
    require_root()
    require_binary("unshare", "util-linux")
    return Dim(tmp_path, capsys)


@pytest.fixture
def image(dim, tmp_path) -> Path:
    """Image alpha from a busybox tree with files of every kind, n1 holding a replica."""
    root = busybox_tree(tmp_path / "bb", require_binary("busybox", "busybox-static"), setfattr=True)
    write(root, "etc/gone", "removed by the command\n")
    write(root, "etc/x/old1", "replaced with its folder\n")
    write(root, "etc/x/sub/old2", "replaced with its folder\n")
    write(root, "etc/moved/file", "in a folder the command renames\n")
    write(root, "etc/labelled", "attributes survive a copy-up\n")
    os.setxattr(root / "etc/labelled", "user.dim.kept", b"user")
    os.setxattr(root / "etc/labelled", "trusted.dim.kept", b"trusted")
    write(root, "usr/lib/libbig.so", os.urandom(256 * 1024))
    os.symlink("motd", root / "etc/motd.link")
    touch_tree(root)
    dim.ok("image", "import", "alpha", "--from", str(root))
    dim.ok("node", "switch", "n1", "alpha")
    return root


def _chrooted_pid(tag: str) -> int:
    """The host's pid of the command: in exec's PID namespace, its own ``$$`` is small."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            chrooted = os.readlink(f"/proc/{name}/root") != "/"
        except OSError:
            continue
        if tag.encode() in cmdline and chrooted:
            return int(name)
    raise AssertionError(f"no chrooted process runs {tag}")


def _merged_snapshot(dim, script: str) -> tuple[dict[str, tuple], str]:
    """Run ``script`` by exec; snapshot the tree it sees at its end; return that and stdout."""
    tag = f"/dev/shm/dim-exec-test-{os.getpid()}-{secrets.token_hex(4)}"
    command = f"{script}\necho $$ > {tag}.pid\nwhile [ ! -e {tag}.go ]; do sleep 0.05; done"
    process = subprocess.Popen(
        dim.argv("image", "exec", "alpha", "--", "sh", "-c", command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(f"{tag}.pid"):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the command never paused"
            time.sleep(0.02)
        time.sleep(0.05)  # the pid is written: let the shell reach its loop
        pid = _chrooted_pid(tag)
        seen = snapshot(Path(f"/proc/{pid}/root"), skip=RUNTIME)
        seen["."] = _root_entry(f"/proc/{pid}/root/")  # /proc/PID/root itself is a link
        Path(f"{tag}.go").touch()
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
        for suffix in (".pid", ".go"):
            Path(f"{tag}{suffix}").unlink(missing_ok=True)
    assert process.returncode == 0, err
    return _without_runtime(seen), out


def _root_entry(root: str) -> tuple:
    """The snapshot entry of a root reached through a link (pathlib drops the trailing /)."""
    st = os.stat(root)
    attributes = tuple(sorted((n, os.getxattr(root, n)) for n in os.listxattr(root)))
    return (
        stat.filemode(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_mtime_ns,
        0,
        0,
        None,
        attributes,
        None,
        ".",
    )


def _without_runtime(tree: dict[str, tuple]) -> dict[str, tuple]:
    """Leave out what exec mounts over (/proc, /sys, /dev, /run, /tmp) and the root's time."""
    result = {p: e for p, e in tree.items() if p.split("/")[0] not in RUNTIME}
    return result


SCRIPT = """
set -e
echo added > /etc/added
echo changed > /etc/motd
rm /etc/gone
rm -rf /etc/x && mkdir /etc/x && touch /etc/x/new
mv /etc/moved /etc/renamed
chmod 600 /var/state
chown 1234:4321 /usr/x
echo more >> /etc/labelled
/usr/bin/setfattr -n user.dim.new -v fresh /etc/added
/usr/bin/setfattr -n trusted.dim.new -v fresh /var/state
mknod /etc/null c 1 3
mkfifo /var/fifo
ln /usr/x /usr/x.hard
ln -s added /etc/added.link
rm /etc/motd.link
mkdir -p /var/lib/deep/er && echo deep > /var/lib/deep/er/file
"""


def test_the_new_version_is_exactly_what_the_command_left(dim, image):
    v1 = version_tree(dim.store, "alpha", 1)
    shared_before = inode(v1 / "usr/lib/libbig.so")
    seen, out = _merged_snapshot(dim, SCRIPT)
    assert "alpha: version 2: " in out
    v2, live = version_tree(dim.store, "alpha", 2), dim.store.paths.live("alpha")
    made = _without_runtime(snapshot(v2))
    assert made == seen
    assert snapshot(live) == snapshot(v2)
    # whiteouts removed, the opaque folder replaced, the renamed folder complete
    assert not (v2 / "etc/gone").exists() and (v1 / "etc/gone").exists()
    assert sorted(os.listdir(v2 / "etc/x")) == ["new"]
    assert (v2 / "etc/renamed/file").read_text() == "in a folder the command renames\n"
    assert not (v2 / "etc/moved").exists()
    # a copy-up keeps the file's own attributes, and adds none of overlayfs's
    assert os.getxattr(v2 / "etc/labelled", "trusted.dim.kept") == b"trusted"
    assert os.getxattr(v2 / "etc/labelled", "user.dim.kept") == b"user"
    leaked = [
        (p, name)
        for p, e in snapshot(v2).items()
        for name, _ in e[7]
        if name.startswith("trusted.overlay.")
    ]
    assert leaked == []
    # what the command did not touch is version 1's inode
    assert inode(v2 / "usr/lib/libbig.so") == shared_before == inode(live / "usr/lib/libbig.so")
    assert inode(v2 / "bin/busybox") == inode(v1 / "bin/busybox")
    assert inode(v2 / "usr/x") == inode(v2 / "usr/x.hard") != inode(v1 / "usr/x")
    diff = dim.ok("image", "diff", "alpha", "1", "2").splitlines()
    assert "- /etc/gone" in diff and "- /etc/x/old1" in diff and "+ /etc/x/new" in diff
    assert "~ /usr/x" in diff and "~ /var/state" in diff and "+ /var/lib/deep/er/file" in diff
    # the replica of n1 got the persistent part
    replica = dim.store.paths.replica("n1", "alpha")
    assert (replica / "etc/added").read_text() == "added\n"
    assert sorted(os.listdir(replica / "etc/x")) == ["new"]
    assert os.getxattr(replica / "var/state", "trusted.dim.new") == b"fresh"
    assert not (replica / "etc/gone").exists()


def test_a_command_that_changes_nothing_records_no_version(dim, image):
    out = dim.ok("image", "exec", "alpha", "--", "sh", "-c", "cat /etc/motd > /dev/null")
    assert out == "alpha: nothing changed, no version recorded\n"
    assert dim.store.versions("alpha") == [1]


def test_a_failing_command_records_nothing_and_leaves_live_alone(dim, image):
    live = dim.store.paths.live("alpha")
    before = snapshot(live)
    run = dim("image", "exec", "alpha", "--", "sh", "-c", "echo half > /etc/motd; exit 3")
    assert run.status == 1
    assert run.err.splitlines()[0] == (
        "dim: error: the command sh -c 'echo half > /etc/motd; exit 3' exited with status 3: "
        "no version recorded, live untouched"
    )
    assert dim.store.versions("alpha") == [1]
    assert snapshot(live) == before
    assert (dim.store.paths.replica("n1", "alpha") / "etc/motd").read_text() == "1\n"
    leftovers = [p.name for p in dim.store.paths.image("alpha").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert str(dim.state) not in Path("/proc/self/mountinfo").read_text()


def test_a_command_that_does_not_exist_fails_cleanly(dim, image):
    run = dim("image", "exec", "alpha", "--", "/bin/no-such-program")
    assert run.status == 1
    assert "exited with status 127: no version recorded, live untouched" in run.err
    assert dim.store.versions("alpha") == [1]


def test_two_execs_at_once_run_one_after_the_other(dim, image):
    first = subprocess.Popen(
        dim.argv(
            "image",
            "exec",
            "alpha",
            "--",
            "sh",
            "-c",
            "echo a1 >> /etc/seq; sleep 1.5; echo a2 >> /etc/seq",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not list(dim.store.paths.image("alpha").glob(".exec-*/upper/etc/seq")):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        second = subprocess.run(
            dim.argv("image", "exec", "alpha", "--", "sh", "-c", "echo b >> /etc/seq"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        waited = time.monotonic() - started
        assert first.wait(timeout=60) == 0, first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 0, second.stderr
    assert waited > 1.0
    versions = dim.store
    assert versions.versions("alpha") == [1, 2, 3]
    assert (version_tree(versions, "alpha", 2) / "etc/seq").read_text() == "a1\na2\n"
    assert (version_tree(versions, "alpha", 3) / "etc/seq").read_text() == "a1\na2\nb\n"
    assert (versions.paths.live("alpha") / "etc/seq").read_text() == "a1\na2\nb\n"


def test_exec_on_an_image_without_version_is_refused(dim, image):
    run = dim("image", "exec", "beta", "--", "true")
    assert run.status == 1
    assert run.err.splitlines() == [
        "dim: error: image beta has no version yet",
        "hint: dim image import beta --from SOURCE",
    ]


def test_exec_sees_the_latest_version_after_a_sync(dim, image, tmp_path):
    write(image, "etc/motd", "from the master\n", mtime=T1)
    touch_tree(image)
    dim.ok("image", "sync", "alpha", "--from", str(image))
    dim.ok("image", "exec", "alpha", "--", "sh", "-c", "cat /etc/motd > /etc/copy")
    assert (dim.store.paths.live("alpha") / "etc/copy").read_text() == "from the master\n"


def test_a_command_dies_with_dim_and_leaves_no_version(dim, image):
    tag = f"dim-exec-orphan-{secrets.token_hex(4)}"
    process = subprocess.Popen(
        dim.argv("image", "exec", "alpha", "--", "sh", "-c", f"sleep 60; echo {tag}"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not _running(tag):
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        os.kill(process.pid, 9)  # dim alone, not its process group
        process.wait()
        deadline = time.monotonic() + 5
        while _running(tag) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(tag), "the command outlived dim"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
    dim.ok("image", "check", "alpha")
    assert dim.store.versions("alpha") == [1]


def _running(tag: str) -> bool:
    for name in os.listdir("/proc"):
        if name.isdigit() and name != str(os.getpid()):
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if tag.encode() in cmdline and b"image" not in cmdline:
                return True
    return False
