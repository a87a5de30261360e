"""A lab node's simulated BMC: its power buttons are the lab's own (`dim.lab.cluster`).

``dim power on|off|reset NODE`` reaches this process over IPMI (pyghmi's client, dim's real
driver); it powers the node as ``dim lab boot`` does, so that both ways of powering a node
agree on what runs: ``on`` starts the node's QEMU with the firmware it last booted with,
``off`` stops it by process id, ``reset`` restarts it, status is "its QEMU runs"::

    python -m dim.lab.bmcpower --dir /var/tmp/dim-lab --node node01 \\
        --address 127.0.10.1 --user admin --password-file /var/tmp/dim-lab/bmc-password

`dim.lab.bmcs` starts one per node (``dim lab up``). Stopping the BMC leaves the node as it is.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from dim.lab import cluster
from dim.lab.bmcsim import CallbackBmc
from dim.lab.processes import alive
from dim.lab.state import LabState


class LabPower:
    """The power of one lab node, through the lab's state (``lab.json``)."""

    def __init__(self, folder: Path, node: str) -> None:
        self.folder, self.node = folder, node

    def say(self, message: str) -> None:
        print(message, flush=True)

    def running(self) -> bool:
        state = LabState.load(self.folder)
        process = state.nodes.get(self.node) if state else None
        return process is not None and alive(process.pid)

    def start(self) -> None:
        firmware = cluster.last_firmware(self.folder, self.node)
        cluster.boot(self.folder, [self.node], firmware=firmware, say=self.say)

    def stop(self) -> None:
        cluster.power_off(self.folder, [self.node], say=self.say)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bmcpower", description="A lab node's IPMI BMC.")
    parser.add_argument("--dir", type=Path, required=True, help="the lab's folder")
    parser.add_argument("--node", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=623)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password-file", type=Path, required=True)
    args = parser.parse_args(argv)
    power = LabPower(args.dir, args.node)
    server = CallbackBmc(
        {args.user: args.password_file.read_text().strip()},
        address=args.address,
        port=args.port,
        on=power.start,
        off=power.stop,
        reset=power.start,  # the lab's boot restarts a running node
        is_on=power.running,
    )
    signal.signal(signal.SIGTERM, lambda _signum, _frame: os._exit(0))
    print(f"bmcpower listening on {args.address}:{args.port} for {args.node}", flush=True)
    server.listen()


if __name__ == "__main__":
    main()
