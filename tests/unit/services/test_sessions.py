"""dim.services.sessions: the live connections to the NFS port, read by ss from real sockets."""

from __future__ import annotations

import logging
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


class Written(list):
    """What a Sampler handed to its writer: (clients or None, at) per reading."""

    def __call__(self, clients, at):
        self.append(None if clients is None else dict(clients))


def test_a_sampler_writes_a_reading_whole_then_only_its_time_until_it_changes(connection):
    port, client, accepted = connection
    written = Written()
    sampler = sessions.Sampler(["self"], written, port=port)
    client.send(b"renew")
    sampler.sample()
    sampler.sample()
    accepted.close()
    client.close()
    sampler.sample()
    assert written == [{"127.0.0.1": "127.0.0.1"}, None, {}]


def test_a_reading_that_failed_to_be_written_is_written_whole_next_time(connection, caplog):
    caplog.set_level(logging.INFO, "dim.serve")
    port, client, _ = connection
    client.send(b"renew")
    written = Written()
    down = True

    def write(clients, at):
        if down:
            raise OSError("the state DB is unreachable")
        written(clients, at)

    sampler = sessions.Sampler(["self"], write, port=port)
    sampler.sample()
    sampler.sample()
    down = False
    sampler.sample()
    assert written == [{"127.0.0.1": "127.0.0.1"}]
    failures = [r for r in caplog.records if "not recorded" in r.getMessage()]
    assert len(failures) == 1  # logged once while it lasts, not at every reading
    assert any("recorded again" in r.getMessage() for r in caplog.records)


def test_a_sampler_that_reads_no_server_writes_nothing(tmp_path):
    written = Written()
    sessions.Sampler([str(tmp_path / "gone.pid")], written).sample()
    assert written == []


def test_a_sampler_thread_reads_at_once_and_stops_when_told(connection):
    port, client, _ = connection
    client.send(b"renew")
    written = Written()
    sampler = sessions.Sampler(["self"], written, interval=60, port=port)
    sampler.start()
    started = time.monotonic()
    while not written and time.monotonic() - started < 10:
        time.sleep(0.05)
    sampler.stop()
    assert written == [{"127.0.0.1": "127.0.0.1"}]
    assert time.monotonic() - started < 10  # stop did not wait out the 60 s interval
