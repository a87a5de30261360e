"""Writing a whole file so that readers see the old content or the new, never half of it.

    >>> write_atomically(Path("/etc/dim/hosts"), b"10.0.0.2 img1\\n")

The content goes to a temporary name in the same folder, is flushed to disk, then renamed over
the old file. A crash leaves at most a ``.NAME.dim-PID`` file next to it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: str | Path, content: bytes, mode: int = 0o644) -> None:
    folder, name = os.path.split(str(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{folder}/.{name}.dim-{os.getpid()}"
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
