"""Kernel and initramfs per image version, rebuilt only when an input changed.

::

    >>> artifacts = build(Store(Path("/var/lib/dim")), cluster.images["tiny"])
    >>> artifacts.kernel
    PosixPath('/var/lib/dim/boot/tiny/3/vmlinuz')

The kernel is the newest ``/boot/vmlinuz-*`` of the image's latest version (or a given file);
its version, read from the bzImage header, names the modules folder
``/lib/modules/<version>`` (or ``/usr/lib/modules/…``) of the same image version. Symbolic
links in the image (a usr-merged ``/lib -> usr/lib``) are followed inside the image, never
into the host.

``build.json`` records the inputs by digest (kernel, busybox, /init, the DHCP script, every
module carried, the load order, dim's own builder code) and the outputs. A build whose
recorded inputs equal the current ones, and whose outputs are intact, is reused as it is: same
files, nothing written.
Outputs are written to temporary names and renamed into place, ``build.json`` last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from dim.boot import initramfs
from dim.boot.modules import ModuleIndex, Selection, load_index, select
from dim.errors import BootError
from dim.files import write_atomically
from dim.images.store import Store
from dim.layout.model import Image

BUSYBOX = Path("/bin/busybox")
KERNEL = "vmlinuz"
INITRD = "initrd.img"
MANIFEST = "build.json"


@dataclass(frozen=True, slots=True)
class BootArtifacts:
    """What a network boot of one image version needs, and how it was obtained."""

    image: str
    version: int
    kernel_version: str
    folder: Path
    kernel: Path
    initrd: Path
    manifest: Path
    modules: tuple[str, ...]  # module names, in load order
    warnings: tuple[str, ...]
    reused: bool
    initrd_bytes: int
    seconds: float


def boot_folder(store: Store, image: str, version: int) -> Path:
    """``<state>/boot/<image>/<version>``."""
    return store.paths.boot_build(image, version)


def build(
    store: Store, image: Image, *, kernel: Path | None = None, busybox: Path | None = None
) -> BootArtifacts:
    """Kernel and initramfs of ``image``'s latest version: reused if its inputs are unchanged.

    ``busybox`` is the static busybox the initramfs carries (default: the host's /bin/busybox).
    """
    started = time.monotonic()
    busybox = busybox if busybox is not None else BUSYBOX
    version = store.latest(image.name)
    if version is None:
        raise BootError(
            f"image {image.name} has no version yet",
            hint=f"dim image import {image.name} --from SOURCE",
        )
    root = store.paths.version(image.name, version)
    kernel_file = kernel if kernel is not None else find_kernel(root, image.name, version)
    kernel_version = read_kernel_version(kernel_file)
    modules_dir = find_modules(root, kernel_version, image.name, version)
    index = load_index(modules_dir)
    selection = select(index, image=image.name)
    if not busybox.is_file():
        raise BootError(f"{busybox} is missing", hint="apt-get install busybox-static")
    inputs, sources = _inputs(kernel_file, busybox, modules_dir, selection, kernel_version)
    folder = boot_folder(store, image.name, version)
    manifest = _read_manifest(folder / MANIFEST)
    reused = manifest is not None and manifest.get("inputs") == inputs and _intact(folder, manifest)
    if manifest is None or not reused:
        initrd = _initrd(busybox, kernel_version, modules_dir, selection, index)
        manifest = _write(folder, kernel_file.read_bytes(), initrd, inputs, sources)
    return BootArtifacts(
        image=image.name,
        version=version,
        kernel_version=kernel_version,
        folder=folder,
        kernel=folder / KERNEL,
        initrd=folder / INITRD,
        manifest=folder / MANIFEST,
        modules=tuple(m.name for m in selection.modules),
        warnings=selection.warnings,
        reused=reused,
        initrd_bytes=manifest["outputs"][INITRD]["bytes"],
        seconds=time.monotonic() - started,
    )


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


def latest_build(store: Store, image: str) -> BootArtifacts | None:
    """The build of ``image``'s latest version if there is an intact one (for the boot
    service, which serves it without rebuilding); None otherwise."""
    version = store.latest(image)
    if version is None:
        return None
    folder = boot_folder(store, image, version)
    manifest = _read_manifest(folder / MANIFEST)
    if manifest is None or not _intact(folder, manifest):
        return None
    return BootArtifacts(
        image=image,
        version=version,
        kernel_version=manifest["kernel_version"],
        folder=folder,
        kernel=folder / KERNEL,
        initrd=folder / INITRD,
        manifest=folder / MANIFEST,
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
        "kernel": _digest(kernel.read_bytes()),
        "busybox": _digest(busybox.read_bytes()),
        "init.sh": _digest(initramfs.package_file(initramfs.INIT)),
        "udhcpc.sh": _digest(initramfs.package_file(initramfs.DHCP_SCRIPT)),
        "modules": {
            m.path: _digest((modules_dir / m.path).read_bytes()) for m in selection.modules
        },
        "load_order": [
            f"{'required' if m.required else 'optional'} {m.name}" for m in selection.modules
        ],
    }
    sources = {"kernel": str(kernel), "busybox": str(busybox), "modules": str(modules_dir)}
    return inputs, sources


def _write(folder: Path, kernel: bytes, initrd: bytes, inputs: dict, sources: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / KERNEL, kernel)
    write_atomically(folder / INITRD, initrd)
    manifest = {
        "built": time.time(),
        "kernel_version": inputs["kernel_version"],
        "modules": [line.split()[1] for line in inputs["load_order"]],
        "inputs": inputs,
        "sources": sources,
        "outputs": {
            KERNEL: {"bytes": len(kernel), "sha256": _digest(kernel)},
            INITRD: {"bytes": len(initrd), "sha256": _digest(initrd)},
        },
    }
    write_atomically(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def _builder_digest() -> str:
    """dim's own code that shapes the initramfs: a new dim rebuilds, an unchanged one reuses."""
    package = resources.files("dim.boot")
    return _digest(b"".join(package.joinpath(n).read_bytes() for n in _BUILDER))


_BUILDER = ("build.py", "initramfs.py", "modules.py")


def _read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "outputs" in manifest else None


def _intact(folder: Path, manifest: dict) -> bool:
    """Whether the outputs are still those build.json recorded (size, then digest)."""
    for name, recorded in manifest["outputs"].items():
        path = folder / name
        try:
            if path.stat().st_size != recorded["bytes"]:
                return False
        except FileNotFoundError:
            return False
        if _digest(path.read_bytes()) != recorded["sha256"]:
            return False
    return True


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
