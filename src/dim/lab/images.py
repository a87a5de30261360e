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

:func:`debian_tree` makes a Debian minbase tree of a release (12 bookworm, 13 trixie) with
systemd, udev and the release's own kernel (``linux-image-amd64``), that boots to multi-user
the same way (``dim lab up --debian 12,13``)::

    debian_tree(Path("/tmp/debian13"), RELEASES["13"])   # then: dim image import debian13 …

It starts from :func:`minbase_tarball` (``debootstrap --variant=minbase``, cached per
release), installs the packages with ``dim image exec`` in a scratch store, and adds only a
oneshot unit that prints ``DIM-NODE-UP <hostname> <image> root=ro|rw`` on ttyS0 once
multi-user.target is reached, and a root shell on ttyS0 (autologin getty): nothing of the
lab's, so that it is the tree a site would make. The result is cached as a tarball keyed by the
release and the recipe; later calls unpack it (a few seconds).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dim import architectures, debs
from dim.actions import images as image_actions
from dim.actions.context import Context
from dim.boot import initramfs
from dim.boot.modules import load_index, load_order, select
from dim.errors import DimError, LabError
from dim.paths import StatePaths

CACHE = Path("/var/cache/dim-lab")
META_PACKAGE = "linux-image-amd64"
BUSYBOX = Path("/bin/busybox")
MARKER = "DIM-NODE-UP"
#: Besides what the initramfs needs: disks and the virtio console, for experiments.
EXTRA_MODULES = ("virtio_blk", "virtio_console", "virtio_scsi", "sd_mod", "squashfs", "virtio_rng")

INITTAB = """\
# dim lab image: busybox init.
::sysinit:/etc/init.d/rcS
{console}::respawn:-/bin/sh
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
class DebianRelease:
    """A Debian release the lab builds images of: ``13``, ``trixie``."""

    number: str
    suite: str

    @property
    def image(self) -> str:
        """The lab's image of it: ``debian13``."""
        return f"debian{self.number}"

    @property
    def minbase(self) -> Path:
        """debootstrap's minbase, shared with tests/integration/test_images_debian.py."""
        return self.minbase_of("x86_64")

    def minbase_of(self, arch: str) -> Path:
        """debootstrap's minbase for ``arch`` (dim.architectures: another than this machine's
        runs its second stage through qemu-user)."""
        debian = architectures.named(arch).debian
        suffix = "" if debian == "amd64" else f"-{debian}"
        return MINBASE_CACHE / f"minbase-{self.suite}{suffix}.tar"


MINBASE_CACHE = Path("/var/cache/dim-tests")
RELEASES = {r.number: r for r in (DebianRelease("12", "bookworm"), DebianRelease("13", "trixie"))}
BOOKWORM = RELEASES["12"]
#: kmod: modprobe and static device nodes; and the release's own kernel (debian_packages).
DEBIAN_PACKAGES = ("systemd-sysv", "udev", "kmod", "linux-image-amd64")


def debian_packages(arch: str = "x86_64") -> tuple[str, ...]:
    """What the lab's Debian image of ``arch`` installs: its kernel is linux-image-<debian>."""
    return (*DEBIAN_PACKAGES[:-1], f"linux-image-{architectures.named(arch).debian}")


MARKER_UNIT = """\
# dim lab image: say on the serial console that the node reached multi-user.
[Unit]
Description=dim lab marker on ttyS0
# Without default dependencies multi-user.target is not ordered after this unit, which can
# then be ordered after it.
DefaultDependencies=no
After=multi-user.target
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dim-node-up

[Install]
WantedBy=multi-user.target
"""

MARKER_SCRIPT = """\
#!/bin/sh
# dim lab image: the marker line, as the tiny image prints it.
image=$(sed -n 's/.*dim\\.image=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
if touch /.dim-probe 2>/dev/null; then rm -f /.dim-probe; root=rw; else root=ro; fi
# a line of its own: the autologin prompt may be on the console without its newline yet
printf '\\nMARKER %s %s root=%s\\n' "$(hostname)" "${image:-debian}" "$root" >/dev/ttyS0
""".replace("MARKER", MARKER)

# A root shell on the serial console, as the tiny image has, for `dim lab` and the tests.
AUTOLOGIN = """\
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
"""

