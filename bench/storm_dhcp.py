"""A node's DHCP in the boot storm (bench/storm.py): the packets of a BIOS PXE ROM and of
iPXE, sent through one relay socket for every node, with the clients' own retry timing.

It runs as a process of its own (bench/storm_nodes.py starts it, a pool of one in
`storm_workers`): one node per line on stdin, ``NAME MAC ADDRESS pxe|ipxe``, one line per
node on stdout, ``NAME pxe|ipxe ok RETRIES PAST_ROM FILE`` or ``NAME pxe|ipxe fail RETRIES
ERROR``, and ``- CPU_SECONDS LAG_SECONDS`` at the end of stdin. As a thread of the nodes'
process it lost answers: 94,163 datagrams dropped for a full receive buffer and 6,148 of
10,000 nodes without an iPXE answer that Kea had sent, on a loaded machine (the thread shared
the interpreter with the loop of every node's stages)::

    python bench/storm_dhcp.py < nodes.txt
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import sys

from storm_cluster import RELAY, SERVER, Failed, Node
from storm_http import serve_lines


class Relay(asyncio.DatagramProtocol):
    """A DHCP relay agent on 10.77.0.2:67: one socket sends every node's DHCP packets with
    giaddr set, and the server answers it, whatever the node's MAC."""

    def __init__(self) -> None:
        self.waiting: dict[int, tuple[asyncio.Future, set[int]]] = {}
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, _address) -> None:
        if len(data) < 240:
            return
        xid = struct.unpack("!I", data[4:8])[0]
        future, types = self.waiting.get(xid, (None, set()))
        if future is not None and not future.done() and parse_reply(data).get("type") in types:
            future.set_result(data)

    def expect(self, xid: int, types: set[int]) -> asyncio.Future:
        """The next answer of one of these message types to transaction ``xid``."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[xid] = (future, types)
        return future

    def send(self, packet: bytes) -> None:
        self.transport.sendto(packet, (SERVER, 67))

    def forget(self, xid: int) -> None:
        self.waiting.pop(xid, None)


PXE_CLASS = b"PXEClient:Arch:00000:UNDI:002001"


def dhcp_packet(mac: str, xid: int, kind: int, ipxe: bool, offer: dict | None = None) -> bytes:
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    header = struct.pack("!BBBBIHH4s4s4s4s", 1, 1, 6, 1, xid, 0, 0, b"\0" * 4, b"\0" * 4,
                         b"\0" * 4, socket.inet_aton(RELAY))  # fmt: skip
    options = [(53, bytes([kind])), (93, b"\0\0"), (94, b"\1\2\1"), (60, PXE_CLASS)]
    options.append((55, bytes([1, 3, 6, 12, 15, 17, 43, 60, 66, 67, 119, 128, 175])))
    if ipxe:  # iPXE's own DHCP: its user class and its feature flags (175)
        options += [(77, b"iPXE"), (175, b"\x13\x01\x01\x15\x01\x01\x10\x01\x02")]
    if offer is not None:
        options += [(50, socket.inet_aton(offer["yiaddr"])), (54, offer["server"])]
    body = b"".join(bytes([code, len(value)]) + value for code, value in options)
    return header + chaddr + b"\0" * 192 + b"\x63\x82\x53\x63" + body + b"\xff"


def parse_reply(data: bytes) -> dict:
    reply = {"yiaddr": socket.inet_ntoa(data[16:20]), "file": data[108:236].split(b"\0")[0]}
    index = 240
    while index < len(data) and data[index] != 255:
        if data[index] == 0:
            index += 1
            continue
        code, length = data[index], data[index + 1]
        value = data[index + 2 : index + 2 + length]
        if code == 53:
            reply["type"] = value[0]
        elif code == 54:
            reply["server"] = value
        elif code == 67:
            reply["file"] = value.rstrip(b"\0")
        index += 2 + length
    reply["file"] = reply["file"].decode(errors="replace")
    return reply


DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6
# Seconds a client waits for an answer before it sends again: a PXE ROM 4, 8, 16, 32 (the PXE
# specification; then it gives up, 60 s after power-on), iPXE 1, 2, 4, 8 (its default,
# config/dhcp.h). The simulator goes on for a second round (a BIOS that tries its boot order
# again), and counts the nodes that needed it: on hardware that does not, they fail.
PXE_WAITS = (4.0, 8.0, 16.0, 32.0)
IPXE_WAITS = (1.0, 2.0, 4.0, 8.0)
ROUNDS = 2


async def dhcp(relay: Relay, node: Node, ipxe: bool) -> tuple[dict, int, bool]:
    """DISCOVER until an OFFER, then REQUEST until an ACK, each sent again after each wait,
    with one transaction id throughout as PXE ROMs and iPXE keep it: a late answer to an
    earlier try counts. The ACK, the retries and whether the first round was not enough."""
    waits = (IPXE_WAITS if ipxe else PXE_WAITS) * ROUNDS
    xid = random.getrandbits(32)
    packet, answer = dhcp_packet(node.mac, xid, DISCOVER, ipxe), relay.expect(xid, {OFFER})
    retries, sent, past_rom = 0, 0, False
    try:
        while sent < len(waits):
            relay.send(packet)
            base = waits[sent]
            sent += 1
            wait = base + random.uniform(-1.0, 1.0) * min(1.0, base / 4)  # RFC 2131 4.1: spread
            try:
                data = await asyncio.wait_for(asyncio.shield(answer), wait)
            except TimeoutError:
                retries += 1
                past_rom |= sent >= len(waits) // ROUNDS
                continue
            reply = parse_reply(data)
            if reply["type"] == OFFER:
                packet = dhcp_packet(node.mac, xid, REQUEST, ipxe, reply)
                answer, sent = relay.expect(xid, {ACK, NAK}), 0
                continue
            if reply["type"] == NAK:
                raise Failed("DHCP NAK")
            if reply["yiaddr"] != node.address:
                raise Failed(f"DHCP gave {reply['yiaddr']}, not {node.address}")
            return reply, retries, past_rom
    finally:
        relay.forget(xid)
    raise Failed(f"no DHCP answer after {retries} tries")


async def open_relay() -> Relay:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: a burst of replies
    sock.bind((RELAY, 67))
    _, relay = await asyncio.get_running_loop().create_datagram_endpoint(Relay, sock=sock)
    return relay


async def answer(relay: Relay, line: str) -> None:
    name, mac, address, kind = line.split()
    node = Node(0, name, mac, address)
    try:
        reply, retries, past_rom = await dhcp(relay, node, ipxe=kind == "ipxe")
        outcome = f"ok {retries} {int(past_rom)} {reply['file'] or '-'}"
    except Failed as exc:
        outcome = f"fail 0 {exc}"
    sys.stdout.write(f"{name} {kind} {outcome}\n")
    sys.stdout.flush()


async def serve_nodes() -> None:
    """The nodes' DHCP, one per line of stdin, as they reach that stage, until its end (on
    the main loop of this process: DHCP's timers and its socket are all it serves)."""
    relay = await open_relay()
    await serve_lines(lambda line: answer(relay, line))


if __name__ == "__main__":
    asyncio.run(serve_nodes())
