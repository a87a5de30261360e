"""Where the lab calls dim itself: the one place that knows dim's command line.

The lab drives dim as an administrator would (import an image, build its boot files, import
the MACs, apply the configuration), on the lab's own layout and state::

    dim(folder, "boot", "build", "tiny")           # in this process, LabError if it fails
    import_tree(folder, "tiny", Path("trees/tiny"))  # image import, or sync once it exists
    dim_argv(folder) + ["serve", "--port", "8080"]   # dim in a child process (a daemon)

Every in-process call goes through `call`: when dim's use cases become functions of their
own, this module is the one to change. ``dim_argv`` stays a command line, since ``dim serve``
runs as a daemon in the lab's namespace.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dim.lab.netns import LabError


def call(config: Path, state: Path, *args: str) -> None:
    """Run ``dim --config CONFIG --state STATE ARGS…`` in this process; `LabError` if it fails."""
    from dim.cli import main

    status = main(["--config", str(config), "--state", str(state), *args])
    if status != 0:
        raise LabError(f"dim {' '.join(args)} failed (exit status {status})")


def dim(folder: Path, *args: str) -> None:
    """Run a dim command on the lab's layout and state, in this process."""
    call(folder / "cluster.xml", folder / "state", *args)


def import_tree(folder: Path, image: str, tree: Path) -> None:
    """Import ``tree`` as ``image``, or sync the image to it when the store has it already."""
    from dim.images.store import Store

    verb = "sync" if Store(folder / "state").exists(image) else "import"
    dim(folder, "image", verb, image, "--from", str(tree))


def dim_argv(folder: Path) -> list[str]:
    """This very dim, in a child process, on the lab's layout and state."""
    return [
        sys.executable,
        "-c",
        "import sys; from dim.cli import main; sys.exit(main())",
        "--config",
        str(folder / "cluster.xml"),
        "--state",
        str(folder / "state"),
    ]
