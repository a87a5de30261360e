"""A workload for lab nodes that fail over, run by tests/e2e/test_failover.py and bench/failover.py.

`LOOP` is the node's workload: every half second it starts programs from the read-only root,
reads files there and in its persistent part, reads one more byte of a file it holds open on
the root and writes one more line through a file it holds open on its read-write export, and
appends a numbered line with fsync to ``/root/lines``, stamped with the node's uptime. An
error of any step goes to ``/tmp/errors`` (tmpfs: it survives an NFS outage). Reading the
traces afterwards on the server's side (the node's replica) tells what the node lived through:

    >>> trace = Trace.parse("1 20.50\\n2 21.05\\n3 24.90\\n4 8.20\\n5 8.70\\n")
    >>> trace.numbers_ok, trace.longest_gap, trace.since(8.5).longest_gap
    (True, 3.85, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

LOOP = r"""#!/bin/sh
# dim failover workload: every 0.5 s programs from the root, reads, a numbered fsync'd line
echo $$ > /tmp/loop.pid
exec 3< /bin/busybox
exec 4>> /root/held
touch /root/lines
i=0
[ -s /root/lines ] && i=$(tail -n 1 /root/lines | cut -d' ' -f1)
while :; do
  i=$((i+1))
  { ls /bin /etc >/dev/null && head -c 65536 /bin/busybox >/dev/null \
    && tail -n 1 /root/lines >/dev/null && dd bs=1 count=1 <&3 >/dev/null 2>&1; } \
    || echo "$i READ-ERROR" >> /tmp/errors
  { echo "$i" >&4 && sync /root/held; } || echo "$i HELD-WRITE-ERROR" >> /tmp/errors
  read up _ < /proc/uptime
  { echo "$i $up" >> /root/lines && sync /root/lines; } || echo "$i WRITE-ERROR" >> /tmp/errors
  sleep 0.5
done
"""

START = "setsid sh /root/loop.sh </dev/null >/dev/null 2>&1 & echo started"
STOP = "kill $(cat /tmp/loop.pid)"
# what went wrong on the node: the workload's errors, and what the NFS client logged; the log's
# "[  94.33] " stamps become "kernel 94.33: ", or a reader of the console would take them for
# the kernel's own console messages and drop them
ERRORS = (
    "cat /tmp/errors 2>/dev/null; dmesg | grep -i -E 'nfs|stale' "
    "| grep -v -E 'Registering|Registered|ommand line' "
    "| sed 's/^\\[ *\\([0-9.]*\\)\\] /kernel \\1: /'; true"
)


@dataclass(frozen=True, slots=True)
class Trace:
    """The numbered lines a node wrote: whether every number is there once, in order, and the
    longest time between two lines (the node's uptime, so the host's clock plays no part)."""

    numbers: tuple[int, ...]
    stamps: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> Trace:
        numbers, stamps = [], []
        for line in text.splitlines():
            number, stamp = line.split()
            numbers.append(int(number))
            stamps.append(float(stamp))
        return cls(tuple(numbers), tuple(stamps))

    @property
    def numbers_ok(self) -> bool:
        return self.numbers == tuple(range(1, len(self.numbers) + 1))

    @property
    def longest_gap(self) -> float:
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        return round(max(gaps, default=0.0), 2)

    def since(self, uptime: float) -> Trace:
        """The lines written from ``uptime`` on, in the node's current boot (the trace goes
        on across reboots, its stamps starting again from zero), and the line before them,
        which starts a gap."""
        start = len(self.stamps)
        while start > 0 and self.stamps[start - 1] >= uptime:
            start -= 1
        first = max(0, start - 1)
        return Trace(self.numbers[first:], self.stamps[first:])
