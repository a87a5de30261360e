"""Kernel and initramfs per image version, rebuilt only when an input changed.

::

    >>> result = build(Store(Path("/var/lib/dim")), cluster.images["tiny"])
    >>> result.kernel
    PosixPath('/var/lib/dim/boot/tiny/3/vmlinuz')

The kernel is the newest ``/boot/vmlinuz-*`` of the image's latest version (or a given file);
its version, read from the bzImage header, names the modules folder
``/lib/modules/<version>`` (or ``/usr/lib/modules/…``) of the same image version. Symbolic
links in the image (a usr-merged ``/lib -> usr/lib``) are followed inside the image, never
into the host.

``build.json`` records the inputs by digest (kernel, busybox, /init, the DHCP script, every
module carried, the load order, dim's own builder code), the kernel's version, the outputs and
the warnings: modules the image lacks, and what :mod:`dim.boot.compat` says of its kernel
(read with the image's ``/boot/config-<version>``, if it has one) and its NFS options. The
warnings are worked out again on every build, reused or not, since an image's nfs-options or
servers can change without changing the build; ``build.json`` keeps the latest. A build whose
recorded inputs equal the current ones, and whose outputs are intact, is reused as it is: same
files, nothing written (but ``build.json`` again when its warnings have changed).
Outputs are written to temporary names and renamed into place, ``build.json`` last. Where a
build lies and when it is complete or intact is :mod:`dim.boot.builds`'s.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from dim import architectures, debs
from dim.boot import compat, initramfs
from dim.boot.builds import INITRD, KERNEL, BootBuild, build_of, digest
from dim.boot.modules import ModuleIndex, Selection, load_index, select
from dim.errors import BootError, DimError
from dim.files import write_atomically
from dim.images.store import Store
from dim.layout.model import Image

BUSYBOX = Path("/bin/busybox")
BINFMT = Path("/proc/sys/fs/binfmt_misc")  # qemu-user's entries run other architectures' programs


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A boot build of one image version, and how it was obtained."""

    build: BootBuild
    kernel_version: str
    modules: tuple[str, ...]  # module names, in load order
    warnings: tuple[str, ...]
    reused: bool
    initrd_bytes: int
    seconds: float

    @property
    def image(self) -> str:
        return self.build.image

    @property
    def version(self) -> int:
        return self.build.version

    @property
    def folder(self) -> Path:
        return self.build.folder

    @property
    def kernel(self) -> Path:
        return self.build.kernel

    @property
    def initrd(self) -> Path:
        return self.build.initrd

    @property
    def manifest(self) -> Path:
        return self.build.manifest


def build(
    store: Store,
    image: Image,
    *,
    kernel: Path | None = None,
    busybox: Path | None = None,
    nfs_servers: Collection[str] = (),
) -> BuildResult:
    """Kernel and initramfs of ``image``'s latest version: reused if its inputs are unchanged.

    ``busybox`` is the static busybox the initramfs carries (default: :func:`busybox_for` the
    image's architecture).
    ``nfs_servers`` are the flavours (``ganesha``, ``kernel``) of the NFS servers that export
    the image, for the warnings of :mod:`dim.boot.compat`.
    """
    started = time.monotonic()
    version = store.latest(image.name)
    if version is None:
        raise BootError(
            f"image {image.name} has no version yet",
            hint=f"dim image import {image.name} --from SOURCE",
        )
    root = store.full_tree(image.name, version)
    if root is None:  # versions hold what they changed: live is the latest whole tree
        raise BootError(
            f"live of image {image.name} is not at its latest version {version}",
            hint=f"dim image check {image.name}",
        )
    if busybox is None:
        busybox = busybox_for(store.architecture(image.name), store.paths.cache, image.name)
    kernel_file = kernel if kernel is not None else find_kernel(root, image.name, version)
    kernel_version = read_kernel_version(kernel_file)
    modules_dir = find_modules(root, kernel_version, image.name, version)
    index = load_index(modules_dir)
    selection = select(index, image=image.name)
    if not busybox.is_file():
        raise BootError(f"{busybox} is missing", hint="apt-get install busybox-static")
    inputs, sources = _inputs(kernel_file, busybox, modules_dir, selection, kernel_version)
    warnings = selection.warnings + compat.warnings(
        image.name,
        kernel_version,
        image.nfs_options,
        kernel_config(root, kernel_version),
        ganesha="ganesha" in nfs_servers,
    )
    found = build_of(store.paths, image.name, version)
    manifest = found.read_manifest()
    reused = manifest is not None and manifest.get("inputs") == inputs and found.intact(manifest)
    if manifest is None or not reused:
        initrd = _initrd(busybox, kernel_version, modules_dir, selection, index)
        manifest = _write(found, kernel_file.read_bytes(), initrd, inputs, sources, warnings)
    elif manifest.get("warnings") != list(warnings):
        manifest = _rewrite(found, manifest, warnings)
    return BuildResult(
        build=found,
        kernel_version=kernel_version,
        modules=tuple(m.name for m in selection.modules),
        warnings=warnings,
        reused=reused,
        initrd_bytes=manifest["outputs"][INITRD]["bytes"],
        seconds=time.monotonic() - started,
    )


