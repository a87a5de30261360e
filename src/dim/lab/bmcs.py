"""Simulated IPMI BMCs for the lab's nodes, so that ``dim power`` drives them for real.

Each BMC is a `dim.lab.bmcpower` process on the node's loopback BMC address from
examples/lab.xml (127.0.10.N for nodeNN), port 623: ``dim power on`` powers the node on as
``dim lab boot`` does (its QEMU PXE-boots), ``off`` stops it, ``reset`` restarts it. ``dim lab
up`` starts one per node; each is recorded in ``lab.json`` as the daemon ``bmc-NODE``, so that
``dim lab down`` stops it by process id::

    credentials = start_bmcs(folder, ["node06"], say=print)
    # <lab>/credentials, beside <lab>/cluster.xml, where dim looks by default:
    # dim --config <lab>/cluster.xml --state <lab>/state power on node06

The password is random per lab, written to files of mode 0600, never on a command line. The
BMC addresses are the host's loopback: two labs up at once cannot both have BMCs.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dim.errors import LabError
from dim.lab.processes import Process, alive, sleep_until, stop
from dim.lab.state import LabState, locked

BMC_USER = "admin"


def bmc_address(name: str) -> str:
    """The address examples/lab.xml gives a node's BMC: 127.0.10.N for nodeNN."""
    return f"127.0.10.{int(name.removeprefix('node'))}"


def start_bmcs(folder: Path, names: list[str], *, say: Callable[[str], None] | None = None) -> Path:
    """A simulated IPMI BMC per node of the lab up in ``folder``, in place of any it had.
    Returns the credentials file for ``DIM_CREDENTIALS`` (credentials ``lab``)."""
    password, credentials = _credentials(folder)
    started: dict[str, tuple[int, Path]] = {}
    with locked(folder):
        state = LabState.running(folder)
        for name in names:
            previous = state.daemon(f"bmc-{name}")
            if previous is not None:
                stop(previous.pid)
            log = folder / "logs" / f"bmc-{name}.log"
            log.write_text("")
            pid = _start_bmc(folder, name, password, log)
            state = state.with_daemon(Process(f"bmc-{name}", pid, str(log)))
            state.save()
            started[name] = (pid, log)
    for name, (pid, log) in started.items():  # all start at once; each must come up
        _wait_listening(name, pid, log)
        if say:
            say(f"{name}: BMC on {bmc_address(name)} (ipmi, credentials 'lab' in {credentials})")
    return credentials


def _wait_listening(name: str, pid: int, log: Path) -> None:
    def said() -> str:
        return log.read_text(errors="replace")

    sleep_until(lambda: "listening" in said() or not alive(pid), 15)
    if "listening" not in said() or not alive(pid):
        last = said().strip().splitlines()[-1:] or ["nothing"]
        raise LabError(
            f"the BMC of {name} did not start on {bmc_address(name)}:623: {last[0]}",
            hint="do another lab's BMCs hold the loopback BMC addresses? dim lab down there, "
            "or dim lab up --no-bmcs here",
        )


def _credentials(folder: Path) -> tuple[Path, Path]:
    """The password file the BMCs read and the credentials file dim reads, made once."""
    password = folder / "bmc-password"
    credentials = folder / "credentials"
    if not password.exists():
        secret = secrets.token_hex(8)
        for path, text in (
            (password, f"{secret}\n"),
            (credentials, f'[lab]\nusername = "{BMC_USER}"\npassword = "{secret}"\n'),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
    return password, credentials


def _start_bmc(folder: Path, name: str, password: Path, log: Path) -> int:
    """The simulator, detached in a session of its own; its process id."""
    argv = [sys.executable, "-m", "dim.lab.bmcpower", "--dir", str(folder), "--node", name]
    argv += ["--address", bmc_address(name), "--user", BMC_USER]
    argv += ["--password-file", str(password)]
    with open(log, "ab") as output:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid
