"""A DNS client for the tests: one A or PTR question over UDP, the answers' data, stdlib only.

Run inside a namespace as a script (the tests' namespaces have no resolver to ask)::

    answers = resolve("ns-client", "node01.itest.dim", "10.77.0.1")      # ["10.77.0.11"]
    answers = resolve("ns-client", "11.0.77.10.in-addr.arpa", "10.77.0.1", "PTR")

An unknown name gives an empty list (an error code); no answer within the timeout is an error.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
from pathlib import Path

from dim.lab.netns import run

TYPES = {"A": 1, "PTR": 12}


def resolve(namespace: str, name: str, server: str, kind: str = "A") -> list[str]:
    """The answers of ``server`` to one question about ``name``, asked from ``namespace``."""
    argv = [sys.executable, str(Path(__file__).resolve()), name, server, kind]
    return json.loads(run(namespace, argv, timeout=20).stdout)


def query(name: str, kind: str = "A") -> tuple[int, bytes]:
    """A recursive question about ``name``: its id, and the packet."""
    ident = random.getrandbits(16)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return ident, struct.pack("!6H", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        "!2H", TYPES[kind], 1
    )


def answers(packet: bytes, ident: int) -> list[str]:
    """The data of each A or PTR record of the answer section; none for an error (NXDOMAIN,
    or SERVFAIL from a server with no upstream to ask, as in a test's namespace)."""
    got, flags, questions, count = struct.unpack("!4H", packet[:8])
    if got != ident:
        raise ValueError(f"answer to question {got}, not {ident}")
    if flags & 0xF:
        return []
    offset = 12
    for _ in range(questions):  # name, type, class
        offset = _skip_name(packet, offset) + 4
    found = []
    for _ in range(count):
        offset = _skip_name(packet, offset)
        kind, _, _, length = struct.unpack("!2HIH", packet[offset : offset + 10])
        offset += 10
        data = packet[offset : offset + length]
        if kind == 1:
            found.append(socket.inet_ntoa(data))
        elif kind == 12:
            found.append(_name(packet, offset))
        offset += length
    return found


def _skip_name(packet: bytes, offset: int) -> int:
    while packet[offset]:
        if packet[offset] >= 0xC0:  # a pointer ends the name
            return offset + 2
        offset += packet[offset] + 1
    return offset + 1


def _name(packet: bytes, offset: int) -> str:
    labels = []
    while packet[offset]:
        if packet[offset] >= 0xC0:
            offset = struct.unpack("!H", packet[offset : offset + 2])[0] & 0x3FFF
            continue
        labels.append(packet[offset + 1 : offset + 1 + packet[offset]].decode())
        offset += packet[offset] + 1
    return ".".join(labels)


def _main(name: str, server: str, kind: str) -> None:
    ident, packet = query(name, kind)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(packet, (server, 53))
        print(json.dumps(answers(sock.recv(4096), ident)))


if __name__ == "__main__":
    _main(*sys.argv[1:4])