def busybox_for(arch: str | None, cache: Path, image: str = "") -> Path:
    """The static busybox for an image of ``arch``: this machine's /bin/busybox when it is of
    that architecture (or the image's is unknown), else the busybox package of Debian for it
    (:mod:`dim.architectures`), downloaded once into ``cache``."""
    here = architectures.elf_machine(BUSYBOX)
    if arch is None or (here is not None and architectures.machine_name(*here) == arch):
        return BUSYBOX
    if architectures.canonical(arch) is None:
        raise BootError(
            f"image {image} is {arch}, which dim does not boot: no busybox for it",
            hint="docs/architectures.md says what another architecture needs",
        )
    facts = architectures.named(arch)
    package = f"{facts.busybox}:{facts.debian}"
    if not (BINFMT / facts.qemu_user).exists():  # its --list-full runs here, through QEMU
        raise BootError(
            f"image {image} is {arch}, whose programs this machine cannot run: binfmt_misc has "
            f"no {facts.qemu_user}",
            hint=f"apt-get install qemu-user-static binfmt-support; update-binfmts --enable "
            f"{facts.qemu_user}",
        )
    try:
        return debs.unpacked(package, cache) / "bin" / "busybox"
    except DimError as exc:
        raise BootError(
            f"no {arch} busybox for image {image}: {exc.message}",
            hint=exc.hint or f"apt-get download {package}",
        ) from exc


def _initrd(
    busybox: Path, kernel_version: str, modules_dir: Path, selection: Selection, index: ModuleIndex
) -> bytes:
    files = {m.path: (modules_dir / m.path).read_bytes() for m in selection.modules}
    archive = initramfs.contents(
        busybox=busybox.read_bytes(),
        applets=initramfs.busybox_applets(busybox),
        kernel_version=kernel_version,
        index=index,
        modules=selection.modules,
        module_files=files,
        init=initramfs.package_file(initramfs.INIT),
        dhcp_script=initramfs.package_file(initramfs.DHCP_SCRIPT),
    )
    return archive.gzip()


def latest_build(store: Store, image: str) -> BuildResult | None:
    """The build of ``image``'s latest version if there is an intact one, as ``build`` would
    reuse it; None otherwise. (``dim serve`` serves builds by :func:`dim.boot.builds.find_build`,
    which does not read them whole.)"""
    version = store.latest(image)
    if version is None:
        return None
    found = build_of(store.paths, image, version)
    manifest = found.read_manifest()
    if manifest is None or not found.intact(manifest):
        return None
    return BuildResult(
        build=found,
        kernel_version=manifest["kernel_version"],
        modules=tuple(manifest["modules"]),
        warnings=tuple(manifest.get("warnings", ())),
        reused=True,
        initrd_bytes=manifest["outputs"][INITRD]["bytes"],
        seconds=0.0,
    )


# -- finding the kernel and its modules in an image -------------------------------------------


def find_kernel(root: Path, image: str, version: int) -> Path:
    """The newest ``/boot/vmlinuz-*`` of an image version."""
    boot = inside(root, "/boot")
    candidates = []
    if boot.is_dir():
        for name in os.listdir(boot):
            if name.startswith("vmlinuz-") and inside(root, f"/boot/{name}").is_file():
                candidates.append(name)
    if not candidates:
        raise BootError(
            f"image {image} (version {version}) has no kernel: no /boot/vmlinuz-* in it",
            hint=f"install a kernel in the image (dim image exec {image} -- apt-get install "
            "linux-image-amd64), or give one with --kernel FILE",
        )
    newest = max(candidates, key=lambda name: _version_key(name[len("vmlinuz-") :]))
    return inside(root, f"/boot/{newest}")


def find_modules(root: Path, kernel_version: str, image: str, version: int) -> Path:
    """``/lib/modules/<kernel_version>`` of an image version (or under /usr/lib)."""
    looked = []
    for base in ("/lib/modules", "/usr/lib/modules"):
        folder = inside(root, f"{base}/{kernel_version}")
        if folder.is_dir():
            return folder
        looked.append(f"{base}/{kernel_version}")
    raise BootError(
        f"image {image} (version {version}) has no modules for kernel {kernel_version}: "
        f"looked for {' and '.join(looked)}",
        hint="install the kernel's package in the image (its modules come with it), or give "
        "the image's own kernel with --kernel FILE",
    )


