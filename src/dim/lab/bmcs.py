"""Simulated IPMI BMCs for the lab's nodes, so that ``dim power`` drives them for real.

Each BMC is a `dim.lab.bmcsim` process on the node's loopback BMC address from
examples/lab.xml (127.0.10.N for nodeNN), holding the node's QEMU command line: ``dim power
on`` starts the QEMU (which PXE-boots), ``off`` stops it, ``reset`` restarts it. The BMC is
recorded in ``lab.json`` as the daemon ``bmc-NODE`` with the node's tap device, so that ``dim
lab down`` stops it by process id (on SIGTERM the simulator stops its QEMU first)::

    credentials = start_bmcs(folder, ["node06"], say=print)
    # DIM_CREDENTIALS=<credentials> dim power on node06

The password is random per lab, written to files of mode 0600, never on a command line.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dim.errors import LabError
from dim.lab.console import console_path
from dim.lab.network import add_tap, remove_tap
from dim.lab.processes import Process, sleep_until, stop
from dim.lab.qemu import node_macs, qemu_command
from dim.lab.state import LabState

BMC_USER = "admin"


def bmc_address(name: str) -> str:
    """The address examples/lab.xml gives a node's BMC: 127.0.10.N for nodeNN."""
    return f"127.0.10.{int(name.removeprefix('node'))}"


def start_bmcs(folder: Path, names: list[str], *, say: Callable[[str], None] | None = None) -> Path:
    """A simulated IPMI BMC per node of the lab up in ``folder``, in place of any it had.
    Returns the credentials file for ``DIM_CREDENTIALS`` (credentials ``lab``)."""
    state = LabState.running(folder)
    password, credentials = _credentials(folder)
    macs = node_macs(99)
    for name in names:
        previous = state.daemon(f"bmc-{name}")
        if previous is not None:
            stop(previous.pid)
            remove_tap(state.namespace, previous.tap)
        tap = add_tap(state.namespace)
        console = console_path(folder, name)
        console.touch()
        qemu = qemu_command(macs[name], tap, console, memory=384)
        log = folder / "logs" / f"bmc-{name}.log"
        pid = _start_bmc(name, ["ip", "netns", "exec", state.namespace, *qemu], password, log)
        state = state.with_daemon(Process(f"bmc-{name}", pid, str(log), tap))
        state.save()
        if not sleep_until(lambda log=log: "listening" in log.read_text(errors="replace"), 15):
            raise LabError(f"the BMC of {name} did not start", hint=f"its log: {log}")
        if say:
            say(f"{name}: BMC on {bmc_address(name)} (ipmi, credentials 'lab' in {credentials})")
    return credentials


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


def _start_bmc(name: str, command: list[str], password: Path, log: Path) -> int:
    """The simulator, detached in a session of its own; its process id."""
    argv = [sys.executable, "-m", "dim.lab.bmcsim", "--address", bmc_address(name)]
    argv += ["--user", BMC_USER, "--password-file", str(password), "--", *command]
    with open(log, "ab") as output:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid
