"""The REST API's bearer tokens: made once, shown once, kept only as hashes in a 0600 file.

::

    tokens = TokenFile(Path("/etc/dim/api-tokens"))
    secret = tokens.add("helpdesk", "reader")      # 'dim_Yk3…': printed once, never stored
    tokens.check(secret)                           # Token(name='helpdesk', role='reader', …)
    tokens.remove("helpdesk")

A token is 32 random bytes (``secrets``), so its SHA-256 is what the file keeps: a slow
password hash (scrypt, bcrypt) defends guessable secrets, and these cannot be guessed, while
it would cost every API request tens of milliseconds of CPU. The file is JSON, written
atomically with mode 0600 and refused when others may read or change it, as the BMC
credentials file is. Roles: ``reader`` may read everything; ``admin`` may also change
(switch images, apply, power).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from dim.errors import UsageError
from dim.files import write_atomically
from dim.structs import struct

ROLES = ("reader", "admin")
PREFIX = "dim_"
FILE_NAME = "api-tokens"  # beside cluster.xml, as the BMC credentials file
ENV = "DIM_API_TOKENS"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@struct(frozen=True, slots=True)
class Token:
    name: str
    role: str
    created: float
    sha256: str

    def may(self, role: str) -> bool:
        """Whether this token's role covers ``role`` (admin covers reader)."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def record(self) -> dict:
        return {"name": self.name, "role": self.role, "created": self.created}


def resolve_path(option: str | Path | None, layout: Path) -> Path:
    """The option, else ``$DIM_API_TOKENS``, else ``api-tokens`` beside the layout."""
    if option:
        return Path(option)
    return Path(os.environ.get(ENV) or layout.parent / FILE_NAME)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenFile:
    """The token file at ``path`` (absent: no token yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def tokens(self) -> list[Token]:
        return list(self._read().values())

    def check(self, secret: str) -> Token | None:
        """The token whose secret this is, None if there is none."""
        if not secret.startswith(PREFIX):
            return None
        return self._read().get(digest(secret))

    def add(self, name: str, role: str) -> str:
        """A new token named ``name`` with ``role``; returns its secret (shown once)."""
        check_name(name)
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        found = self._read()
        if any(t.name == name for t in found.values()):
            raise UsageError(f"{self.path}: a token named {name!r} exists; remove it first")
        secret = PREFIX + secrets.token_urlsafe(32)
        token = Token(name, role, round(time.time(), 3), digest(secret))
        self._write([*found.values(), token])
        return secret

    def remove(self, name: str) -> None:
        found = list(self._read().values())
        kept = [t for t in found if t.name != name]
        if len(kept) == len(found):
            raise UsageError(f"{self.path}: no token named {name!r}")
        self._write(kept)

    def _read(self) -> dict[str, Token]:
        """sha256 -> token, from the file as it is now (tokens added or removed by another
        command count at the next request)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            why = "is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise UsageError(f"{self.path}: cannot read the API token file: {why}") from None
        with os.fdopen(fd, "rb") as handle:
            _check(self.path, os.fstat(handle.fileno()))
            data = handle.read()
        try:
            entries = json.loads(data)["tokens"]
            tokens = [
                Token(e["name"], e["role"], float(e["created"]), e["sha256"]) for e in entries
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{self.path}: not an API token file ({exc})") from None
        return {t.sha256: t for t in tokens if t.role in ROLES}

    def _write(self, tokens: Iterable[Token]) -> None:
        entries = [{**t.record(), "sha256": t.sha256} for t in tokens]
        text = json.dumps({"tokens": entries}, indent=2) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, text.encode(), mode=0o600)


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"invalid token name {name[:80]!r}: letters, digits and . _ @ - (at most 64), "
            "starting with a letter or digit"
        )


def _check(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path}: the API token file is not a regular file")
    if st.st_uid not in (os.geteuid(), 0):
        raise UsageError(
            f"{path}: the API token file belongs to user id {st.st_uid}, not to the user "
            "running dim nor root; whoever owns it can give themselves a token",
            hint=f"chown {os.geteuid()} {path}",
        )
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(
            f"{path}: the API token file is open to others (mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