def kernel_config(root: Path, kernel_version: str) -> str | None:
    """The image's ``/boot/config-<kernel_version>``, None if it has none."""
    config = inside(root, f"/boot/config-{kernel_version}")
    try:
        return config.read_text(errors="replace") if config.is_file() else None
    except OSError:
        return None


def read_kernel_version(kernel: Path) -> str:
    """The release a bzImage names in its setup header (``6.1.0-56-amd64``).

    The header (Documentation/arch/x86/boot.rst) holds ``HdrS`` at 0x202 and, at 0x20E, the
    offset minus 0x200 of a NUL-terminated string that starts with the release. A file
    without one falls back on its name, ``vmlinuz-<release>``.
    """
    try:
        with kernel.open("rb") as handle:
            header = handle.read(0x210)
            if len(header) == 0x210 and header[0x202:0x206] == b"HdrS":
                offset = int.from_bytes(header[0x20E:0x210], "little") + 0x200
                handle.seek(offset)
                text = handle.read(256).split(b"\0", 1)[0].decode(errors="replace")
                if text.split():
                    return text.split()[0]
    except FileNotFoundError:
        raise BootError(f"no such kernel file: {kernel}") from None
    except OSError as exc:
        raise BootError(f"cannot read the kernel {kernel}: {exc.strerror}") from exc
    if kernel.name.startswith("vmlinuz-") and len(kernel.name) > len("vmlinuz-"):
        return kernel.name[len("vmlinuz-") :]
    raise BootError(
        f"{kernel} is not a bzImage kernel, and its name does not say its version",
        hint="give a kernel named vmlinuz-<version>",
    )


def inside(root: Path, path: str) -> Path:
    """``path`` in the tree ``root``, symbolic links followed as if ``root`` were ``/``."""
    parts = [p for p in PurePosixPath(path).parts if p != "/"]
    current, hops = root, 0
    while parts:
        part = parts.pop(0)
        if part in (".", ""):
            continue
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise BootError(f"too many symbolic links resolving {path} in {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            parts = [p for p in PurePosixPath(target).parts if p != "/"] + parts
        else:
            current = candidate
    return current


def _version_key(text: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text))


# -- build.json -------------------------------------------------------------------------------


def _inputs(
    kernel: Path, busybox: Path, modules_dir: Path, selection: Selection, kernel_version: str
) -> tuple[dict, dict]:
    """Digests of everything the build reads (compared), and where each came from (shown)."""
    inputs = {
        "builder": _builder_digest(),
        "kernel_version": kernel_version,
        "kernel": digest(kernel.read_bytes()),
        "busybox": digest(busybox.read_bytes()),
        "init.sh": digest(initramfs.package_file(initramfs.INIT)),
        "udhcpc.sh": digest(initramfs.package_file(initramfs.DHCP_SCRIPT)),
        "modules": {m.path: digest((modules_dir / m.path).read_bytes()) for m in selection.modules},
        "load_order": [
            f"{'required' if m.required else 'optional'} {m.name}" for m in selection.modules
        ],
    }
    sources = {"kernel": str(kernel), "busybox": str(busybox), "modules": str(modules_dir)}
    return inputs, sources


def _write(
    found: BootBuild,
    kernel: bytes,
    initrd: bytes,
    inputs: dict,
    sources: dict,
    warnings: tuple[str, ...],
) -> dict:
    found.folder.mkdir(parents=True, exist_ok=True)
    write_atomically(found.kernel, kernel)
    write_atomically(found.initrd, initrd)
    manifest = {
        "built": time.time(),
        "kernel_version": inputs["kernel_version"],
        "modules": [line.split()[1] for line in inputs["load_order"]],
        "inputs": inputs,
        "sources": sources,
        "outputs": {
            KERNEL: {"bytes": len(kernel), "sha256": digest(kernel)},
            INITRD: {"bytes": len(initrd), "sha256": digest(initrd)},
        },
        "warnings": list(warnings),
    }
    return _save_manifest(found, manifest)


def _rewrite(found: BootBuild, manifest: dict, warnings: tuple[str, ...]) -> dict:
    """A reused build's ``build.json`` with the warnings of now (the files stay as built)."""
    return _save_manifest(found, {**manifest, "warnings": list(warnings)})


def _save_manifest(found: BootBuild, manifest: dict) -> dict:
    write_atomically(found.manifest, (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def _builder_digest() -> str:
    """dim's own code that shapes the initramfs: a new dim rebuilds, an unchanged one reuses."""
    package = resources.files("dim.boot")
    return digest(b"".join(package.joinpath(n).read_bytes() for n in _BUILDER))


_BUILDER = ("build.py", "initramfs.py", "modules.py")
