"""IPMI 2.0 (RMCP+, "lanplus") through pyghmi: chassis status, chassis control, boot flags.

A node's BMC address is ``HOST[:PORT]`` (UDP port 623 by default)::

    <bmc driver="ipmi" address="10.1.{n1}.{n2}" credentials="default"/>

pyghmi is synchronous, and it gives up on a dead BMC only after its own retries (measured
here: 4.5 s for a port where nothing listens). So each call runs in a thread of its own
instead of a bounded pool: when the fan-out's time budget for a node runs out, the node's
result is a timeout at once and its thread finishes in the background, without holding a
pool slot that the next node would wait for. pyghmi multiplexes every session over a few
UDP sockets and one I/O thread of its own, so a thread per call costs little.

The password goes to pyghmi in memory; it is never on a command line (``ipmitool -P`` would
show it in ``ps``). IPMI offers no standard way to read the host's NIC MACs: ``macs`` says
so per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from dim.errors import PowerError
from dim.power.interface import Nic, Target

T = TypeVar("T")

# Chassis control (netfn 0, command 2) values, IPMI 2.0 table 28-4.
CONTROL = {"off": 0, "on": 1, "cycle": 2, "reset": 3, "soft": 5}
# Boot device selector of boot flags (parameter 5), byte 2: PXE 0x04, hard disk 0x08.
BOOT_DEVICES = {"pxe": 0x04, "disk": 0x08}
DEFAULT_PORT = 623
LOGIN_LIMIT = 30.0  # seconds a login thread waits at most, whatever the caller's budget


def parse_address(text: str) -> tuple[str, int]:
    """``10.1.0.5`` -> (``10.1.0.5``, 623); ``127.0.0.1:9001`` -> (``127.0.0.1``, 9001)."""
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        host, port = text, ""
    host = host.strip("[]")
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        number = -1
    if not host or not 0 < number < 65536 or "/" in host:
        raise PowerError("config", f"invalid IPMI address {text!r}", hint="use HOST[:PORT]")
    return host, number


class IpmiDriver:
    name = "ipmi"

    async def close(self) -> None:
        pass

    async def status(self, target: Target) -> str:
        data = await self._run(target, lambda bmc: bmc.command(0x00, 0x01))
        if not data:
            raise PowerError("protocol", "the chassis status answer is empty")
        return "on" if data[0] & 1 else "off"

    async def power(self, target: Target, action: str) -> str:
        def act(bmc: _Bmc) -> str:
            if action == "cycle" and not bmc.command(0x00, 0x01)[0] & 1:
                # A power cycle of a node that is off is refused by many BMCs (0xd5): switch on.
                bmc.command(0x00, 0x02, (CONTROL["on"],))
                return "on"
            bmc.command(0x00, 0x02, (CONTROL[action],))
            return action

        return await self._run(target, act)

    async def bootdev(self, target: Target, device: str, persistent: bool) -> str:
        flags = 0x80 | (0x40 if persistent else 0)  # valid; persistent or next boot only

        def act(bmc: _Bmc) -> str:
            bmc.command(0x00, 0x08, (0x03, 0x08))  # clear the boot-info acknowledgements
            bmc.command(0x00, 0x08, (0x05, flags, BOOT_DEVICES[device], 0, 0, 0))
            return device

        return await self._run(target, act)

    async def macs(self, target: Target) -> list[Nic]:
        raise PowerError(
            "unsupported",
            "IPMI offers no standard way to read the host's MAC addresses",
            hint="use Redfish for these nodes, or dim node import-macs",
        )

    async def _run(self, target: Target, work: Callable[[_Bmc], T]) -> T:
        host, port = parse_address(target.address)
        credential = target.credential
        if credential is None or credential.username is None or credential.password is None:
            name = credential.name if credential else "default"
            raise PowerError(
                "config",
                f"no username and password in credentials entry {name!r}",
                hint="add them to the credentials file (docs/power.md)",
            )
        user, password = credential.username, credential.password.reveal()

        def call() -> T:
            with _Bmc(host, port, user, password) as bmc:
                return work(bmc)

        return await _in_thread(call)


async def _in_thread(call: Callable[[], T]) -> T:
    """Run ``call`` in a daemon thread of its own; a cancelled caller does not wait for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return  # the caller timed out and left
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def body() -> None:
        try:
            result, error = call(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's loop
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=body, name="dim-ipmi", daemon=True).start()
    return await future


class _Bmc:
    """One pyghmi session: opened on entry, logged out on exit; pyghmi errors converted."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.key = (host, user, password, port, None)
        self.host, self.port, self.user, self.password = host, port, user, password
        self.session: Any = None

    def __enter__(self) -> _Bmc:
        from pyghmi.ipmi.private import session

        # pyghmi caches sessions under (host, user, password, port, kg) as given, but deletes
        # them under the encoded user and password, so a failed or finished session stays in
        # the cache and is handed to the next login with the same parameters: forget it.
        session.Session.initting_sessions.pop(self.key, None)
        # Log in with a callback rather than synchronously: pyghmi's synchronous login reads
        # the error message of a refused login before the thread that sets it has done so.
        answer: dict = {}
        answered = threading.Event()

        def logged_on(response: dict) -> None:
            answer.update(response)
            answered.set()

        try:
            self.session = session.Session(
                bmc=self.host,
                userid=self.user,
                password=self.password,
                port=self.port,
                onlogon=logged_on,
                keepalive=False,
            )
            deadline = time.monotonic() + LOGIN_LIMIT
            while not answered.is_set() and time.monotonic() < deadline:
                session.Session.wait_for_rsp(timeout=0.1)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise PowerError("unreachable", f"cannot reach the BMC: {reason}") from None
        if "error" in answer or not answered.is_set():
            session.Session.initting_sessions.pop(self.key, None)
            raise _login_error(answer.get("error", "timeout"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        from pyghmi.ipmi.private import session

        with contextlib.suppress(Exception):  # else the BMC ends the idle session itself
            self.session.logout()
        session.Session.initting_sessions.pop(self.key, None)

    def command(self, netfn: int, command: int, data: tuple[int, ...] = ()) -> bytes:
        from pyghmi import exceptions
        from pyghmi.ipmi.private import constants

        try:
            response = self.session.raw_command(netfn=netfn, command=command, data=data)
        except exceptions.IpmiException as exc:
            raise PowerError("timeout", f"the BMC stopped answering ({exc})") from None
        if not isinstance(response, dict):
            raise PowerError("protocol", "the BMC's answer could not be read")
        if "error" in response:
            raise PowerError("protocol", f"the BMC answered with an error: {response['error']}")
        code = response.get("code", 0)
        if code:
            name = constants.ipmi_completion_codes.get(code, "unknown completion code")
            raise PowerError(
                "refused", f"the BMC refused the command: {name} (completion code {code:#04x})"
            )
        return bytes(response.get("data", b""))


def _login_error(error: object) -> PowerError:
    text = str(error)
    if "password" in text.lower() or "unauthorized" in text.lower() or "name" in text.lower():
        return PowerError(
            "auth",
            f"login refused: {text}",
            hint="check the username and password of the node's credentials entry",
        )
    if not text or text == "None" or "timeout" in text.lower():
        return PowerError("timeout", "no answer from the BMC (pyghmi gave up after its retries)")
    return PowerError("protocol", f"login failed: {text}")
