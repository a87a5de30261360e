"""Node-set selection on the 2,576-blade example, and how fast an oversized node set fails.

    .venv/bin/python bench/nodesets.py [--src DIR] [--repeat 9] [--layout examples/bladecenter.xml]

Prints the median (and min) milliseconds of :func:`dim.inventory.select` per pattern, over
``--repeat`` runs after one warm-up, then the time ``select`` and the whole ``dim node list``
take to refuse ``n[1-100000000]``. ``--src`` measures the ``dim`` package in DIR (e.g. a
``git archive`` of an older commit) instead of the one on ``sys.path``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

PATTERNS = (
    ("@all", None),
    ("@blades", None),
    ("s[01-46]c[1-4]b[01-14]", None),
    ("s[01-23]c[1-4]b[01-14]!s01c1b01", None),
    ("@all", "s[01-10]c[1-4]b[01-14]"),
    ("s07c3b11", None),
    ("s[01-04]c1b[01-14],s05c[1-4]b01", None),
)
HUGE = "n[1-100000000]"


def _timed(call, repeat: int) -> list[float]:
    call()  # warm-up: imports, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _refusal_ms(call) -> float:
    start = time.perf_counter()
    try:
        status = call()
    except Exception as exc:  # noqa: BLE001 - the bench reports whatever the refusal is
        elapsed = (time.perf_counter() - start) * 1000
        print(f"    refused: {type(exc).__name__}: {exc}")
        return elapsed
    elapsed = (time.perf_counter() - start) * 1000
    print(f"    returned {status if isinstance(status, int) else 'a result'}")
    return elapsed


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--src", type=Path)
    args.add_argument("--repeat", type=int, default=9)
    args.add_argument("--layout", type=Path, default=Path("examples/bladecenter.xml"))
    args.add_argument("--huge", action="store_true", help="also time the refusal of " + HUGE)
    opts = args.parse_args()
    if opts.src:
        sys.path.insert(0, str(opts.src.resolve()))
    from dim import layout  # noqa: F401
    from dim.inventory import select
    from dim.layout.parser import load

    cluster = load(opts.layout)
    print(f"{len(cluster.nodes)} nodes, dim from {sys.modules['dim'].__file__}")
    print("| pattern | exclude | nodes | median ms | min ms |")
    print("|---|---|---:|---:|---:|")
    for pattern, exclude in PATTERNS:
        count = len(select(cluster, pattern, exclude))
        times = _timed(lambda p=pattern, x=exclude: select(cluster, p, x), opts.repeat)
        print(
            f"| `{pattern}` | {f'`{exclude}`' if exclude else ''} | {count} | "
            f"{statistics.median(times):.2f} | {min(times):.2f} |"
        )
    if opts.huge:
        print(f"select(cluster, {HUGE!r}):")
        print(f"    {_refusal_ms(lambda: select(cluster, HUGE)):.1f} ms")
        from dim.cli import main as dim

        with tempfile.TemporaryDirectory() as state:
            argv = ["--config", str(opts.layout), "--state", state, "node", "list", HUGE]
            print(f"dim node list {HUGE!r} (in process):")
            print(f"    {_refusal_ms(lambda: dim(argv)):.1f} ms")


if __name__ == "__main__":
    main()
