"""Import and sync from a running master node over ssh (rsync), against a real sshd.

The module starts its own sshd on 127.0.0.1 and a free port, with a host key, a client key
and a config of its own in a temporary folder (StrictModes off: the folder belongs to the
test), and stops it by its process id. dim's ssh command comes from ``DIM_SSH_COMMAND``; the
"master" is a folder on this machine reached as ``ssh://root@127.0.0.1:PORT/PATH``, holding
what a running system has in /proc, /sys, /dev, /run and /tmp, and files the image declares
as keep-outs. Unreachable masters (a closed port, a listener that never speaks) must fail
within a bounded time with a one-line error.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dim.images.sources import DEFAULT_SSH
from tests.conftest import require_binary, require_root
from tests.image_trees import T1, Dim, base_tree, inode, snapshot, touch_tree, version_tree, write

pytestmark = pytest.mark.integration

RUNTIME = ("proc", "sys", "dev", "run", "tmp")
CONNECT_TIMEOUT = int(re.search(r"ConnectTimeout=(\d+)", DEFAULT_SSH).group(1))
KEEPOUTS = ("etc/hostname", "etc/ssh/ssh_host_ed25519_key", "var/log")


@dataclass(frozen=True, slots=True)
class Sshd:
    port: int
    folder: Path
    process: subprocess.Popen

    def ssh_command(self, key: Path | None = None) -> str:
        """For DIM_SSH_COMMAND: this server's key accepted, nothing of root's ~/.ssh read."""
        return (
            f"ssh -F /dev/null -i {key or self.folder / 'client_key'} -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={self.folder / 'known_hosts'} "
            "-o StrictHostKeyChecking=no -o BatchMode=yes -o ConnectTimeout=3"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Iterator[Sshd]:
    require_root()
    program = require_binary("sshd", "openssh-server")
    require_binary("ssh", "openssh-client")
    require_binary("rsync", "rsync")
    folder = tmp_path_factory.mktemp("sshd")
    _keygen(folder / "host_key")
    _keygen(folder / "client_key")
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    log = open(folder / "sshd.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([program, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, (folder / "sshd.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "sshd did not listen"
                time.sleep(0.05)
        yield Sshd(port, folder, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def dim(tmp_path, capsys, sshd, monkeypatch) -> Dim:
    monkeypatch.setenv("DIM_SSH_COMMAND", sshd.ssh_command())
    return Dim(tmp_path, capsys)


def master_tree(root: Path) -> Path:
    """A running master's root: the base tree and what a live system holds besides."""
    base_tree(root)
    write(root, "proc/cpuinfo", "processor : 0\n")
    write(root, "proc/1/status", "Name: init\n")
    write(root, "sys/kernel/hostname", "master\n")
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    write(root, "dev/shm/segment", "shared memory\n")
    write(root, "run/sshd.pid", "42\n")
    write(root, "run/lock/subsys/x", "")
    write(root, "tmp/junk", "scratch\n")
    write(root, "var/log/apt/history.log", "installed things\n")
    write(root, "var/tmp/kept", "/var/tmp is not a runtime path of the master\n")
    touch_tree(root)
    return root


def _expected(master: Path) -> dict[str, tuple]:
    """The master's snapshot without runtime contents and keep-outs."""
    result = {}
    for path, e in snapshot(master).items():
        parts = path.split("/")
        if parts[0] in RUNTIME and len(parts) > 1:
            continue
        if any(path == k or path.startswith(k + "/") for k in KEEPOUTS):
            continue
        result[path] = e
    return result


def _url(sshd: Sshd, master: Path) -> str:
    return f"ssh://root@127.0.0.1:{sshd.port}{master}"


def test_import_from_a_master_over_ssh_leaves_runtime_contents_and_keep_outs_out(
    dim, sshd, tmp_path
):
    master = master_tree(tmp_path / "master")
    out = dim.ok("image", "import", "alpha", "--from", _url(sshd, master))
    assert out.startswith("alpha: version 1: ")
    version = version_tree(dim.store, "alpha", 1)
    assert snapshot(version) == _expected(master)
    for folder in RUNTIME:  # the mount points are there, empty
        assert (version / folder).is_dir() and os.listdir(version / folder) == [], folder
    assert not (version / "etc/hostname").exists()
    assert not (version / "etc/ssh/ssh_host_ed25519_key").exists()
    assert (version / "etc/ssh/sshd_config").exists()
    assert not (version / "var/log").exists()
    assert (version / "var/tmp/kept").exists()
    meta = dim.store.version("alpha", 1).meta
    assert meta["source"] == _url(sshd, master)


