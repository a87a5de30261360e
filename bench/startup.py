"""Start-up: dim's everyday commands as whole processes, against `nodeset -c` and `python -c pass`.

    .venv/bin/python bench/startup.py [--runs 21] [--layout examples/bladecenter.xml] [--top 6]
                                      [--before DIR] [--callgrind]

Times, in the same run and alternated (each round in a rotated order), ``nodeset -c n[1-100]``
(ClusterShell's own tool, the yardstick of issue 14), ``python -c pass``, ``dim --version``,
``dim --help``, ``dim node --help`` (a family's help: click and the family's module),
``dim layout check`` and ``dim node list s01c1b01`` on the 2,576-blade
example, with a fresh state folder (no state DB) and with every blade's MAC recorded, warm (the
validated-layout cache of these bytes there) and cold (removed before each run: the first
command after cluster.xml changed: its answer out, it leaves the cache's writing to a child
that it does not wait for, and the bench waits for that child's cache before the next
command); the
``dim`` commands run as ``python -m dim`` from this tree, and ``--version`` also through the
venv's console script (the shipped way: tests/e2e/test_wheel.py). Prints the median and the
minimum of ``--runs`` runs per command and its ratio to ``python -c pass``, then the top
import costs per command (``python -X importtime``) and where ``layout check`` spends its
time in process (imports, XML and schema, expansion and checks, state and summary).
``--before DIR`` also times the dim commands of the tree in DIR (e.g. made by ``git archive
main src | tar -x -C /tmp/before``), alternated with the others: a before/after in one run.
``--callgrind`` then counts the instructions of one run of each command under valgrind
(``Collected``): figures that a busy machine does not move.

Bytecode is cached, as in an installed wheel, under a temporary PYTHONPYCACHEPREFIX (the
source tree stays clean; PYTHONDONTWRITEBYTECODE is dropped for the children).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TREE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COLD = " (cold)"


def _environment(cache: str, tree: Path = TREE) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree / "src")
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def _commands(layout: Path, fresh: Path, recorded: Path, cold: Path) -> dict[str, list[str]]:
    dim = [sys.executable, "-m", "dim", "--config", str(layout)]
    commands = {
        "nodeset -c n[1-100]": [str(BIN / "nodeset"), "-c", "n[1-100]"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import click'": [sys.executable, "-c", "import click"],
        "dim --version": [sys.executable, "-m", "dim", "--version"],
        "dim --help": [sys.executable, "-m", "dim", "--help"],
        "dim node --help": [sys.executable, "-m", "dim", "node", "--help"],
        "dim layout check (fresh state)": [*dim, "--state", str(fresh), "layout", "check"],
        "dim layout check (MACs recorded)": [*dim, "--state", str(recorded), "layout", "check"],
        "dim node list s01c1b01": [*dim, "--state", str(recorded), "node", "list", "s01c1b01"],
        # cold: the first run after cluster.xml changed (the validated-layout cache removed
        # before each run: layout check writes it, node list parses in full and writes it)
        f"dim layout check (MACs recorded){COLD}": [
            *dim,
            "--state",
            str(cold),
            "layout",
            "check",
        ],
        f"dim node list s01c1b01{COLD}": [
            *dim,
            "--state",
            str(cold),
            "node",
            "list",
            "s01c1b01",
        ],
    }
    if (BIN / "dim").exists():
        commands["dim --version (console script)"] = [str(BIN / "dim"), "--version"]
    return commands


def _record_macs(layout: Path, state: Path, env: dict[str, str]) -> None:
    """Every blade's MAC in the state DB, as on a site in production."""
    sys.path.insert(0, str(TREE / "src"))
    from dim.layout.parser import load

    rows = [
        f"{n.name},02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}\n"
        for i, n in enumerate(load(layout).nodes)
    ]
    csv = state / "macs.csv"
    csv.write_text("".join(rows))
    argv = [sys.executable, "-m", "dim", "--config", str(layout), "--state", str(state)]
    subprocess.run(
        [*argv, "node", "import-macs", str(csv)], env=env, check=True, stdout=subprocess.DEVNULL
    )


