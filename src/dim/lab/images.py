"""A tiny bootable image for the lab and the boot tests: busybox, Debian's kernel, a marker.

::

    kernel = fetch_kernel()                        # once; cached in /var/cache/dim-lab
    tiny_tree(Path("/tmp/tiny"), kernel)           # then: dim image import tiny --from /tmp/tiny

:func:`fetch_kernel` downloads the kernel package that ``linux-image-amd64`` depends on with
``apt-get download``, unpacks it with ``dpkg -x`` and runs ``depmod`` on it, once per package;
later calls find it in the cache. :func:`tiny_tree` makes a root tree of a few megabytes:

- ``/bin/busybox`` (the host's static one) and a link per applet, ``/sbin/init`` among them;
- ``/etc/inittab`` running ``/etc/init.d/rcS`` on the console, which prints the mounts
  (``DIM-MOUNT <path> <type> <options>``), runs ``/etc/dim-rc.local`` if there is one, then
  prints the marker ``DIM-NODE-UP <hostname> <image> root=ro|rw`` (``ro``: writing to /
  failed) and leaves the node idle, without a shell;
- ``/etc/passwd``, ``/etc/group``; empty /proc /sys /dev /run /tmp /root /var/tmp;
- ``/boot/vmlinuz-<release>`` and in ``/lib/modules/<release>`` the modules dim's initramfs
  takes (:data:`dim.boot.modules.WANTED` and their dependencies) plus a few more, with their
  ``modules.dep``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dim.boot import initramfs
from dim.boot.modules import load_index, load_order, select
from dim.lab.netns import LabError

CACHE = Path("/var/cache/dim-lab")
META_PACKAGE = "linux-image-amd64"
BUSYBOX = Path("/bin/busybox")
MARKER = "DIM-NODE-UP"
#: Besides what the initramfs needs: disks and the virtio console, for experiments.
EXTRA_MODULES = ("virtio_blk", "virtio_console", "virtio_scsi", "sd_mod", "squashfs")

INITTAB = """\
# dim lab image: busybox init.
::sysinit:/etc/init.d/rcS
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot -f
::shutdown:/bin/sync
"""

RCS = """\
#!/bin/sh
# dim lab image: say how the node came up, run /etc/dim-rc.local, print the marker.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
grep -q " /proc " /proc/mounts 2>/dev/null || mount -t proc proc /proc
image=$(sed -n 's/.*dim\\.image=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
while read -r device path type options rest; do
    echo "DIM-MOUNT $path $type $options"
done </proc/mounts
if touch /.dim-probe 2>/dev/null; then
    rm -f /.dim-probe
    root=rw
else
    root=ro
fi
[ -x /etc/dim-rc.local ] && /etc/dim-rc.local
echo "MARKER $(hostname) ${image:-unknown} root=$root"
""".replace("MARKER", MARKER)

Progress = Callable[[str], None] | None


@dataclass(frozen=True, slots=True)
class LabKernel:
    """An unpacked Debian kernel package: ``boot/vmlinuz-<release>``, ``lib/modules/<release>``."""

    package: str
    release: str
    root: Path

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def kernel_package(meta: str = META_PACKAGE) -> str:
    """The versioned package ``meta`` depends on: ``linux-image-6.1.0-56-amd64``."""
    result = _run(["apt-cache", "depends", meta], f"apt-cache depends {meta}")
    for line in result.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Depends" and value.strip().startswith("linux-image-"):
            return value.strip()
    raise LabError(f"{meta} depends on no linux-image-* package", hint=result.stdout.strip())


def fetch_kernel(
    cache: Path = CACHE, *, package: str | None = None, progress: Progress = None
) -> LabKernel:
    """Debian's kernel, unpacked and depmod'ed in ``cache`` (downloaded on the first call)."""
    package = package or kernel_package()
    folder = cache / "kernels" / package
    if not (folder / ".complete").exists():
        if progress:
            progress(f"downloading {package} into {folder}")
        _unpack(package, folder)
    boot = sorted((folder / "boot").glob("vmlinuz-*"))
    if not boot:
        raise LabError(f"{package} holds no boot/vmlinuz-*: {folder}")
    return LabKernel(package, boot[-1].name[len("vmlinuz-") :], folder)


def tiny_tree(
    dest: Path,
    kernel: LabKernel,
    *,
    rc_local: str | None = None,
    busybox: Path = BUSYBOX,
    extra_modules: tuple[str, ...] = EXTRA_MODULES,
) -> Path:
    """Make the tiny image's root tree in ``dest`` (which must not exist or be empty).

    ``rc_local``, if given, becomes ``/etc/dim-rc.local``: commands the node runs at boot
    before it prints the marker.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise LabError(f"{dest} is not empty", hint="give a new folder for the image tree")
    for folder, mode in _FOLDERS.items():
        (dest / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(dest / folder, mode)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in initramfs.busybox_applets(busybox):
        link = dest / applet
        if applet in ("bin/busybox", "linuxrc") or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    _write(dest / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    _write(dest / "etc/group", "root:x:0:\n")
    _write(dest / "etc/inittab", INITTAB)
    _write(dest / "etc/init.d/rcS", RCS, 0o755)
    if rc_local is not None:
        _write(dest / "etc/dim-rc.local", rc_local, 0o755)
    shutil.copy2(kernel.vmlinuz, dest / "boot" / kernel.vmlinuz.name)
    _copy_modules(kernel, dest, extra_modules)
    return dest


def build_tiny_image(dest: Path, *, cache: Path = CACHE, rc_local: str | None = None) -> Path:
    """:func:`fetch_kernel` then :func:`tiny_tree`: a tree ready for ``dim image import``."""
    return tiny_tree(dest, fetch_kernel(cache), rc_local=rc_local)


_FOLDERS = {
    "bin": 0o755,
    "sbin": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "boot": 0o755,
    "dev": 0o755,
    "etc/init.d": 0o755,
    "lib/modules": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "run": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "var/tmp": 0o1777,
}


def _copy_modules(kernel: LabKernel, dest: Path, extra: tuple[str, ...]) -> None:
    index = load_index(kernel.modules)
    wanted = [m.name for m in select(index, image="tiny").modules]
    names = load_order(index, [*wanted, *extra])
    target = dest / "lib" / "modules" / kernel.release
    for name in names:
        path = index.paths[name]
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel.modules / path, target / path)
    for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (kernel.modules / name).exists():
            shutil.copy2(kernel.modules / name, target / name)
    _run(["depmod", "-b", str(dest), kernel.release], "depmod", hint="apt-get install kmod")


def _unpack(package: str, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{package}-", dir=folder.parent) as work:
        _run(
            ["apt-get", "download", package],
            f"apt-get download {package}",
            cwd=work,
            hint="the Debian mirror must be reachable (apt-get update first)",
        )
        debs = sorted(Path(work).glob("*.deb"))
        if not debs:
            raise LabError(f"apt-get download {package} left no .deb in {work}")
        tree = Path(work) / "tree"
        _run(["dpkg", "-x", str(debs[0]), str(tree)], f"dpkg -x {debs[0].name}")
        release = sorted((tree / "boot").glob("vmlinuz-*"))[-1].name[len("vmlinuz-") :]
        _run(["depmod", "-b", str(tree), release], "depmod", hint="apt-get install kmod")
        (tree / ".complete").write_text(f"{package} {release}\n")
        try:
            os.rename(tree, folder)
        except OSError:  # another process unpacked it meanwhile
            if not (folder / ".complete").exists():
                raise


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _run(
    argv: list[str], what: str, *, cwd: str | None = None, hint: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, cwd=cwd, check=False, timeout=600
        )
    except FileNotFoundError as exc:
        raise LabError(f"{what}: {argv[0]} is not installed", hint=hint) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what} did not finish in 600 s", hint=hint) from exc
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise LabError(
            f"{what} failed (exit status {result.returncode}): {last[-1] if last else ''}",
            hint=hint,
        )
    return result
