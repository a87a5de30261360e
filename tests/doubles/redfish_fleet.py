"""A fleet of Redfish BMCs in one asyncio process, each on its own loopback address.

For benchmarks and tests of dim's fan-out at scale: thousands of BMCs answering sessions,
systems, ComputerSystem.Reset, boot override and EthernetInterfaces, with a latency and a
share of dead ones::

    python tests/doubles/redfish_fleet.py --count 10000 --dead 0.05 --latency 0.01 --port 8000
    # ready 10000 127.100.0.1-127.100.39.94   (one line on stdout once every BMC listens)

BMC *i* listens on :func:`address` (``127.100.0.1`` upwards, never a .0 or .255 host byte):
the whole of 127.0.0.0/8 is routed to ``lo`` on Linux, so binding any of them needs no
configuration. Dead BMCs come in two kinds, half each: *silent* ones whose socket accepts
connections (the kernel completes the handshake) and never answers, which only a timeout
ends, and *closed* ones with nothing listening, refused at once. ``--special I=MODE`` gives
BMC *I* a misbehaviour for tests: ``silent``, ``closed``, ``garbage`` (bytes that are not
HTTP), ``half`` (half an answer, then the connection closes), ``notjson`` (HTTP 200 with an
HTML page after a good login). Even-numbered BMCs advertise their reset types through
``@Redfish.ActionInfo``, odd ones inline (``ResetType@Redfish.AllowableValues``).

This is a test fixture, not a Redfish implementation: it answers exactly what dim asks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import resource
import signal
import socket
import sys
from dataclasses import dataclass, field

RESETS = ["On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle"]
SYSTEM = "/redfish/v1/Systems/1"
SESSIONS = "/redfish/v1/SessionService/Sessions"
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized"}
MODES = ("ok", "silent", "closed", "garbage", "half", "notjson")


def address(index: int, first: int = 100) -> str:
    """The loopback address of BMC ``index``: 127.100.0.1, …, 127.100.0.254, 127.100.1.1, …"""
    host = 1 + index % 254
    rest = index // 254
    return f"127.{first + rest // 256}.{rest % 256}.{host}"


def plan(count: int, dead: float, seed: int = 1) -> list[str]:
    """The mode of each BMC: ``ok``, or ``silent``/``closed`` for a share ``dead`` of them."""
    modes = ["ok"] * count
    chosen = random.Random(seed).sample(range(count), round(count * dead))
    for position, index in enumerate(chosen):
        modes[index] = "silent" if position % 2 == 0 else "closed"
    return modes


@dataclass(slots=True)
class Fleet:
    modes: list[str]
    latency: float = 0.0
    username: str = "admin"
    password: str = "secret"
    power: list[bool] = field(default_factory=list)
    boot: list[tuple[str, str]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    counter: int = 0

    def __post_init__(self) -> None:
        self.power = [index % 3 != 0 for index in range(len(self.modes))]
        self.boot = [("None", "Disabled")] * len(self.modes)

    # -- requests ------------------------------------------------------------------------

    def handle(self, index: int, method: str, path: str, headers: dict, body: bytes):
        """(status, JSON document or None, extra headers) for one request to BMC ``index``."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/redfish/v1":
            return 200, self._root(), {}
        if path == SESSIONS and method == "POST":
            return self._login(index, body)
        if not self._authorized(index, headers):
            return 401, {"error": {"message": "authentication required"}}, {}
        if path.startswith(SESSIONS + "/") and method == "DELETE":
            self.tokens.pop(headers.get("x-auth-token", ""), None)
            return 204, None, {}
        if path == SESSIONS and method == "GET":  # the sessions open on this BMC
            ids = [token.split("-", 1)[1] for token, at in self.tokens.items() if at == index]
            members = [{"@odata.id": f"{SESSIONS}/{n}"} for n in ids]
            return 200, {"Members": members, "Members@odata.count": len(members)}, {}
        if self.modes[index] == "notjson":
            return 200, "<html>not redfish</html>", {}
        return self._system(index, method, path, body)

    def _root(self) -> dict:
        return {
            "@odata.id": "/redfish/v1",
            "RedfishVersion": "1.15.0",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
            "Links": {"Sessions": {"@odata.id": SESSIONS}},
        }

    def _login(self, index: int, body: bytes):
        try:
            request = json.loads(body)
            good = (request.get("UserName"), request.get("Password")) == (
                self.username,
                self.password,
            )
        except (ValueError, AttributeError):
            good = False
        if not good:
            return 401, {"error": {"message": "invalid credentials"}}, {}
        self.counter += 1
        token = f"{index}-{self.counter}"
        self.tokens[token] = index
        location = f"{SESSIONS}/{self.counter}"
        return 201, {"@odata.id": location}, {"X-Auth-Token": token, "Location": location}

    def _authorized(self, index: int, headers: dict) -> bool:
        if self.tokens.get(headers.get("x-auth-token", "")) == index:
            return True
        basic = headers.get("authorization", "")
        if basic.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return (user, password) == (self.username, self.password)
        return False

    def _system(self, index: int, method: str, path: str, body: bytes):
        if path == "/redfish/v1/Systems" and method == "GET":
            return 200, {"Members": [{"@odata.id": SYSTEM}], "Members@odata.count": 1}, {}
        if path == SYSTEM and method == "GET":
            return 200, self._system_document(index), {"ETag": f'"{index}-{self.boot[index]}"'}
        if path == SYSTEM and method == "PATCH":
            boot = _json(body).get("Boot") or {}
            self.boot[index] = (
                boot.get("BootSourceOverrideTarget", self.boot[index][0]),
                boot.get("BootSourceOverrideEnabled", self.boot[index][1]),
            )
            return 204, None, {}
        if path == SYSTEM + "/ResetActionInfo":
            parameter = {"Name": "ResetType", "AllowableValues": RESETS}
            return 200, {"Parameters": [parameter]}, {}
        if path == SYSTEM + "/Actions/ComputerSystem.Reset" and method == "POST":
            reset = _json(body).get("ResetType")
            if reset not in RESETS:
                return 400, {"error": {"message": f"invalid ResetType {reset!r}"}}, {}
            self.power[index] = reset not in ("ForceOff", "GracefulShutdown")
            return 204, None, {}
        if path == SYSTEM + "/EthernetInterfaces":
            return 200, {"Members": [{"@odata.id": SYSTEM + "/EthernetInterfaces/1"}]}, {}
        if path == SYSTEM + "/EthernetInterfaces/1":
            mac = f"52:54:01:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"
            return 200, {"Id": "1", "MACAddress": mac}, {}
        return 404, {"error": {"message": f"no {path}"}}, {}

    def _system_document(self, index: int) -> dict:
        reset: dict = {"target": SYSTEM + "/Actions/ComputerSystem.Reset"}
        if index % 2 == 0:
            reset["@Redfish.ActionInfo"] = SYSTEM + "/ResetActionInfo"
        else:
            reset["ResetType@Redfish.AllowableValues"] = RESETS
        target, enabled = self.boot[index]
        return {
            "@odata.id": SYSTEM,
            "Id": "1",
            "PowerState": "On" if self.power[index] else "Off",
            "Boot": {
                "BootSourceOverrideTarget": target,
                "BootSourceOverrideEnabled": enabled,
                "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd"],
            },
            "Actions": {"#ComputerSystem.Reset": reset},
            "EthernetInterfaces": {"@odata.id": SYSTEM + "/EthernetInterfaces"},
        }


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, just enough for Redfish clients."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        mode = self.fleet.modes[self.index]
        if mode == "garbage":
            self.transport.write(b"\x00\x17\xffthis is no HTTP\r\n\r\n")
            self.transport.close()
            return
        self.buffer += data
        while (request := self._next_request()) is not None:
            method, path, headers, body = request
            if mode == "half":
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 400\r\n\r\n{"PowerState": "O'
                )
                self.transport.close()
                return
            response = self._response(*self.fleet.handle(self.index, method, path, headers, body))
            if self.fleet.latency:
                asyncio.get_running_loop().call_later(self.fleet.latency, self._write, response)
            else:
                self._write(response)

    def _write(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)

    def _next_request(self):
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if len(self.buffer) < end + 4 + length:
            return None
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        method, path, _version = (lines[0].split(" ") + ["", ""])[:3]
        return method, path, headers, body

    @staticmethod
    def _response(status: int, document, extra: dict) -> bytes:
        if document is None:
            payload = b""
        elif isinstance(document, str):
            payload = document.encode()
        else:
            payload = json.dumps(document).encode()
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
        kind = "text/html" if isinstance(document, str) else "application/json"
        head += [f"Content-Type: {kind}", f"Content-Length: {len(payload)}"]
        head += [f"{name}: {value}" for name, value in extra.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def serve(fleet: Fleet, port: int, first: int = 100) -> list:
    """Listen for every BMC of the fleet; return what keeps them open."""
    loop = asyncio.get_running_loop()
    keep: list = []
    for index, mode in enumerate(fleet.modes):
        host = address(index, first)
        if mode == "closed":
            continue
        if mode == "silent":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)  # accepted by the kernel, never read: only a timeout ends it
            keep.append(sock)
            continue
        server = await loop.create_server(
            lambda index=index: _Connection(fleet, index), host, port, reuse_address=True
        )
        keep.append(server)
    return keep


def _raise_fd_limit(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, count + 4096) if hard != resource.RLIM_INFINITY else count + 4096
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _main(args: argparse.Namespace) -> None:
    modes = plan(args.count, args.dead, args.seed)
    for item in args.special:
        index, _, mode = item.partition("=")
        if mode not in MODES:
            raise SystemExit(f"redfish_fleet: unknown mode {mode!r} (modes: {', '.join(MODES)})")
        modes[int(index)] = mode
    fleet = Fleet(modes, latency=args.latency, username=args.user, password=args.password)
    _raise_fd_limit(args.count)
    keep = await serve(fleet, args.port, args.first)
    print(f"ready {args.count} {address(0, args.first)}-{address(args.count - 1, args.first)}")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for item in keep:
        item.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="redfish_fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--dead", type=float, default=0.0, help="share of dead BMCs (0-1)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--first", type=int, default=100, help="second byte of the addresses")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--special", action="append", default=[], metavar="INDEX=MODE")
    args = parser.parse_args(argv)
    try:  # uvloop where installed: the fleet shares the machine with the client it serves
        import uvloop
    except ImportError:
        asyncio.run(_main(args))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_main(args))


if __name__ == "__main__":
    main()
