"""The boot storm's cluster (bench/storm.py): its addresses, its nodes' names, MACs and
addresses, the stages of a node's boot, and what the simulator records of each node.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

SERVER = "10.77.0.1"
RELAY = "10.77.0.2"
BRIDGE = "br0"
PER_SUBNET = 250
HTTP_PORT = 8080
STAGES = {
    "http": ("dhcp", "loader", "dhcp2", "script", "kernel", "mount", "reads"),
    "tftp": ("dhcp", "loader", "script", "kernel", "mount", "reads"),
}


def stages(boot: str, until: str = "reads") -> tuple[str, ...]:
    """The stages of boot path ``boot`` up to ``until``, that one included."""
    every = STAGES[boot]
    return every[: every.index(until) + 1]


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def node_name(number: int) -> str:
    return f"n{number:05}"


def node_mac(number: int) -> str:
    return "52:54:01:{:02x}:{:02x}:{:02x}".format(*number.to_bytes(3, "big"))


def node_address(number: int) -> str:
    return f"10.77.{1 + (number - 1) // PER_SUBNET}.{1 + (number - 1) % PER_SUBNET}"


@dataclass
class Node:
    number: int
    name: str
    mac: str
    address: str
    ends: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    retries: dict = field(default_factory=dict)
    bytes: dict = field(default_factory=dict)
    past_rom: dict = field(default_factory=dict)  # DHCP stage: needed the second round
    failed_at: str = ""
    error: str = ""

    def done(self, stage: str, start: float, began: float, end: float, retries: int = 0):
        self.ends[stage] = end - start
        self.latency[stage] = end - began
        self.retries[stage] = retries


class Failed(Exception):
    pass
