"""Debian packages unpacked into a cache folder, downloaded once: what dim takes from Debian
for another architecture than this machine's (a static busybox for arm64 nodes' initramfs),
without installing it::

    tree = unpacked("busybox-static:arm64", Path("/var/cache/dim"))
    tree / "bin" / "busybox"        # an aarch64 binary

``apt-get download`` fetches the package of the architecture its name gives (``:arm64``),
which apt knows once ``dpkg --add-architecture arm64`` and ``apt-get update`` were run.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from dim import processes
from dim.errors import DimError

COMPLETE = ".complete"  # written last in an unpacked tree: a half-unpacked one is done again


def unpacked(package: str, cache: Path) -> Path:
    """The files of Debian's ``package`` (``name`` or ``name:arch``), unpacked under
    ``cache/debs/``; downloaded and unpacked on the first call, whoever calls at once."""
    folder = cache / "debs" / package.replace(":", "_")
    if (folder / COMPLETE).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    arch = package.partition(":")[2]
    hint = "the Debian mirror must be reachable (apt-get update first)"
    if arch:
        hint = f"dpkg --add-architecture {arch} && apt-get update; {hint}"
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}-", dir=folder.parent) as work:
        _run(["apt-get", "download", package], f"apt-get download {package}", work, hint)
        debs = sorted(Path(work).glob("*.deb"))
        if not debs:
            raise DimError(f"apt-get download {package} left no .deb in {work}")
        tree = Path(work) / "tree"
        _run(["dpkg-deb", "-x", str(debs[0]), str(tree)], f"dpkg-deb -x {debs[0].name}", work)
        (tree / COMPLETE).write_text(f"{debs[0].name}\n")
        try:
            os.rename(tree, folder)
        except OSError:  # another process unpacked it meanwhile
            if not (folder / COMPLETE).exists():
                raise
    return folder


def _run(argv: list[str], what: str, cwd: str, hint: str | None = None) -> None:
    try:
        done = processes.run(argv, cwd=cwd, timeout=600)
    except FileNotFoundError as exc:
        raise DimError(f"{what}: {argv[0]} is not installed", hint=hint) from exc
    except subprocess.TimeoutExpired as exc:
        raise DimError(f"{what} did not finish in 600 s", hint=hint) from exc
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise DimError(
            f"{what} failed (exit status {done.returncode}): {last[-1] if last else ''}",
            hint=hint,
        )
