"""A throwaway PostgreSQL 15 server in a folder of its own, for the lab and the tests.

Debian's binaries (:data:`BIN`), never the machine's own clusters or systemd. Everything lives
in the folder: the data in ``data/``, the Unix socket, the log ``postgres.log``, and
``server.json`` (address, port, role and password, mode 0600), so that a server stopped is
started again as it was::

    server = start(Path("/var/tmp/dim-pg"))       # initdb the first time
    server.url                                    # postgresql://dim:…@127.0.0.1:PORT/dim
    stop(server)                                  # fast shutdown, by process id
    server = start(Path("/var/tmp/dim-pg"))       # the same data, port, role and password
    running(Path("/var/tmp/dim-pg"))              # the server of that folder if it runs
    remove(server)                                # stopped, and its folder deleted

initdb and the server refuse to run as root: as root they run as the ``postgres`` user
(``setpriv``, which execs, so the process id is the server's own), in a folder that user owns;
as anyone else, as that user. The server listens on its socket and on one TCP address:
loopback by default, or with ``namespace`` an address inside that network namespace (the lab's).
Only the role, which owns its database and nothing more (no superuser, no CREATEDB), logs in
over TCP, with its password; the superuser ``postgres`` connects through the socket only, whose
folder only ``postgres`` and root can enter. :func:`create_database` and :func:`drop_database`
give each test a database of its own.

A small server: 32 MB of shared buffers; fsync stays on. Starting a new one takes about a
second and a half (initdb most of it), an existing one a fraction of that.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from dim.errors import LabError
from dim.lab.netns import free_port
from dim.lab.processes import alive

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"  # whom initdb and the server run as, when started by root
SUPERUSER = "postgres"
SETTINGS = {"shared_buffers": "32MB", "max_connections": "100", "logging_collector": "off"}
DEFAULT_PORT = 5432  # in a namespace of its own; on the host, a free port is chosen


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: its folder, process id, address and the one role's credentials."""

    folder: str
    pid: int
    host: str
    port: int
    database: str = "dim"
    role: str = "dim"
    password: str = ""
    namespace: str | None = None

    @property
    def url(self) -> str:
        """The role's URL, over TCP with its password: what ``--database`` takes."""
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        credentials = f"{quote(self.role, safe='')}:{quote(self.password, safe='')}"
        return f"postgresql://{credentials}@{host}:{self.port}/{quote(database, safe='')}"

    @property
    def socket_url(self) -> str:
        """The role's URL over the server's Unix socket in its folder: reachable from every
        network namespace of the machine (the lab's servers each have their own)."""
        credentials = f"{quote(self.role, safe='')}:{quote(self.password, safe='')}"
        where = f"host={quote(self.folder, safe='/')}&port={self.port}"
        return f"postgresql://{credentials}@/{quote(self.database, safe='')}?{where}"

    @property
    def log(self) -> Path:
        return Path(self.folder) / "postgres.log"


def available() -> bool:
    """Whether Debian's PostgreSQL 15 server is installed (``apt-get install postgresql-15``)."""
    return all((BIN / name).is_file() for name in ("initdb", "postgres", "psql"))


def start(
    folder: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    namespace: str | None = None,
    database: str = "dim",
    role: str = "dim",
    timeout: float = 30.0,
) -> Server:
    """Start the server of ``folder``, made there first (initdb, role, database) if need be.

    ``port`` None: :data:`DEFAULT_PORT` in ``namespace``, a free one on the host. A server made
    before keeps its address, port, role and password; the arguments apply to a new one.
    """
    folder = Path(folder).absolute()
    _prepare(folder)
    saved = _load(folder)
    if saved is None:
        if port is None:
            port = DEFAULT_PORT if namespace else free_port(host)
        saved = Server(str(folder), 0, host, port, database, role, secrets.token_hex(16), namespace)
    if not (folder / "data" / "PG_VERSION").exists():
        _initdb(folder)
    server = _launch(saved, timeout)
    if _load(folder) is None:
        try:
            _create_role(server)
        except BaseException:
            stop(server)
            raise
        _save(server)
    return server


