"""dim.services.sessions: the live connections to the NFS port, read by ss from real sockets."""

from __future__ import annotations

import os
import socket
import time

import pytest

from dim.services import sessions
from tests.conftest import require_root

SS = """0      0      10.0.0.1:2049 10.0.1.12:1023
\t cubic wscale:7,7 rto:204 rtt:0.1/0.05 lastsnd:120 lastrcv:1500 lastack:120
0      0      [::ffff:10.0.0.1]:2049 [::ffff:10.0.1.15]:768
\t cubic lastsnd:1 lastrcv:44999 lastack:1
0      0      10.0.0.1:2049 10.0.1.16:800
\t cubic lastsnd:1 lastrcv:600000 lastack:1
0      0      [fd00::1]:2049 [fd00::17]:801
\t cubic lastsnd:1 lastrcv:10 lastack:1
"""


def test_connections_silent_for_longer_than_the_silence_are_not_sessions():
    assert sessions.parse_ss(SS) == {
        "10.0.1.12": "10.0.0.1",
        "10.0.1.15": "10.0.0.1",  # an IPv4 client of a v6 socket, shown as itself
        "fd00::17": "fd00::1",
    }  # 10.0.1.16 sent nothing for 10 minutes: a node that died with its connection open


@pytest.fixture
def connection():
    """A real TCP connection on loopback: (port, client socket, server's end)."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(("127.0.0.1", server.getsockname()[1]))
    accepted, _ = server.accept()
    yield server.getsockname()[1], client, accepted
    for s in (accepted, client, server):
        s.close()


def test_a_real_connection_that_talks_is_a_session(connection):
    port, client, _ = connection
    client.send(b"renew")
    assert sessions.clients(["self"], port=port) == {"127.0.0.1": "127.0.0.1"}


def test_a_real_connection_gone_silent_is_not(connection):
    port, client, _ = connection
    client.send(b"renew")
    time.sleep(0.6)
    assert sessions.clients(["self"], port=port, silence=0.3) == {}
    client.send(b"renew")
    time.sleep(0.05)
    assert sessions.clients(["self"], port=port, silence=0.3) == {"127.0.0.1": "127.0.0.1"}


def test_a_pid_file_names_the_namespace_of_its_process(tmp_path, connection):
    port, client, _ = connection
    client.send(b"renew")
    own = tmp_path / "own.pid"
    own.write_text(f"{os.getpid()}\n")
    dead = tmp_path / "dead.pid"
    dead.write_text("999999999\n")
    garbage = tmp_path / "garbage.pid"
    garbage.write_text("not a pid\n")
    files = [str(own), str(dead), str(garbage), str(tmp_path / "absent")]
    assert sessions.namespaces(files) == [os.getpid()]
    require_root()  # nsenter is root's
    assert sessions.clients(files, port=port) == {"127.0.0.1": "127.0.0.1"}


def test_no_readable_server_is_none_not_an_empty_list_of_sessions(tmp_path):
    assert sessions.clients([]) is None
    assert sessions.clients([str(tmp_path / "absent.pid")]) is None


def test_the_environment_names_the_pid_files(monkeypatch):
    monkeypatch.setenv(sessions.PID_FILES_ENV, "/a.pid::/b.pid")
    assert sessions.pid_files_from_env() == ["/a.pid", "/b.pid"]
    monkeypatch.delenv(sessions.PID_FILES_ENV)
    assert sessions.pid_files_from_env() is None
