"""File-system conventions of dim, each in one place: atomic writes, temporary names, folder
fsync, tree removal, number files.

    >>> write_atomically(Path("/etc/dim/hosts"), b"10.0.0.2 img1\\n")
    >>> temporary_name("/srv/live/etc/motd")
    '/srv/live/etc/.motd.dim-4242'
    >>> is_temporary(".motd.dim-4242")
    True

A whole file is written to its temporary name ``.NAME.dim-PID`` in the same folder, flushed to
disk, then renamed over the old file: readers see the old content or the new, never half of it.
A crash leaves at most such a temporary next to it, which :func:`is_temporary` recognizes (the
image store's recovery removes them from node replicas). The rename itself is durable once the
folder is fsynced (:func:`fsync_folder`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

_TEMPORARY = re.compile(r"\..+\.dim-[0-9]+")


def temporary_name(path: str | Path) -> str:
    """``FOLDER/.NAME.dim-PID`` for ``FOLDER/NAME``: where a new copy is made before its rename.

    Plain strings: this runs once per file of a changed image and replica.
    """
    folder, name = os.path.split(str(path))
    return os.path.join(folder, f".{name}.dim-{os.getpid()}")


def is_temporary(name: str) -> bool:
    """Whether a file name is one that :func:`temporary_name` makes (for any process)."""
    return _TEMPORARY.fullmatch(name) is not None


def write_atomically(path: str | Path, content: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` by ``content`` (created with ``mode``) so that readers never see half."""
    folder = os.path.dirname(str(path))
    os.makedirs(folder, exist_ok=True)
    temporary = temporary_name(path)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def fsync_folder(folder: str | Path) -> None:
    """Make the renames and removals in ``folder`` durable; a missing folder has none."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: str | Path) -> None:
    """Remove a directory and everything below it, read-only directories included.

    What vanishes meanwhile is fine, and what appears meanwhile is removed by another pass: a
    killed command's child may still be renaming its temporaries while the next command
    clears its folder: passes a little apart outlast it. Nothing at ``path`` is fine too.
    """
    for attempt in range(REMOVE_PASSES):
        if attempt:
            time.sleep(0.01 * 2**attempt)  # 0.02 s, 0.04 s… 0.64 s in all
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        # a read-only directory inside (or entries that appeared): make every one writable
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        for folder, dirs, _files in os.walk(path):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(folder, d), 0o700)
    shutil.rmtree(path, onerror=_vanished_is_fine)  # the last pass says why it cannot


REMOVE_PASSES = 6


def _vanished_is_fine(function, path, exc_info) -> None:
    if not issubclass(exc_info[0], FileNotFoundError):
        raise exc_info[1]


def remove_path(path: str | Path) -> None:
    """Remove whatever is at ``path``: a file, a link (never its target) or a whole tree.

    Nothing there is fine.
    """
    if os.path.isdir(path) and not os.path.islink(path):
        remove_tree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def read_number(path: str | Path) -> int | None:
    """The number a file holds on its first line; None if it is missing or holds none."""
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_number(path: str | Path, number: int) -> None:
    """Write ``number`` and a newline to ``path``, atomically."""
    write_atomically(path, f"{number}\n".encode())
