"""The fan-out with a fake driver at its one seam: bounds, budgets, retries, results per node.

The real drivers meet real simulators in tests/integration/test_power_*.py.
"""

from __future__ import annotations

import asyncio

from dim.errors import PowerError
from dim.power import fanout
from dim.power.fanout import FanoutOptions
from dim.power.interface import Target


class FakeDriver:
    """Answers after ``delay`` seconds; 'dead' nodes never answer; others fail on demand."""

    name = "fake"

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.running = 0
        self.most = 0
        self.calls: dict[str, int] = {}
        self.finished: list[str] = []  # nodes in the order their calls ended
        self.closed = False

    async def status(self, target: Target) -> str:
        self.calls[target.node] = self.calls.get(target.node, 0) + 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if target.address == "dead":
                await asyncio.sleep(3600)
            await asyncio.sleep(self.delay)
            if target.address == "flaky" and self.calls[target.node] == 1:
                raise PowerError("unreachable", "connection refused", retryable=True)
            if target.address == "badpass":
                raise PowerError("auth", "login refused (HTTP 401)")
            if target.address == "bug":
                raise KeyError("PowerState")
            return "on"
        finally:
            self.running -= 1
            self.finished.append(target.node)

    async def close(self) -> None:
        self.closed = True


def run(targets, options, driver):
    return asyncio.run(fanout.run(targets, fanout.status, options, factory=lambda n, o: driver))


def nodes(*addresses: str) -> list[Target]:
    return [Target(f"n{i:03d}", "fake", a) for i, a in enumerate(addresses)]


def test_concurrency_is_bounded_and_every_node_gets_a_result_in_order():
    driver = FakeDriver()
    results = run(nodes(*["ok"] * 50), FanoutOptions(concurrency=7), driver)
    assert driver.most == 7
    assert [r.node for r in results] == [f"n{i:03d}" for i in range(50)]
    assert all(r.ok and r.outcome == "on" and r.state == "on" for r in results)
    assert driver.closed


def test_a_dead_bmc_costs_its_timeout_and_does_not_slow_the_others():
    driver = FakeDriver(delay=0.01)
    done: list[int] = []
    results = asyncio.run(
        fanout.run(
            nodes("dead", *["ok"] * 40),
            fanout.status,
            FanoutOptions(concurrency=4, timeout=0.5),
            progress=lambda count, total: done.append(count),
            factory=lambda n, o: driver,
        )
    )
    dead, *alive = results
    assert dead.outcome == "error (timeout)" and dead.message == "no answer within 0.5 s"
    assert dead.attempts == 1 and 0.5 <= dead.seconds < 2 * 0.5  # its budget, once
    assert len(alive) == 40 and all(r.ok for r in alive)
    # The 40 live nodes (10 ms each, on the 3 other slots) all ended before the dead one gave
    # up: it held its own slot and nothing else.
    assert driver.finished[-1] == "n000"
    assert sorted(driver.finished[:-1]) == [f"n{i:03d}" for i in range(1, 41)]
    assert done == list(range(1, 42))


def test_quick_failures_are_retried_within_the_budget_and_refusals_are_not():
    driver = FakeDriver()
    flaky, badpass = run(nodes("flaky", "badpass"), FanoutOptions(retries=2), driver)
    assert flaky.ok and flaky.attempts == 2
    assert not badpass.ok and badpass.attempts == 1 and badpass.kind == "auth"


def test_no_retry_when_retries_is_zero():
    (flaky,) = run(nodes("flaky"), FanoutOptions(retries=0), FakeDriver())
    assert flaky.outcome == "error (unreachable)" and flaky.attempts == 1


def test_a_library_surprise_is_one_node_error_not_a_crash():
    bug, ok = run(nodes("bug", "ok"), FanoutOptions(), FakeDriver())
    assert bug.kind == "protocol" and "KeyError" in bug.message
    assert ok.ok


def test_an_unknown_driver_is_a_per_node_error():
    target = Target("n1", "telnet", "10.0.0.1")
    (result,) = asyncio.run(fanout.run([target], fanout.status, FanoutOptions()))
    assert result.outcome == "error (config)" and "unknown driver 'telnet'" in result.message


def test_progress_is_reported_once_per_node():
    seen = []
    asyncio.run(
        fanout.run(
            nodes(*["ok"] * 5),
            fanout.status,
            FanoutOptions(),
            progress=lambda done, total: seen.append((done, total)),
            factory=lambda n, o: FakeDriver(),
        )
    )
    assert seen == [(i, 5) for i in range(1, 6)]


def test_the_fd_limit_is_raised_towards_what_a_run_needs():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert fanout.raise_fd_limit(min(hard, soft + 10)) == min(hard, soft + 10)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
