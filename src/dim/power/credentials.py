"""BMC credentials: a TOML file of mode 0600, entries by name, referenced from cluster.xml.

::

    # /etc/dim/credentials  (mode 0600, owned by the user running dim)
    [default]                 # used by <bmc> elements without credentials=
    username = "admin"
    password = "secret"

    [redfish-lab]
    username = "root"
    password = "calvin"
    verify = false            # Redfish: do not check the BMC's TLS certificate
    # ca = "/etc/dim/bmc-ca.pem"   or check it against this CA bundle

    [pdu]
    community = "private"     # SNMP v2c community (read and write)

    >>> store = load(Path("/etc/dim/credentials"))
    >>> store.get("redfish-lab").username
    'root'

A file that the group or others may read, that belongs to another user than the one running dim
(or root), or that is a symbolic link, is refused before it is parsed. Errors name the file
and the line, never a value or an unknown key (a password typed on the wrong line is one).
Secrets are kept in :class:`Secret`, whose ``repr`` and ``str`` are ``'***'``, so that a log
line, an error message, a traceback's locals or ``--json`` output cannot show them by accident.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from dim.errors import CredentialsError

DEFAULT_PATH = Path("/etc/dim/credentials")
DEFAULT_ENTRY = "default"
_KEYS = {"username", "password", "community", "verify", "ca", "auth"}


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: for the protocol library only, never for output."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Credential:
    """One named entry of the credentials file."""

    name: str
    username: str | None = None
    password: Secret | None = None
    community: Secret | None = None
    verify: bool = True  # Redfish: check the BMC's TLS certificate
    ca: str | None = None  # Redfish: CA bundle to check it against
    auth: str = "session"  # Redfish: session (X-Auth-Token) or basic


@dataclass(frozen=True, slots=True)
class CredentialStore:
    path: str
    entries: dict[str, Credential] = field(default_factory=dict)

    def get(self, name: str | None) -> Credential | None:
        """The entry ``name`` (``default`` when None); None when the file has no such entry."""
        return self.entries.get(name or DEFAULT_ENTRY)


def resolve_path(option: str | Path | None, layout: Path | None = None) -> Path:
    """The file to read: the option, else ``$DIM_CREDENTIALS``, else the file ``credentials``
    beside the layout (``/etc/dim/credentials`` for ``/etc/dim/cluster.xml``; a lab's own for a
    lab's layout), else /etc/dim/credentials."""
    if option:
        return Path(option)
    env = os.environ.get("DIM_CREDENTIALS")
    if env:
        return Path(env)
    return layout.parent / DEFAULT_PATH.name if layout is not None else DEFAULT_PATH


def load(path: Path, *, required: bool = True) -> CredentialStore:
    """Read and check the credentials file; refuse it unless it is a regular file, not a
    symbolic link, owned by the user running dim (or root) and readable by its owner alone.

    The checks look at the open descriptor (``fstat``), so the file cannot be swapped between
    the check and the read.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if not required:
            return CredentialStore(str(path))
        raise CredentialsError(
            f"{path}: no credentials file",
            hint="create it with mode 0600 (see `man`-style docs/power.md), "
            "or pass --credentials FILE / set DIM_CREDENTIALS",
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CredentialsError(
                f"{path}: the credentials file is a symbolic link; dim reads only a regular "
                "file, so that nobody can point it at another",
                hint=f"replace the link by the file itself (mode 0600): {path}",
            ) from None
        raise CredentialsError(
            f"{path}: cannot open the credentials file: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        _check(path, os.fstat(handle.fileno()))
        data = handle.read()
    return parse(data, str(path))


def _check(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise CredentialsError(f"{path}: the credentials file is not a regular file")
    user = os.geteuid()
    if st.st_uid not in (user, 0):
        raise CredentialsError(
            f"{path}: the credentials file belongs to user id {st.st_uid}, not to the user "
            f"running dim ({user}) nor root; whoever owns it can change the BMC passwords",
            hint=f"chown {user} {path}",
        )
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"{path}: the credentials file is readable by others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); it holds BMC passwords",
            hint=f"chmod 600 {path}",
        )


def parse(data: bytes, source: str = "<memory>") -> CredentialStore:
    """Parse the TOML text of a credentials file.

    Errors name the file, the line and the entry, never a value nor an unknown key: a password
    typed on the wrong line would be both (``hunter2`` alone, or ``passwrod = "x"``).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CredentialsError(f"{source}: line {line}: not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages may quote the text (a key, a character): only the line is kept
        where = _TOML_WHERE.search(str(exc))
        line = f"line {where['line']}" if where else "at its end"
        raise CredentialsError(
            f"{source}: {line}: not valid TOML (the line's text is not shown: it may hold a "
            "secret)",
            hint='each line is an [entry] or a key = "value" pair',
        ) from None
    lines = _key_lines(text)
    entries = {}
    for position, (name, table) in enumerate(document.items(), start=1):
        if not isinstance(table, dict):
            line = lines.get((None, position))
            raise CredentialsError(
                f"{source}: {_line(line)}a key outside any [entry] (the {_nth(position)} "
                "top-level key; its text is not shown: it may hold a secret)",
                hint='keys go below an [entry] line, e.g. [default] then password = "…"',
            )
        entries[name] = _entry(source, name, table, lines)
    return CredentialStore(source, entries)


_TOML_WHERE = re.compile(r"\(at line (?P<line>[0-9]+), column [0-9]+\)")
_SECTION = re.compile(r"\s*\[\s*(?P<name>[^\]]*?)\s*\]\s*(#.*)?")
_KEY = re.compile(r"\s*[^\s=#\[][^=]*=")


def _key_lines(text: str) -> dict[tuple[str | None, int], int]:
    """(entry, n) -> the line of the n-th key of that entry (None: above every entry).

    Enough for error messages about plain files: one key per line, as the docstring shows.
    """
    found: dict[tuple[str | None, int], int] = {}
    section: str | None = None
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        header = _SECTION.fullmatch(line)
        if header:
            section, count = header["name"].strip('"'), 0
        elif _KEY.match(line):
            count += 1
            found[(section, count)] = number
    return found


def _line(line: int | None) -> str:
    return f"line {line}: " if line else ""


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _entry(source: str, name: str, table: dict, lines: dict) -> Credential:
    for position, key in enumerate(table, start=1):
        where = f"{source}: {_line(lines.get((name, position)))}[{name}]"
        if key not in _KEYS:
            raise CredentialsError(
                f"{where}: unknown key, the {_nth(position)} of the entry (its text is not "
                "shown: it may hold a secret)",
                hint=f"known keys: {', '.join(sorted(_KEYS))}",
            )
        value = table[key]
        if key in ("username", "password", "community", "ca", "auth") and not isinstance(
            value, str
        ):
            raise CredentialsError(f"{where}: {key} must be a string")
        if key == "verify" and not isinstance(value, bool):
            raise CredentialsError(f"{where}: verify must be true or false")
        if key == "auth" and value not in ("session", "basic"):
            raise CredentialsError(f"{where}: auth must be 'session' or 'basic'")
    return Credential(
        name=name,
        username=table.get("username"),
        password=Secret(table["password"]) if "password" in table else None,
        community=Secret(table["community"]) if "community" in table else None,
        verify=table.get("verify", True),
        ca=table.get("ca"),
        auth=table.get("auth", "session"),
    )
