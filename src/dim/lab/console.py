"""A lab node's serial console: its log, the boot stages read from it, and commands typed in.

QEMU logs each node's console to ``<lab>/logs/NODE.console`` and serves it on the Unix socket
``<lab>/logs/NODE.sock`` (`dim.lab.qemu`). The lab image keeps a root shell on it, so the
socket is a remote shell that needs no network::

    read(folder, "node01")                              # the console since the last power-on
    progress(read(folder, "node01"), seen)              # ["kernel started", "  dim: step 1/9 …"]
    console_run(folder, "node01", "cat /etc/hostname")  # (0, "node01\\n")

One command at a time per console: two callers typing at once would interleave their lines.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from pathlib import Path

from dim.errors import LabError
from dim.lab.images import MARKER

#: What a console line shows, and the boot stage it means, in boot order.
STAGES = (
    ("Linux version", "kernel started"),
    ("dim: step", "initramfs running"),
    ("switch_root to", "switching to the image"),
    (MARKER, "up"),
)


def console_path(folder: Path, name: str) -> Path:
    return folder / "logs" / f"{name}.console"


def read(folder: Path, name: str) -> str:
    """The node's console log (since its last power-on), or "" if it has none."""
    path = console_path(folder, name)
    return path.read_text(errors="replace") if path.exists() else ""


def progress(text: str, seen: set[str]) -> list[str]:
    """The stages and initramfs steps in ``text`` that are not in ``seen``: labels to show.

    Adds them to ``seen``; a step line comes indented under its stage::

        seen = set()
        progress("Linux version 6.1…\\ndim: step 1/9 modules\\n", seen)
        # ["kernel started", "initramfs running", "  dim: step 1/9 modules"]
    """
    new = [label for needle, label in STAGES if needle in text and label not in seen]
    seen.update(new)
    for line in text.splitlines():
        if "dim: step" in line and line not in seen:
            seen.add(line)
            new.append(f"  {line.strip()}")
    return new


#: A message the kernel printed on the console: ``[  112.492760] kvm_amd: Nested Paging
#: disabled`` and its newline.
KERNEL_MESSAGE = re.compile(r"\[\s*\d+\.\d+\] [^\n]*(?:\n|$)")


def without_kernel_messages(output: str) -> str:
    """A command's console output without the kernel's messages printed among it.

    A message may start in the middle of the command's line (``6.12.117+deb13-amd64[
    94.330517] powernow_k8: …``); the rest of the line follows the message's newline. A command
    that reports the kernel's log must print it in another form (`dim.lab.workload.ERRORS`).
    """
    return KERNEL_MESSAGE.sub("", output)


def console_run(folder: Path, name: str, command: str, *, timeout: float = 30.0) -> tuple[int, str]:
    """Run a shell command on a lab node through its serial console: (status, output).

    The lab image keeps a root shell on the console; the output is found between two markers
    that only the execution of the line can print, never its echo: the echoed line holds
    ``@@BEGIN-ab''cd1234@@`` and ``$?``, the output ``@@BEGIN-abcd1234@@`` and a number. The
    echo itself cannot be relied on: the shell wraps it at 80 columns, anywhere.
    """
    token = secrets.token_hex(4)
    begin = f"@@BEGIN-{token}@@\n"
    marker = re.compile(rf"@@END-{token}-(\d+)@@")
    line = f"echo @@BEGIN-{token[:2]}''{token[2:]}@@; {command}; echo @@END-{token}-$?@@\n"
    path = console_path(folder, name).with_suffix(".sock")
    received = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.settimeout(1.0)
        try:
            channel.connect(str(path))
        except OSError as exc:
            raise LabError(
                f"cannot reach the console of {name}: {exc.strerror}",
                hint="is the node running? dim lab status",
            ) from None
        channel.sendall(line.encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = channel.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
            text = received.decode(errors="replace").replace("\r", "")
            found = marker.search(text)
            if found:
                start = text.find(begin)
                body = text[start + len(begin) : found.start()] if start >= 0 else ""
                return int(found.group(1)), body
    raise LabError(
        f"{name} did not finish {command!r} within {timeout} s",
        hint=f"it may still run there (see {console_path(folder, name)}); a larger --timeout "
        "waits longer",
    )
