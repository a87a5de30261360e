"""CPU seconds of other processes, from /proc: the benches' measure of daemons they did not
start as children (Ceph's, ganesha, ceph-fuse)::

    from proc_cpu import cpu_seconds
    before = cpu_seconds(pids); work(); used = cpu_seconds(pids) - before
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` so far; a process gone counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        except (FileNotFoundError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK
