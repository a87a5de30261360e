"""``dim layout check`` and ``dim node list``, the commands typed all day, answered without click.

click's import is a quarter of these commands' start (133 M instructions of some 500 M: it
brings ``inspect``, ``typing``, ``uuid``, ``datetime``). A command line of one of these two
commands in its plain forms is run here, by :mod:`dim.__main__`, before click is imported::

    dim [--config FILE] [--state DIR] [--database URL] [--debug] layout check [--json]
    dim [global options] node list [NODESET] [-x NODESET | --exclude NODESET] [--json]

(each option once, ``--option VALUE`` or ``--option=VALUE``; the environment's ``DIM_CONFIG``,
``DIM_STATE`` and ``DIM_DATABASE`` as click reads them). Anything else (a help option, an
option twice, a value that starts with ``-``, a path click would refuse, shell completion) is
:data:`CLICK`'s: :func:`run` returns None and :mod:`dim.cli` parses the line. The commands of
:mod:`dim.cli.layout` and :mod:`dim.cli.node` print through the same functions
(:func:`check_lines`, :func:`list_lines`); tests/unit/test_cli_quick.py compares the two ways,
whole processes against click's, line by line.
"""

from __future__ import annotations

import os
import sys
from stat import S_ISDIR, S_ISREG

from dim.commands import DEFAULT_CONFIG, DEFAULT_STATE, HELP_OPTIONS
from dim.printable import counted, printable

TYPE_CHECKING = False  # typing's own, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from dim.actions.context import Context

CLICK = None  # run's answer for a command line that click must parse
# each valued root option: its variable in the environment and its default
GLOBAL_OPTIONS = {
    "--config": ("DIM_CONFIG", DEFAULT_CONFIG),
    "--state": ("DIM_STATE", DEFAULT_STATE),
    "--database": ("DIM_DATABASE", None),
}


def run(argv: list[str]) -> int | None:
    """The exit status of ``dim ARGV`` run here; :data:`CLICK` if click must parse ARGV."""
    parsed = _parse(argv)
    if parsed is None:
        return CLICK
    options, command = parsed
    from pathlib import Path

    from dim.actions.context import Context
    from dim.errors import DimError

    later: list[Callable[[], None]] = []
    try:
        ctx = Context(
            config=Path(options["--config"]),
            state=Path(options["--state"]),
            debug=options["--debug"],
            database=options["--database"] or None,
            later=later,
        )
        _write(sys.stdout, command(ctx))
    except DimError as exc:
        if options["--debug"]:
            raise
        lines = [f"dim: error: {printable(exc.message)}"]
        lines += [f"hint: {printable(exc.hint)}"] if exc.hint else []
        _write(sys.stderr, lines)
        return exc.exit_status
    except KeyboardInterrupt:
        _write(sys.stderr, ["dim: interrupted"])
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        _run_after_answer(later)
    return 0


def _run_after_answer(work: list[Callable[[], None]]) -> None:
    """Run ``work`` in a child process that the command does not wait for.

    The work is the validated-layout cache's writing after a full parse (the first command
    after cluster.xml changed): 65 M instructions and a disk sync, a seventh of a cold
    ``dim layout check`` (2,576 blades), that its answer has no use for. The child holds
    none of the command's output streams, so a pipe or a ``$(dim …)`` ends with the
    command; a child killed half-way leaves only a temporary file, never a cache (the file
    is renamed into place once complete). Without fork, the work is done here."""
    if not work:
        return
    try:
        child = os.fork()
    except OSError:
        child = -1
    if child > 0:
        return
    if child == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(null, stream)
    try:
        for task in work:
            task()
    finally:
        if child == 0:
            os._exit(0)


def _parse(argv: list[str]) -> tuple[dict, Callable[[Context], list[str]]] | None:
    """The global options (environment and defaults applied) and the command; None if the
    line is not one of this module's plain forms."""
    if "_DIM_COMPLETE" in os.environ or any(a in HELP_OPTIONS or a == "--" for a in argv):
        return None
    options: dict = {"--debug": False}
    rest = _options(argv, options, GLOBAL_OPTIONS, flags=("--debug",))
    if rest is None:
        return None
    command = _command(rest)
    if command is None:
        return None
    for name, (variable, default) in GLOBAL_OPTIONS.items():
        if name not in options:  # click: a variable set to nothing is not set
            options[name] = os.environ.get(variable) or default
    if not _path_ok(options["--config"], directory=False) or not _path_ok(
        options["--state"], directory=True
    ):
        return None  # click's error: "File '…' is a directory.", "… is not readable."
    return options, command


def _options(
    argv: list[str], found: dict, valued: dict, flags: tuple[str, ...]
) -> list[str] | None:
    """Read the leading options of ``argv`` into ``found``; the arguments after them. None if
    one is given twice, lacks its value or has one that starts with ``-``."""
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        name, equals, value = argv[index].partition("=")
        if name in flags and not equals:
            if found[name]:
                return None
            found[name] = True
            index += 1
            continue
        if name not in valued or name in found:
            return None
        if not equals:
            index += 1
            if index == len(argv):
                return None
            value = argv[index]
        if value.startswith("-"):
            return None
        found[name] = value
        index += 1
    return argv[index:]


def _path_ok(path: str, *, directory: bool) -> bool:
    """Whether click.Path(exists=False, dir_okay / file_okay) takes ``path`` as it is."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True  # missing: the command's own error names it
    if S_ISREG(mode) if directory else S_ISDIR(mode):
        return False
    return os.access(path, os.R_OK)


def _command(words: list[str]) -> Callable[[Context], list[str]] | None:
    if words[:2] == ["layout", "check"]:
        found = {"--json": False}
        rest = _options(words[2:], found, {}, flags=("--json",))
        if rest != []:
            return None
        return lambda ctx: _layout_check(ctx, found["--json"])
    if words[:2] == ["node", "list"]:
        return _node_list_command(words[2:])
    return None


def _node_list_command(words: list[str]) -> Callable[[Context], list[str]] | None:
    """``[NODESET] [-x NODESET | -xNODESET | --exclude[=]NODESET] [--json]``, in any order."""
    positional: list[str] = []
    exclude: str | None = None
    as_json = False
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("-"):
            positional.append(word)
            continue
        if word == "--json" and not as_json:
            as_json = True
            continue
        if word in ("-x", "--exclude") and index < len(words):
            value = words[index]
            index += 1
        elif word.startswith("--exclude="):
            value = word.removeprefix("--exclude=")
        elif word.startswith("-x") and word != "-x":
            value = word[2:]
        else:
            return None
        if exclude is not None or value.startswith("-"):
            return None
        exclude = value
    if len(positional) > 1:
        return None
    nodeset = positional[0] if positional else None
    return lambda ctx: _node_list(ctx, nodeset, exclude, as_json)


def _layout_check(ctx: Context, as_json: bool) -> list[str]:
    from dim.actions import layout

    report = layout.check(ctx)
    return [json_text(report)] if as_json else check_lines(report)


def _node_list(ctx: Context, nodeset: str | None, exclude: str | None, as_json: bool) -> list[str]:
    from dim.actions import nodes

    records = nodes.records(ctx, nodeset, exclude)
    return [json_text(records)] if as_json else list_lines(records)


def _write(stream, lines: list[str]) -> None:
    stream.write("".join(f"{line}\n" for line in lines))
    stream.flush()


def json_text(data: object) -> str:
    """``--json``'s text: indented, keys in their order."""
    import json  # here: tables for people need none of it

    return json.dumps(data, indent=2, sort_keys=False)


def check_lines(report: dict) -> list[str]:
    """``dim layout check``'s report for people."""
    lines = [
        f"{report['source']}: cluster {report['cluster']} is valid",
        f"  nodes     {report['nodes']}",
    ]
    lines += [f"  group     {name}: {counted(n, 'node')}" for name, n in report["groups"].items()]
    lines += [f"  network   {name}: {subnet}" for name, subnet in report["networks"].items()]
    for name, server in report["servers"].items():
        lines.append(
            f"  server    {name}: {server['address']} dhcp={server['dhcp']} nfs={server['nfs']}"
        )
    for name, failover in report["failover"].items():
        servers = ", ".join(f"{s} (own {a})" for s, a in failover["own_addresses"].items())
        preempt = "preempt" if failover["preempt"] else "no preempt"
        lines.append(f"  failover  {name}: {servers}; {preempt}")
    lines += [f"  image     {name}: {counted(n, 'node')}" for name, n in report["images"].items()]
    if report["nodes_without_mac"]:
        lines.append(f"  warning: no MAC recorded for {report['nodes_without_mac']}")
    if report["macs_of_unknown_nodes"]:
        lines.append(
            f"  warning: MACs recorded for nodes not in the layout: "
            f"{report['macs_of_unknown_nodes']}"
        )
    lines += [f"  warning: {warning}" for warning in report["warnings"]]
    return lines


def list_lines(records: list[dict]) -> list[str]:
    """``dim node list``'s table for people."""
    rows = []
    for r in records:
        ips = ",".join(i["ip"] for i in r["interfaces"])
        macs = ",".join(i["mac"] or "-" for i in r["interfaces"])
        bmc = r["bmc"]["address"] if r["bmc"] else "-"
        last = r["last_boot"]
        booted = f"{last['image']}/{last['version']}" if last else "-"
        boot = last["at"][:19].replace("T", " ") if last else "-"
        image = r["image"] or "-"
        rows.append([r["name"], r["group"], ips, macs, image, r["server"], bmc, booted, boot])
    headers = ["NODE", "GROUP", "IP", "MAC", "IMAGE", "SERVER", "BMC", "BOOTED", "LAST BOOT"]
    return table_lines(rows, headers)


def table_lines(rows: list[list[str]], headers: list[str]) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in [headers, *rows]
    ]