# Commands typed on the console by a program: no line editing tricks, a wide line.
ROOT_PROFILE = """\
# dim lab image: a plain shell on the serial console.
if [ "$(tty)" = /dev/ttyS0 ]; then
    stty cols 1000 rows 50 2>/dev/null
    bind 'set enable-bracketed-paste off' 2>/dev/null
fi
"""


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
    console: str = "ttyS0",
) -> Path:
    """Make the tiny image's root tree in ``dest`` (which must not exist or be empty).

    ``rc_local``, if given, becomes ``/etc/dim-rc.local``: commands the node runs at boot
    before it prints the marker. ``busybox`` and ``kernel`` may be of another architecture
    than this machine's (Debian's arm64 ones), ``console`` the serial console that gets a
    shell (the architecture's: :mod:`dim.architectures`).
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
    _write(dest / "etc/inittab", INITTAB.format(console=console))
    _write(dest / "etc/init.d/rcS", RCS, 0o755)
    if rc_local is not None:
        _write(dest / "etc/dim-rc.local", rc_local, 0o755)
    shutil.copy2(kernel.vmlinuz, dest / "boot" / kernel.vmlinuz.name)
    _copy_modules(kernel, dest, extra_modules)
    return dest


def foreign_tiny_tree(
    dest: Path, arch: str, *, cache: Path = CACHE, rc_local: str | None = None
) -> Path:
    """The tiny image of ``arch`` (another than this machine's) in ``dest``: Debian's static
    busybox and kernel of that architecture (its table's packages, fetched once into
    ``cache``), its serial console; the same ``/init``, rcS and marker."""
    facts = architectures.named(arch)
    kernel = fetch_kernel(
        cache, package=kernel_package(f"linux-image-{facts.debian}:{facts.debian}")
    )
    busybox = debs.unpacked(f"{facts.busybox}:{facts.debian}", cache) / "bin" / "busybox"
    return tiny_tree(dest, kernel, rc_local=rc_local, busybox=busybox, console=facts.console)


def build_tiny_image(dest: Path, *, cache: Path = CACHE, rc_local: str | None = None) -> Path:
    """:func:`fetch_kernel` then :func:`tiny_tree`: a tree ready for ``dim image import``."""
    return tiny_tree(dest, fetch_kernel(cache), rc_local=rc_local)


def minbase_tarball(
    release: DebianRelease = BOOKWORM,
    path: Path | None = None,
    *,
    mirror: str | None = None,
    progress: Progress = None,
    arch: str = "x86_64",
) -> Path:
    """``debootstrap --variant=minbase SUITE`` as a tarball, made once (about 40 s; for another
    architecture, whose second stage runs through qemu-user, some minutes)."""
    path = path or release.minbase_of(arch)
    debian = architectures.named(arch).debian
    if path.exists():
        return path
    mirror = mirror or debian_mirror()
    if mirror is None:
        raise LabError("no Debian mirror in /etc/apt/sources.list[.d]", hint="configure apt first")
    if progress:
        progress(
            f"debootstrap --variant=minbase {release.suite} from {mirror} (once; kept in {path})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".minbase-", dir=path.parent) as work:
        root = Path(work) / "root"
        _run(
            ["debootstrap", "--variant=minbase", f"--arch={debian}", release.suite, str(root)]
            + [mirror],
            f"debootstrap --arch={debian} {release.suite}",
            hint="apt-get install debootstrap qemu-user-static; the Debian mirror must be "
            "reachable",
        )
        partial = Path(work) / "minbase.tar"
        _tar_create(root, partial)
        os.rename(partial, path)  # complete or absent
    return path


def debian_mirror() -> str | None:
    """The Debian mirror this machine's apt uses (deb822 sources first); it serves every suite."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in deb822.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and any(_is_debian_suite(x) for x in suites.group(1).split()):
                return uris.group(1)
    classic = Path("/etc/apt/sources.list")
    if classic.exists():
        for line in classic.read_text().splitlines():
            match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s", line)
            if match and _is_debian_suite(match.group(2)):
                return match.group(1)
    return None


def _is_debian_suite(suite: str) -> bool:
    """``bookworm`` or ``trixie-updates``; not ``bookworm-security``, another archive."""
    return "-security" not in suite and suite.split("-")[0] in {
        "bookworm",
        "trixie",
        "forky",
        "stable",
        "testing",
        "unstable",
        "sid",
    }


def debian_tree(
    dest: Path,
    release: DebianRelease = BOOKWORM,
    *,
    cache: Path = CACHE,
    minbase: Path | None = None,
    progress: Progress = None,
    arch: str = "x86_64",
) -> Path:
    """Make a bootable Debian minbase tree of ``release`` for ``arch`` in ``dest`` (absent or
    empty)."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise LabError(f"{dest} is not empty", hint="give a new folder for the image tree")
    debian = architectures.named(arch).debian
    name = release.suite if debian == "amd64" else f"{release.suite}-{debian}"
    cached = cache / "debian" / f"{name}-{_recipe_digest(release, arch)}.tar"
    if not cached.exists():
        minbase = minbase or minbase_tarball(release, progress=progress, arch=arch)
        _build_debian(cached, release, minbase, progress, arch)
    _run(
        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", str(cached)]
        + ["-C", str(dest)],
        f"tar -x {cached.name}",
    )
    return dest


def _recipe_digest(release: DebianRelease, arch: str = "x86_64") -> str:
    packages = debian_packages(arch)
    recipe = [release.suite, *packages, MARKER_UNIT, MARKER_SCRIPT, AUTOLOGIN, ROOT_PROFILE]
    console = architectures.named(arch).console
    recipe += [] if console == "ttyS0" else [console]  # x86-64's digest as it was
    return hashlib.sha256("\0".join(recipe).encode()).hexdigest()[:12]


def _build_debian(
    cached: Path, release: DebianRelease, minbase: Path, progress: Progress, arch: str = "x86_64"
) -> None:
    """Minbase plus systemd, udev and the kernel (installed by ``dim image exec``, through
    qemu-user for another architecture), the units."""
    packages = debian_packages(arch)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".debian-", dir=cached.parent) as work:
        config, state = Path(work) / "cluster.xml", Path(work) / "state"
        config.write_text(_SCRATCH_LAYOUT)

        ctx = Context(config=config, state=state)  # a scratch layout and state, not the lab's
        if progress:
            progress(f"{release.image}: {minbase.name} plus {', '.join(packages)} (apt-get)")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
        # INITRD=No: the kernel's hook makes no initramfs of its own; dim builds the node's.
        environment = ["env", "DEBIAN_FRONTEND=noninteractive", "INITRD=No"]
        try:
            image_actions.import_image(ctx, "debian", str(minbase))
            image_actions.exec_in_image(ctx, "debian", [*environment, *install])
            image_actions.exec_in_image(ctx, "debian", ["apt-get", "clean"])
        except DimError as exc:
            raise LabError(
                f"building the {release.image} image: {exc.message}", hint=exc.hint
            ) from None
        tree = Path(work) / "tree"
        _run(["cp", "-a", str(StatePaths(state).live("debian")), str(tree)], "cp -a")
        _finish_debian(tree, architectures.named(arch).console)
        partial = Path(work) / "debian.tar"
        _tar_create(tree, partial)
        os.rename(partial, cached)
    prefix = cached.name.rsplit("-", 1)[0]
    for older in cached.parent.glob(f"{prefix}-*.tar"):  # other recipes
        if older != cached and older.name.rsplit("-", 1)[0] == prefix:
            older.unlink()


_SCRATCH_LAYOUT = """<?xml version="1.0"?>
<cluster name="scratch" domain="scratch.dim">
  <network name="boot" subnet="10.254.0.0/24" gateway="10.254.0.1"/>
  <server name="srv" address="10.254.0.1" dhcp="none" nfs="none"/>
  <image name="debian"/>
  <group name="nodes" nodes="scratch1"><interface network="boot" ip="10.254.0.10"/></group>
</cluster>
"""


def _finish_debian(tree: Path, console: str = "ttyS0") -> None:
    """The marker unit and the console shell (on ``console``, the architecture's serial
    console): all the lab adds to the release's tree."""
    units = tree / "etc/systemd/system"
    _write(units / "dim-node-up.service", MARKER_UNIT.replace("ttyS0", console))
    _write(tree / "usr/local/sbin/dim-node-up", MARKER_SCRIPT.replace("ttyS0", console), 0o755)
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "dim-node-up.service").symlink_to("/etc/systemd/system/dim-node-up.service")
    _write(units / f"serial-getty@{console}.service.d/autologin.conf", AUTOLOGIN)
    with (tree / "root/.profile").open("a") as profile:
        profile.write("\n" + ROOT_PROFILE.replace("ttyS0", console))


def _tar_create(root: Path, archive: Path) -> None:
    _run(
        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cpf", str(archive)]
        + ["-C", str(root), "."],
        f"tar -c {archive.name}",
    )


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
