"""dim bench: wall and CPU time of each phase of a ``dim`` command, written as JSON.

Run by hand, never as a test: put this folder on ``PYTHONPATH`` and name the output file::

    DIM_PHASES=/tmp/phases.json PYTHONPATH=src:bench/phases .venv/bin/dim … apply …

Each phase is ``[wall seconds, CPU seconds of the process]``, summed over its calls; ``total``
is from start-up to exit, ``user_sys`` the process's user and system time. The wrapped
functions are those a full ``dim apply`` spends its time in (docs/benchmarks.md, issue 14's
full apply); the hook adds microseconds.
"""

import atexit
import importlib
import json
import os
import resource
import time

_PATH = os.environ.get("DIM_PHASES")
PHASES = [
    ("dim.layout.parser", None, "parse", "expand"),
    ("dim.layout_cache", None, "store", "layout_cache"),
    ("dim.services.render", None, "render_all", "render"),
    ("dim.services.apply", None, "plan", "plan"),
    ("dim.services.apply", None, "write", "write"),
    ("dim.services.manifest", "Manifest", "intend", "manifest_intend"),
    ("dim.services.manifest", "Manifest", "record", "manifest_record"),
    ("dim.services.applied", None, "write", "applied_write"),
    ("dim.actions.boot_targets", None, "refresh", "boot_targets"),
    ("dim.images.store", "Store", "make_node_folders", "node_folders"),
]
_phases: dict[str, list[float]] = {}
_start = (time.perf_counter(), time.process_time())


def _wrap(module: str, owner: str | None, name: str, phase: str) -> None:
    found = importlib.import_module(module)
    holder = getattr(found, owner) if owner else found
    inner = getattr(holder, name)

    def timed(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent = _phases.setdefault(phase, [0.0, 0.0])
            spent[0] += time.perf_counter() - wall
            spent[1] += time.process_time() - cpu

    setattr(holder, name, timed)


def _save() -> None:
    _phases["total"] = [time.perf_counter() - _start[0], time.process_time() - _start[1]]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _phases["user_sys"] = [usage.ru_utime, usage.ru_stime]
    with open(_PATH, "w") as handle:
        json.dump(_phases, handle)


if _PATH:
    for spec in PHASES:
        _wrap(*spec)
    atexit.register(_save)