def _instructions(argv: list[str], env: dict[str, str]) -> int:
    """Instructions of one whole process, as callgrind counts them: the process waited for,
    not the child that a cold command leaves to write the layout cache (dim.quick)."""
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    valgrind.append("--child-silent-after-fork=yes")
    run = subprocess.run([*valgrind, *argv], env=env, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", run.stderr).group(1))


def _cold(name: str, argv: list[str]) -> None:
    """Before a cold command: its state folder without the validated-layout cache."""
    if name.endswith(COLD) or name.endswith(f"{COLD} (before)"):
        shutil.rmtree(Path(argv[argv.index("--state") + 1]) / "layouts", ignore_errors=True)


def _settle(name: str, argv: list[str]) -> None:
    """After a cold command: wait for the layout cache that its child writes after the
    answer, so that the next command neither shares the CPU with it nor finds it half-made
    (a cold command after it would read a cache written after its folder was removed)."""
    if name.endswith(COLD) or name.endswith(f"{COLD} (before)"):
        folder = Path(argv[argv.index("--state") + 1]) / "layouts"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            list(folder.glob("*.db")) and not list(folder.glob(".*"))
        ):
            time.sleep(0.01)


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def _import_costs(argv: list[str], env: dict[str, str], top: int) -> tuple[float, list[str]]:
    """Total microseconds of top-level imports and the ``top`` costliest of them, in ms."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", *argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    costs = []
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # a top-level import: its cost holds its children's
            costs.append((int(cumulative) / 1000, name.strip()))
    costs.sort(reverse=True)
    return sum(c for c, _ in costs), [f"{name} {ms:.0f}" for ms, name in costs[:top]]


SPLIT = """
import sys, time
start = time.perf_counter()
from dim.actions.context import Context
from dim.inventory import summary
from dim.layout import parser
from dim.layout.model import Inventory
from lxml import etree
import click
imported = time.perf_counter()
data = open(sys.argv[1], "rb").read()
parser._schema().validate(etree.fromstring(data))
xml = time.perf_counter()
cluster = parser.parse(data, sys.argv[1])  # XML and schema again, then expansion and checks
parsed = time.perf_counter()
observed = Context(config=sys.argv[1], state=sys.argv[2]).observed()
summary(Inventory(cluster, observed.macs, observed.images))
done = time.perf_counter()
Context(config=sys.argv[1], state=sys.argv[2]).cluster()  # leaves the validated-layout cache
cached = time.perf_counter()
Context(config=sys.argv[1], state=sys.argv[2]).cluster(cached=True)  # a warm command's read
read = time.perf_counter()
ms = lambda a, b: f"{(b - a) * 1000:.0f}"
print(f"imports {ms(start, imported)}, XML + schema {ms(imported, xml)}, "
      f"expansion + checks {(parsed - xml - (xml - imported)) * 1000:.0f}, "
      f"state + summary {ms(parsed, done)}; warm, the layout from its cache {ms(cached, read)}")
"""


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runs", type=int, default=21)
    args.add_argument("--layout", type=Path, default=TREE / "examples/bladecenter.xml")
    args.add_argument("--top", type=int, default=6)
    args.add_argument("--before", type=Path, help="a tree of dim to time beside this one")
    args.add_argument("--callgrind", action="store_true", help="count instructions too")
    opts = args.parse_args()
    layout = opts.layout.resolve()
    with tempfile.TemporaryDirectory(prefix="dim-startup-") as scratch:
        env = _environment(str(Path(scratch) / "pycache"))
        fresh, recorded = Path(scratch) / "fresh", Path(scratch) / "recorded"
        fresh.mkdir()
        recorded.mkdir()
        _record_macs(layout, recorded, env)
        cold = Path(scratch) / "cold"  # of its own: removing its cache must not chill the rest
        shutil.copytree(recorded, cold)
        commands = _commands(layout, fresh, recorded, cold)
        envs = dict.fromkeys(commands, env)
        if opts.before:
            before = _environment(str(Path(scratch) / "pycache-before"), opts.before.resolve())
            # state folders of its own: each tree's layout cache (keyed by its code) would
            # remove the other's, and every warm run would be a cold one
            own = {}
            for folder in (fresh, recorded, cold):
                own[str(folder)] = str(folder.with_name(f"{folder.name}-before"))
                shutil.copytree(folder, own[str(folder)])
            for name, argv in list(commands.items()):
                if name.startswith("dim") and argv[0] == sys.executable:
                    argv = [own.get(arg, arg) for arg in argv]
                    commands[f"{name} (before)"], envs[f"{name} (before)"] = argv, before
        for name, argv in commands.items():  # warm-up: bytecode written, pages cached
            _cold(name, argv)
            _time(argv, envs[name])
            _settle(name, argv)
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for run in range(opts.runs):
            shift = run % len(names)
            for name in names[shift:] + names[:shift]:
                _cold(name, commands[name])
                times[name].append(_time(commands[name], envs[name]))
                _settle(name, commands[name])
        load = os.getloadavg()
        print(f"{opts.runs} runs each, alternated; load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        base = statistics.median(times["python -c pass"])
        print("| command | median ms | min ms | × python -c pass |")
        print("|---|---:|---:|---:|")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"| `{name}` | {median:.0f} | {min(values):.0f} | {median / base:.1f} |")
        print("\ntop-level imports (ms, python -X importtime, one run):")
        for name, argv in commands.items():
            if argv[0] != sys.executable or name == "python -c pass":
                continue
            _cold(name, argv)
            total, top = _import_costs(argv, envs[name], opts.top)
            _settle(name, argv)
            print(f"  {name}: {total:.0f} in all; " + ", ".join(top))
        if opts.callgrind:
            print("\ninstructions (callgrind, one run each):")
            for name, argv in commands.items():
                _cold(name, argv)
                print(f"  {name}: {_instructions(argv, envs[name]) / 1e6:,.1f} M")
                _settle(name, argv)
        print("\nlayout check in process (ms):")
        split = subprocess.run(
            [sys.executable, "-c", SPLIT, str(layout), str(fresh)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        print("  " + split.stdout.strip())


if __name__ == "__main__":
    main()
