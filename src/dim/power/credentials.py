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

A file that the group or others may read is refused before it is parsed. Secrets are kept in
:class:`Secret`, whose ``repr`` and ``str`` are ``'***'``, so that a log line, an error message,
a traceback's locals or ``--json`` output cannot show them by accident.
"""

from __future__ import annotations

import os
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


def resolve_path(option: str | Path | None) -> Path:
    """The file to read: the option, else ``$DIM_CREDENTIALS``, else /etc/dim/credentials."""
    if option:
        return Path(option)
    env = os.environ.get("DIM_CREDENTIALS")
    return Path(env) if env else DEFAULT_PATH


def load(path: Path, *, required: bool = True) -> CredentialStore:
    """Read and check the credentials file; refuse it when others may read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not required:
            return CredentialStore(str(path))
        raise CredentialsError(
            f"{path}: no credentials file",
            hint="create it with mode 0600 (see `man`-style docs/power.md), "
            "or pass --credentials FILE / set DIM_CREDENTIALS",
        ) from None
    except OSError as exc:
        raise CredentialsError(
            f"{path}: cannot open the credentials file: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialsError(
                f"{path}: the credentials file is readable by others (mode "
                f"{stat.S_IMODE(mode):04o}); it holds BMC passwords",
                hint=f"chmod 600 {path}",
            )
        data = handle.read()
    return parse(data, str(path))


def parse(data: bytes, source: str = "<memory>") -> CredentialStore:
    """Parse the TOML text of a credentials file; errors name the entry, never a value."""
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # TOMLDecodeError messages give a line and column, not the text of the line.
        raise CredentialsError(f"{source}: not a valid TOML file: {exc}") from None
    entries = {}
    for name, table in document.items():
        if not isinstance(table, dict):
            raise CredentialsError(
                f"{source}: {name!r} must be a [section] of keys, not a top-level value"
            )
        entries[name] = _entry(source, name, table)
    return CredentialStore(source, entries)


def _entry(source: str, name: str, table: dict) -> Credential:
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise CredentialsError(
            f"{source}: [{name}]: unknown key {unknown[0]!r}",
            hint=f"known keys: {', '.join(sorted(_KEYS))}",
        )
    for key in ("username", "password", "community", "ca", "auth"):
        if key in table and not isinstance(table[key], str):
            raise CredentialsError(f"{source}: [{name}]: {key} must be a string")
    if "verify" in table and not isinstance(table["verify"], bool):
        raise CredentialsError(f"{source}: [{name}]: verify must be true or false")
    auth = table.get("auth", "session")
    if auth not in ("session", "basic"):
        raise CredentialsError(f"{source}: [{name}]: auth must be 'session' or 'basic'")
    return Credential(
        name=name,
        username=table.get("username"),
        password=Secret(table["password"]) if "password" in table else None,
        community=Secret(table["community"]) if "community" in table else None,
        verify=table.get("verify", True),
        ca=table.get("ca"),
        auth=auth,
    )