def running(folder: Path) -> Server | None:
    """The server of ``folder`` if it runs: its process id from its own ``postmaster.pid``,
    and only if that process is a server of this folder's data (ids are reused)."""
    saved = _load(Path(folder).absolute())
    try:
        pid = int((Path(folder) / "data" / "postmaster.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    data = str(Path(folder).absolute() / "data").encode()
    if saved is None or not alive(pid) or data not in command:
        return None
    return Server(**{**asdict(saved), "pid": pid})


def stop(server: Server, timeout: float = 10.0) -> None:
    """Stop ``server`` by its process id: SIGINT is PostgreSQL's fast shutdown (as ``pg_ctl
    stop -m fast``: clients disconnected, a clean checkpoint); SIGKILL to its process group
    after ``timeout``. Nothing else is signalled: another server may run the same program."""
    if server.pid <= 0:  # 0 or -1 would signal this process group, or every process
        raise ValueError(f"no process id for the PostgreSQL server of {server.folder}")
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGINT)
    if not _wait_gone(server.pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        _wait_gone(server.pid, 5.0)
    with contextlib.suppress(ChildProcessError):  # started by this process: reap it
        os.waitpid(server.pid, os.WNOHANG)


def remove(server: Server) -> None:
    """Stop the server of ``server``'s folder if it runs (it may have been started again
    since ``server``), and delete the folder."""
    current = running(Path(server.folder))
    if current is not None:
        stop(current)
    shutil.rmtree(server.folder, ignore_errors=True)


def create_database(server: Server, name: str) -> str:
    """A new empty database ``name`` owned by the server's role; its URL."""
    _sql(server, f'CREATE DATABASE "{name}" OWNER "{server.role}"')
    return server.url_of(name)


def drop_database(server: Server, name: str) -> None:
    """Drop ``name``, closing the connections still open to it (FORCE)."""
    _sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the steps -------------------------------------------------------------------------------


def _as_user() -> list[str]:
    """The prefix that runs a command as :data:`USER` when we are root; none otherwise."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--"]


def _prepare(folder: Path) -> None:
    """The folder, owned by the user the server runs as, and reachable by that user."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(USER)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    folder.chmod(0o700)
    check = subprocess.run([*_as_user(), "test", "-w", str(folder)], check=False)
    if check.returncode != 0:
        raise LabError(
            f"the {USER} user cannot reach {folder}",
            hint="every folder above it must be searchable by others (o+x); "
            "/tmp/pytest-of-root is not, for one",
        )


def _initdb(folder: Path) -> None:
    command = [
        *_as_user(),
        str(BIN / "initdb"),
        "--pgdata",
        str(folder / "data"),
        "--username",
        SUPERUSER,
        "--auth-local=trust",  # the socket's folder is USER's, mode 0700
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-instructions",
        "--no-sync",  # a throwaway server: its first sync is not worth a second
    ]
    _run(command, folder, "initdb")
    # the lab's other servers reach it from their own addresses, with the role's password
    with open(folder / "data" / "pg_hba.conf", "a") as hba:
        hba.write("host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n")


def _launch(server: Server, timeout: float) -> Server:
    folder = Path(server.folder)
    command = [
        *_as_user(),
        str(BIN / "postgres"),
        "-D",
        str(folder / "data"),
        "-k",
        str(folder),
        "-p",
        str(server.port),
        "-c",
        f"listen_addresses={server.host}",
        *[arg for key, value in SETTINGS.items() for arg in ("-c", f"{key}={value}")],
    ]
    if server.namespace:
        command = ["ip", "netns", "exec", server.namespace, *command]
    with open(folder / "postgres.log", "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches its children
        )
    started = Server(**{**asdict(server), "pid": process.pid})
    if not _wait_ready(started, timeout):
        stop(started)
        raise LabError(
            f"PostgreSQL did not start in {folder}: {_tail(started.log)}",
            hint=f"its log: {started.log}",
        )
    return started


def _wait_ready(server: Server, timeout: float) -> bool:
    """Whether the server says "ready" (postmaster.pid's status line) within ``timeout``."""
    status = Path(server.folder) / "data" / "postmaster.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(server.pid):
            return False
        with contextlib.suppress(OSError):
            lines = status.read_text().splitlines()
            if len(lines) >= 8 and lines[0] == str(server.pid) and lines[7].strip() == "ready":
                return True
        time.sleep(0.05)
    return False


def _create_role(server: Server) -> None:
    _sql(
        server,
        f"CREATE ROLE \"{server.role}\" LOGIN PASSWORD '{server.password}' "
        "NOSUPERUSER NOCREATEDB NOCREATEROLE",
        f'CREATE DATABASE "{server.database}" OWNER "{server.role}"',
    )


def _sql(server: Server, *statements: str) -> None:
    """Run ``statements`` as the superuser, through the socket; on standard input, so that a
    password never shows in the process table. Each is its own transaction (CREATE DATABASE
    cannot be in one)."""
    command = [
        str(BIN / "psql"),
        "--no-psqlrc",
        "--quiet",
        "--host",
        server.folder,
        "--port",
        str(server.port),
        "--username",
        SUPERUSER,
        "--dbname",
        "postgres",
        "--set",
        "ON_ERROR_STOP=1",
    ]
    script = "".join(f"{statement};\n" for statement in statements)
    result = subprocess.run(
        command, input=script, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise LabError(f"PostgreSQL in {server.folder} refused: {result.stderr.strip()}")


def _run(command: list[str], folder: Path, what: str) -> None:
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"{what} failed in {folder}: {result.stderr.strip()[-500:]}")


def _load(folder: Path) -> Server | None:
    try:
        return Server(**json.loads((folder / "server.json").read_text()))
    except FileNotFoundError:
        return None


def _save(server: Server) -> None:
    path = Path(server.folder) / "server.json"
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({**asdict(server), "pid": 0}, handle)
    os.replace(temporary, path)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "no log"
    return " | ".join(text) or "no output"
