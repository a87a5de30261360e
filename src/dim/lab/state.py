"""``lab.json``: what a lab runs, by process id, so that a later command finds and stops it.

A `LabState` is a frozen record; a change makes a new one (``with_daemon``, ``with_node``,
``without_node``…) that the caller saves at once, so that ``lab.json`` always lists every
process started so far, even when the command that started them fails half-way::

    state = LabState("/var/tmp/dim-lab", "dimlab", "dnsmasq")
    state = state.with_daemon(Process("ganesha", 4242, "logs/ganesha.log"))
    state.save()                                   # written atomically (temp file, rename)
    LabState.load(Path("/var/tmp/dim-lab")).daemons[0].pid == 4242
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dim.errors import LabError
from dim.lab import network
from dim.lab.network import NAMESPACE
from dim.lab.processes import Process


@dataclass(frozen=True, slots=True)
class LabState:
    """What ``lab.json`` records: the lab's folder, namespace, DHCP flavour and processes.

    ``daemons`` in start order (stopped in reverse); ``nodes`` the QEMU nodes by name. The
    ``nodes`` mapping is never changed in place: each ``with_…`` copies it.
    """

    directory: str
    namespace: str = NAMESPACE
    flavour: str = "dnsmasq"
    daemons: tuple[Process, ...] = ()
    nodes: Mapping[str, Process] = field(default_factory=dict)
    servers: tuple[str, ...] = ()  # with several servers: their names (one namespace each)
    # the state DB's URL when the lab runs a PostgreSQL server (dim.lab.postgres); "" for
    # state.db in the lab's state folder. Every dim the lab runs, and `dim lab env`, use it.
    database: str = ""
    # "ceph" when the state folder is a CephFS of the lab's own Ceph cluster (dim.lab.store);
    # "" for the shared folder of the host
    store: str = ""

    @property
    def folder(self) -> Path:
        return Path(self.directory)

    def with_daemon(self, process: Process) -> LabState:
        """This state with ``process`` in place of the daemon of the same name, or added."""
        names = [d.name for d in self.daemons]
        if process.name in names:
            index = names.index(process.name)
            daemons = (*self.daemons[:index], process, *self.daemons[index + 1 :])
        else:
            daemons = (*self.daemons, process)
        return dataclasses.replace(self, daemons=daemons)

    def with_node(self, name: str, process: Process) -> LabState:
        return dataclasses.replace(self, nodes={**self.nodes, name: process})

    def without_node(self, name: str) -> LabState:
        return dataclasses.replace(self, nodes={k: v for k, v in self.nodes.items() if k != name})

    def without_processes(self) -> LabState:
        return dataclasses.replace(self, daemons=(), nodes={})

    def daemon(self, name: str) -> Process | None:
        return next((d for d in self.daemons if d.name == name), None)

    def save(self) -> None:
        path = self.folder / "lab.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1))
        os.replace(temporary, path)

    @classmethod
    def load(cls, folder: Path) -> LabState | None:
        """The state saved in ``folder``, or None if no lab was ever up there."""
        try:
            data = json.loads((folder / "lab.json").read_text())
        except FileNotFoundError:
            return None
        return cls(
            data["directory"],
            data["namespace"],
            data["flavour"],
            tuple(Process(**d) for d in data["daemons"]),
            {k: Process(**v) for k, v in data["nodes"].items()},
            tuple(data.get("servers", ())),
            data.get("database", ""),  # absent from the lab.json of an older dim
            data.get("store", ""),
        )

    @classmethod
    def running(cls, folder: Path) -> LabState:
        """The state of the lab up in ``folder``; `LabError` if none is."""
        state = cls.load(folder)
        if state is None or not network.exists(state.namespace):
            raise LabError(f"no lab is up in {folder}", hint="dim lab up starts one")
        return state


def database(folder: Path) -> str | None:
    """The state DB's URL of the lab in ``folder``; None for its state folder's state.db (or
    no lab there yet)."""
    state = LabState.load(folder)
    return (state.database or None) if state is not None else None


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the lab's lock while reading, changing and saving ``lab.json``.

    The lab's simulated BMCs power nodes on and off from processes of their own, as many at
    once as ``dim power reset @all`` asks: without the lock, two of them would each save a
    state without the other's node. Not re-entrant: take it once per change.
    """
    with open(folder / "lab.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