def test_sync_over_ssh_gives_new_inodes_only_to_what_changed(dim, sshd, tmp_path):
    master = master_tree(tmp_path / "master")
    url = _url(sshd, master)
    dim.ok("image", "import", "alpha", "--from", url)
    dim.ok("node", "switch", "n1", "alpha")
    write(master, "etc/motd", "changed on the master\n", mtime=T1)
    write(master, "run/new.pid", "43\n", mtime=T1)  # runtime: not part of the image
    write(master, "etc/hostname", "renamed\n", mtime=T1)  # keep-out
    touch_tree(master)
    out = dim.ok("image", "sync", "alpha", "--from", url)
    assert "version 2: 0 added, 1 changed, 0 removed" in out
    v1, v2 = version_tree(dim.store, "alpha", 1), version_tree(dim.store, "alpha", 2)
    changed = [
        p for p, e in snapshot(v2).items() if e[0][0] != "d" and inode(v1 / p) != inode(v2 / p)
    ]
    assert changed == ["etc/motd"]
    assert snapshot(v2) == _expected(master)
    replica = dim.store.paths.replica("n1", "alpha")
    assert (replica / "etc/motd").read_text() == "changed on the master\n"
    assert dim.ok("image", "sync", "alpha", "--from", url).endswith("no version recorded\n")


@pytest.mark.parametrize("attempt", range(5))  # rsync's exit status for it varies: 12 or 255
def test_a_closed_port_fails_at_once_with_one_line_and_the_ssh_hint(dim, tmp_path, attempt):
    port = _free_port()  # nobody listens there
    started = time.monotonic()
    run = dim("image", "import", "alpha", "--from", f"ssh://root@127.0.0.1:{port}/srv/master")
    elapsed = time.monotonic() - started
    # at once: refused, not given up on after a connect timeout (nor after several attempts)
    assert elapsed < CONNECT_TIMEOUT, f"took {elapsed:.1f} s"
    assert run.status == 1
    lines = run.err.splitlines()
    assert lines[0] == (
        f"dim: error: cannot read ssh://root@127.0.0.1:{port}/srv/master: "
        f"ssh: connect to host 127.0.0.1 port {port}: Connection refused"
    )
    assert lines[1:] == [
        "hint: check that the host is up and accepts key-based ssh as root "
        "(DIM_SSH_COMMAND sets the ssh command)"
    ]
    assert dim.store.versions("alpha") == []
    assert not list(dim.store.paths.image("alpha").glob(".staging-*"))


def test_a_master_that_never_answers_fails_within_a_bounded_time(dim, tmp_path, monkeypatch):
    """dim's own ssh options, not the test's, must bound the wait: no DIM_SSH_COMMAND."""
    monkeypatch.delenv("DIM_SSH_COMMAND")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        run = dim("image", "import", "alpha", "--from", f"ssh://root@127.0.0.1:{port}/")
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()
    assert accepted, "ssh never connected"
    # dim's ConnectTimeout (which bounds the wait for the server's banner too) ended it: not
    # sooner, and not much later (the margin is for starting ssh and rsync on a busy machine)
    assert CONNECT_TIMEOUT <= elapsed < CONNECT_TIMEOUT + 15, f"took {elapsed:.1f} s"
    assert run.status == 1
    lines = run.err.splitlines()
    assert lines[0].startswith(f"dim: error: cannot read ssh://root@127.0.0.1:{port}/: ")
    assert len(lines) == 2 and lines[1].startswith("hint: ")
    assert dim.store.versions("alpha") == []


def test_a_refused_key_fails_with_one_line(dim, sshd, tmp_path, monkeypatch):
    stranger = tmp_path / "stranger_key"
    _keygen(stranger)
    monkeypatch.setenv("DIM_SSH_COMMAND", sshd.ssh_command(stranger))
    master = master_tree(tmp_path / "master")
    run = dim("image", "import", "alpha", "--from", _url(sshd, master))
    assert run.status == 1
    lines = run.err.splitlines()
    assert lines[0].startswith(f"dim: error: cannot read {_url(sshd, master)}: ")
    assert "Permission denied" in lines[0]
    assert len(lines) == 2, run.err  # one line, and its hint
    assert lines[1].startswith("hint: check that the host is up and accepts key-based ssh")
    assert dim.store.versions("alpha") == []


def test_a_path_missing_on_the_master_fails_with_one_line(dim, sshd, tmp_path):
    url = _url(sshd, tmp_path / "nowhere")
    run = dim("image", "import", "alpha", "--from", url)
    assert run.status == 1
    lines = run.err.splitlines()
    assert lines[0].startswith(f"dim: error: cannot read {url}: ")
    assert "No such file or directory" in lines[0]
    assert len(lines) == 1, run.err  # rsync's status 23 has no hint
    assert dim.store.versions("alpha") == []


def test_a_malformed_ssh_url_is_refused(dim):
    run = dim("image", "import", "alpha", "--from", "ssh://root@host:port/x")
    assert run.status == 2
    assert run.err == (
        "dim: error: invalid ssh source 'ssh://root@host:port/x': "
        "use ssh://[USER@]HOST[:PORT][/PATH]\n"
    )
