"""Boot builds: the kernel and initramfs of one image version, and which one a node boots.

::

    <state>/boot/<image>/<version>/vmlinuz      the kernel from the version's /boot
    <state>/boot/<image>/<version>/initrd.img   busybox, the image's own modules, /init
    <state>/boot/<image>/<version>/build.json   inputs and their digests, outputs (written last)

    >>> found = find_build(StatePaths(Path("/var/lib/dim")), "rhel9")
    >>> found.version, found.kernel
    (4, PosixPath('/var/lib/dim/boot/rhel9/4/vmlinuz'))

:mod:`dim.boot.build` makes them (``dim boot build``); :mod:`dim.boot.serve` serves them
(``dim serve``). A build is *complete* when both its kernel and its initrd are there: each is
renamed into place whole, so a complete build is never half written; ``build.json`` then says
whether the files are still the ones built (:meth:`BootBuild.intact`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dim.files import read_number
from dim.paths import StatePaths

KERNEL = "vmlinuz"
INITRD = "initrd.img"
MANIFEST = "build.json"
FILES = (KERNEL, INITRD)  # what a node fetches


@dataclass(frozen=True, slots=True)
class BootBuild:
    """The kernel and initrd built for one version of an image, in their folder."""

    image: str
    version: int
    folder: Path

    @property
    def kernel(self) -> Path:
        return self.folder / KERNEL

    @property
    def initrd(self) -> Path:
        return self.folder / INITRD

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST

    def file(self, name: str) -> Path:
        return self.folder / name

    def complete(self) -> bool:
        """Whether both the kernel and the initrd are there."""
        return all((self.folder / name).is_file() for name in FILES)

    def read_manifest(self) -> dict | None:
        """``build.json``, or None if it is missing or not one dim wrote."""
        try:
            manifest = json.loads(self.manifest.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and "outputs" in manifest else None

    def intact(self, manifest: dict) -> bool:
        """Whether the outputs are still those ``manifest`` recorded (size, then digest)."""
        for name, recorded in manifest["outputs"].items():
            path = self.folder / name
            try:
                if path.stat().st_size != recorded["bytes"]:
                    return False
            except FileNotFoundError:
                return False
            if digest(path.read_bytes()) != recorded["sha256"]:
                return False
        return True


def build_of(paths: StatePaths, image: str, version: int) -> BootBuild:
    """Where the build of ``image`` at ``version`` lies, whether or not it exists."""
    return BootBuild(image, version, paths.boot_build(image, version))


def find_build(paths: StatePaths, image: str, version: int | None = None) -> BootBuild | None:
    """The complete boot build of ``image`` at ``version``; without a version, the current one.

    The current build is the one for the image's live version when there is one, else the
    newest complete one.
    """
    if version is not None:
        found = build_of(paths, image, version)
        return found if found.complete() else None
    live = read_number(paths.live_marker(image))
    if live is not None and (found := build_of(paths, image, live)).complete():
        return found
    folder = paths.boot(image)
    try:
        names = [n for n in os.listdir(folder) if n.isdigit()]
    except OSError:
        return None
    for name in sorted(names, key=int, reverse=True):
        if (found := BootBuild(image, int(name), folder / name)).complete():
            return found
    return None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
