"""Run one operation on thousands of BMCs: bounded concurrency, a time budget per node, retries.

::

    results = execute(targets, status, FanoutOptions(concurrency=200, timeout=2.0))
    # [PowerResult(node='n0001', ok=True, outcome='on', …), …] in the order of targets

Each node gets at most ``timeout`` seconds from the moment it gets a slot, retries included:
a dead BMC costs its own slot that long and nothing else, so 10,000 nodes of which 500 are dead
take about ``(10,000 / concurrency) × latency + timeout`` rather than 500 timeouts. Quick
failures that may heal (connection refused or reset, HTTP 5xx, a dropped UDP answer) are
retried within the budget, ``retries`` times at most; a refused password or a garbage answer
is not. One node's failure is its result: nothing here raises for a node.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from dim.errors import PowerError
from dim.power.interface import Driver, Nic, PowerResult, Target

DRIVERS = ("ipmi", "redfish", "snmp")
RETRY_PAUSE = 0.2  # seconds before the first retry; doubled each time


@dataclass(frozen=True, slots=True)
class FanoutOptions:
    concurrency: int = 100
    timeout: float = 10.0
    retries: int = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation returns for one node when it worked."""

    outcome: str
    state: str | None = None
    macs: tuple[Nic, ...] = ()


Operation = Callable[[Driver, Target], Awaitable[Outcome]]
Progress = Callable[[int, int], None]


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def make_driver(name: str, options: FanoutOptions) -> Driver:
    """The driver for a protocol name; imported here so that a run pays only for its own."""
    if name == "redfish":
        from dim.power.redfish import RedfishDriver

        return RedfishDriver(limit=options.concurrency)
    if name == "ipmi":
        from dim.power.ipmi import IpmiDriver

        return IpmiDriver()
    if name == "snmp":
        from dim.power.snmp import SnmpDriver

        return SnmpDriver()
    raise PowerError(
        "config",
        f"unknown driver {name!r}",
        hint=f"the drivers are {', '.join(DRIVERS)}",
    )


class _Drivers:
    """One driver per protocol for the whole run, made when a node first needs it."""

    def __init__(self, options: FanoutOptions, factory: Callable[[str, FanoutOptions], Driver]):
        self.options = options
        self.factory = factory
        self.made: dict[str, Driver] = {}

    def get(self, name: str) -> Driver:
        if name not in self.made:
            self.made[name] = self.factory(name, self.options)
        return self.made[name]

    async def close(self) -> None:
        for driver in self.made.values():
            await driver.close()


async def run(
    targets: Sequence[Target],
    operation: Operation,
    options: FanoutOptions,
    progress: Progress | None = None,
    factory: Callable[[str, FanoutOptions], Driver] = make_driver,
) -> list[PowerResult]:
    """Run ``operation`` on every target; one result per target, in order."""
    raise_fd_limit(options.concurrency * 2 + 256)
    slots = asyncio.Semaphore(max(1, options.concurrency))
    drivers = _Drivers(options, factory)
    done = 0

    async def one(target: Target) -> PowerResult:
        nonlocal done
        async with slots:
            result = await _node(target, operation, drivers, options)
        done += 1
        if progress is not None:
            progress(done, len(targets))
        return result

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        await drivers.close()


def execute(
    targets: Sequence[Target],
    operation: Operation,
    options: FanoutOptions,
    progress: Progress | None = None,
) -> list[PowerResult]:
    """:func:`run` from synchronous code (the CLI)."""
    return asyncio.run(run(targets, operation, options, progress))


async def _node(
    target: Target, operation: Operation, drivers: _Drivers, options: FanoutOptions
) -> PowerResult:
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + options.timeout
    attempts = 0
    pause = RETRY_PAUSE
    while True:
        attempts += 1
        try:
            async with asyncio.timeout_at(deadline):
                done = await operation(drivers.get(target.driver), target)
            return _result(target, start, attempts, done=done)
        except TimeoutError:
            error = PowerError("timeout", f"no answer within {options.timeout:g} s")
        except PowerError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a library's surprise is one node's error
            error = PowerError("protocol", f"unexpected {type(exc).__name__}: {exc}")
        left = deadline - loop.time()
        if not error.retryable or attempts > options.retries or left <= pause:
            return _result(target, start, attempts, error=error)
        await asyncio.sleep(pause)
        pause *= 2


def _result(
    target: Target,
    start: float,
    attempts: int,
    *,
    done: Outcome | None = None,
    error: PowerError | None = None,
) -> PowerResult:
    seconds = asyncio.get_running_loop().time() - start
    common = {
        "node": target.node,
        "driver": target.driver,
        "address": target.address,
        "attempts": attempts,
        "seconds": seconds,
    }
    if done is not None:
        return PowerResult(
            ok=True, outcome=done.outcome, state=done.state, macs=done.macs, **common
        )
    assert error is not None
    return PowerResult(
        ok=False,
        outcome=f"error ({error.kind})",
        message=error.message,
        kind=error.kind,
        **common,
    )


# -- operations ------------------------------------------------------------------------------


async def status(driver: Driver, target: Target) -> Outcome:
    state = await driver.status(target)
    return Outcome(state, state=state)


def power(action: str) -> Operation:
    async def operation(driver: Driver, target: Target) -> Outcome:
        await driver.power(target, action)
        return Outcome(f"{action} requested")

    return operation


def bootdev(device: str, persistent: bool) -> Operation:
    async def operation(driver: Driver, target: Target) -> Outcome:
        await driver.bootdev(target, device, persistent)
        return Outcome(f"{device} {'persistent' if persistent else 'once'}")

    return operation


async def discover(driver: Driver, target: Target) -> Outcome:
    nics = tuple(await driver.macs(target))
    if not nics:
        return Outcome("no NICs reported")
    return Outcome(f"{len(nics)} NIC{'s' if len(nics) > 1 else ''}", macs=nics)
