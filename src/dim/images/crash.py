"""Crash points: where the crash tests stop dim, to prove that the next command completes.

    >>> crash_point("after-record")     # nothing happens unless DIM_TEST_CRASH_AT says so

``DIM_TEST_CRASH_AT=NAME[:N]`` SIGKILLs dim the N-th time (default: the first) it passes the
point NAME. The points, in the order of a commit (see :mod:`dim.images.commit`):

- ``after-record``: version N is complete, live untouched;
- ``mid-live``: a file of live linked to its temporary name, not yet renamed over the old one
  (:mod:`dim.images.links`);
- ``mid-replicas``: the same in a node replica: the new copy written, not yet renamed
  (:mod:`dim.images.replicas`);
- ``mid-fold``: ``gc`` folding a removed version into the next one, a file moved
  (:mod:`dim.images.fold`).
"""

from __future__ import annotations

import os
import signal

_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Crash tests only: ``DIM_TEST_CRASH_AT=NAME[:N]`` SIGKILLs dim the N-th time it is here."""
    wanted = os.environ.get("DIM_TEST_CRASH_AT")
    if wanted is None or wanted.partition(":")[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(wanted.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)
