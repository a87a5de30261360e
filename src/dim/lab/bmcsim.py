"""A simulated IPMI BMC whose power buttons call your code: built on pyghmi's ``Bmc`` class.

For the virtual cluster, where a node is a process (a QEMU guest): ``power on`` starts it,
``power off`` stops it, ``reset`` restarts it, and chassis status says whether it runs::

    power = ProcessPower(["qemu-system-x86_64", "-nographic", …])
    bmc = CallbackBmc({"admin": "secret"}, address="127.0.0.1", port=9101,
                      on=power.start, off=power.stop, reset=power.restart, is_on=power.running)
    bmc.listen()                       # serves until the process ends

or from a shell (the password is read from a file, never from the command line)::

    python -m dim.lab.bmcsim --address 127.0.0.1 --port 9101 --user admin \\
        --password-file pw.txt -- qemu-system-x86_64 -nographic …

Then ``dim power on NODE`` (or ``ipmitool -I lanplus -C 3 … chassis power on``) starts the
command. Boot-device requests are kept (``bootdev``) for the callbacks to read, e.g. to pass
``-boot n`` to the next start.

pyghmi's server session offers cipher suite 3 only (HMAC-SHA1), yet answers a request for
SHA-256 (which pyghmi's own client tries first) as if it had accepted it, so that client and
server then disagree about the keys and the login fails. :class:`_Session` answers such a
request with RMCP+ status 0x11, "invalid authentication algorithm", as real BMCs without
SHA-256 do; pyghmi's client then retries with SHA-1 and logs in.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import serversession

RMCP_INVALID_AUTH_ALGORITHM = 0x11
HMAC_SHA1 = 1


class _Session(serversession.ServerSession):
    """pyghmi's server session, refusing authentication algorithms other than HMAC-SHA1."""

    def create_open_session_response(self, request):
        # Open Session Request: tag, privilege, 2 reserved, console session id (4 bytes),
        # then the authentication payload, whose algorithm is byte 12.
        if len(request) >= 13 and request[12] != HMAC_SHA1:
            return bytearray([request[0], RMCP_INVALID_AUTH_ALGORITHM, 0, 0]) + request[4:8]
        return super().create_open_session_response(request)


Action = Callable[[], object]


class CallbackBmc(pyghmi_bmc.Bmc):
    """An IPMI BMC on ``address:port`` whose chassis control calls the given functions."""

    def __init__(
        self,
        authdata: dict[str, str],
        *,
        address: str = "127.0.0.1",
        port: int = 623,
        on: Action,
        off: Action,
        is_on: Callable[[], bool],
        reset: Action | None = None,
        soft: Action | None = None,
    ) -> None:
        super().__init__(authdata, port=port, address=address)
        self._on, self._off, self._is_on = on, off, is_on
        self._reset = reset
        self._soft = soft or off
        self.bootdev = "default"
        self.lock = threading.Lock()

    # pyghmi calls these from its event loop: keep each short.

    def get_power_state(self) -> str:
        return "on" if self._is_on() else "off"

    def power_on(self) -> None:
        with self.lock:
            if not self._is_on():
                self._on()

    def power_off(self) -> None:
        with self.lock:
            if self._is_on():
                self._off()

    def power_shutdown(self) -> None:
        with self.lock:
            if self._is_on():
                self._soft()

    def power_reset(self) -> None:
        with self.lock:
            if self._reset is not None:
                self._reset()
            else:
                self._off()
                self._on()

    def power_cycle(self) -> None:
        self.power_reset()

    def get_boot_device(self) -> str:
        return self.bootdev

    def set_boot_device(self, bootdevice: str) -> None:
        self.bootdev = bootdevice

    def is_active(self) -> bool:
        return self._is_on()

    def sessionless_data(self, data, sockaddr) -> None:
        # An RMCP+ Open Session Request (IPMI 2.0, payload type 0x10) starts a session of our
        # own class; everything else is pyghmi's.
        raw = bytearray(data)
        if len(raw) >= 22 and raw[0] == 6 and raw[2:4] == b"\xff\x07" and raw[4:6] == b"\x06\x10":
            _Session(
                self.authdata, self.kg, sockaddr, self.serversocket, raw[16:], self.uuid, bmc=self
            )
            return
        super().sessionless_data(data, sockaddr)


class ProcessPower:
    """A node that is a process: on starts it, off stops it (by pid), status is "it runs"."""

    def __init__(self, command: Sequence[str], *, stop_timeout: float = 5.0) -> None:
        self.command = list(command)
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if not self.running():
            self.process = subprocess.Popen(self.command, start_new_session=True)

    def stop(self) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bmcsim", description="An IPMI BMC that starts and stops COMMAND."
    )
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=623)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--on", action="store_true", help="start COMMAND at once")
    parser.add_argument("command", nargs="+", metavar="COMMAND")
    args = parser.parse_args(argv)
    password = args.password_file.read_text().strip()
    power = ProcessPower(args.command)
    server = CallbackBmc(
        {args.user: password},
        address=args.address,
        port=args.port,
        on=power.start,
        off=power.stop,
        reset=power.restart,
        is_on=power.running,
    )
    if args.on:
        power.start()

    def stop(_signum, _frame) -> None:
        power.stop()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"bmcsim listening on {args.address}:{args.port}", flush=True)
    try:
        server.listen()
    finally:
        power.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
