"""What every remote-control driver offers, and what a fan-out returns per node.

A driver is an object with four coroutines, each about one node's BMC::

    class Driver(Protocol):
        async def status(self, target) -> str                 # "on", "off", …
        async def power(self, target, action) -> str          # what was asked of the BMC
        async def bootdev(self, target, device, persistent) -> str
        async def macs(self, target) -> list[Nic]

A driver raises :class:`dim.errors.PowerError` for anything that went wrong with that node
(refused login, garbage, half an answer, an action the BMC does not offer); the fan-out turns
it, like a timeout, into that node's :class:`PowerResult`. Drivers keep what they share
between nodes (an HTTP connection pool, an SNMP engine) and release it in ``close``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dim.power.credentials import Credential

ACTIONS = ("on", "off", "reset", "cycle", "soft")
"""on, off (hard), reset (hard reset, power stays on), cycle (off then on), soft (ACPI shutdown)"""

DEVICES = ("pxe", "disk")


@dataclass(frozen=True, slots=True)
class Target:
    """One node's BMC as the layout declares it, with its credentials entry resolved."""

    node: str
    driver: str
    address: str
    credential: Credential | None = None


@dataclass(frozen=True, slots=True)
class Nic:
    """A network interface a BMC reports for its host."""

    name: str  # the BMC's own id for it, e.g. Redfish's EthernetInterface Id
    mac: str  # lower case, colon separated


@dataclass(frozen=True, slots=True)
class PowerResult:
    """One node's outcome. ``outcome`` is what people read and what results are grouped by."""

    node: str
    driver: str
    address: str
    ok: bool
    outcome: str  # "on", "off", "off requested", "pxe once", "2 NICs", "error (timeout)"
    message: str | None = None  # detail of an error, never a secret
    state: str | None = None  # status: the power state
    macs: tuple[Nic, ...] = ()
    attempts: int = 1
    seconds: float = 0.0
    kind: str | None = None  # error kind, see PowerError

    def record(self) -> dict:
        """One object of ``--json`` output."""
        data = {
            "node": self.node,
            "driver": self.driver,
            "bmc": self.address,
            "ok": self.ok,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
        }
        if self.state is not None:
            data["state"] = self.state
        if self.kind is not None:
            data["error"] = self.kind
            data["message"] = self.message
        if self.macs:
            data["macs"] = [{"name": n.name, "mac": n.mac} for n in self.macs]
        return data


@dataclass(frozen=True, slots=True)
class FanoutOptions:
    """How a fan-out runs. Here rather than in :mod:`fanout` (which offers it too) so that a
    caller can choose them without importing asyncio and the fan-out."""

    concurrency: int = 100
    timeout: float = 10.0
    retries: int = 1
    workers: int = 0  # processes; 0: one per core from PROCESS_THRESHOLD targets on


class Driver(Protocol):
    name: str

    async def status(self, target: Target) -> str: ...

    async def power(self, target: Target, action: str) -> str: ...

    async def bootdev(self, target: Target, device: str, persistent: bool) -> str: ...

    async def macs(self, target: Target) -> list[Nic]: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Summary:
    """Results grouped for people: ``{(outcome, message): [nodes]}`` in first-seen order."""

    groups: dict[tuple[str, str | None], list[str]] = field(default_factory=dict)
    failed: int = 0
    total: int = 0


def summarize(results: Sequence[PowerResult]) -> Summary:
    summary = Summary(total=len(results))
    for result in results:
        summary.groups.setdefault((result.outcome, result.message), []).append(result.node)
        if not result.ok:
            summary.failed += 1
    return summary
