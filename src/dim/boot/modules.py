"""Kernel modules of an image: which ones a network boot needs, and in what order to load them.

Pure functions over the text of ``lib/modules/<version>/modules.dep`` and its companions
(``modules.builtin``, ``modules.alias``, ``modules.softdep``), as ``depmod`` writes them::

    >>> index = parse("kernel/fs/nfs/nfs.ko: kernel/net/sunrpc/sunrpc.ko\\n"
    ...               "kernel/net/sunrpc/sunrpc.ko:\\n")
    >>> load_order(index, ["nfs"])
    ['sunrpc', 'nfs']

:func:`select` applies dim's policy (:data:`WANTED`): NFS and af_packet must be there (built in
or as modules), a missing one is a `BootError` naming the module and the image; NIC drivers are
taken where present, and only virtio_net and e1000 (the lab's and most hypervisors' NICs) are
worth a warning when absent; overlay, loop and ext4 are carried for writable layers and give a
warning when absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dim.errors import BootError

#: Module suffixes depmod knows; compressed modules are decompressed when the initramfs is built.
SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")

REQUIRED = "required"  # missing: BootError
WARN = "warn"  # missing: a warning
OPTIONAL = "optional"  # missing: nothing said

#: What a network boot needs, and what dim says when the image does not have it.
WANTED: tuple[tuple[str, str], ...] = (
    ("af_packet", REQUIRED),  # udhcpc's raw sockets
    ("sunrpc", REQUIRED),
    ("nfs", REQUIRED),
    ("nfsv3", REQUIRED),
    ("nfsv4", REQUIRED),
    ("virtio_pci", WARN),  # the bus virtio-net-pci sits on
    ("virtio_net", WARN),
    ("e1000", WARN),
    ("e1000e", OPTIONAL),
    ("igb", OPTIONAL),
    ("ixgbe", OPTIONAL),
    ("mlx5_core", OPTIONAL),
    ("overlay", WARN),
    ("loop", WARN),
    ("ext4", WARN),
)


@dataclass(frozen=True, slots=True)
class ModuleIndex:
    """What depmod recorded about one kernel's modules."""

    paths: dict[str, str]  # module name -> file, relative to lib/modules/<version>
    deps: dict[str, tuple[str, ...]]  # module name -> dependencies as modules.dep lists them
    builtin: frozenset[str] = frozenset()
    aliases: dict[str, tuple[str, ...]] | None = None  # exact aliases only, no wildcards
    softdeps: dict[str, tuple[str, ...]] | None = None  # module -> its "pre:" soft dependencies


@dataclass(frozen=True, slots=True)
class Module:
    """One module to load: its name, its file, and whether the boot fails without it."""

    name: str
    path: str  # relative to lib/modules/<version>
    required: bool


@dataclass(frozen=True, slots=True)
class Selection:
    """The modules an initramfs carries, in load order, and what the image lacked."""

    modules: tuple[Module, ...]
    builtin: tuple[str, ...]  # wanted modules built into the kernel
    absent: tuple[str, ...]  # wanted modules the image does not have at all
    warnings: tuple[str, ...]


def module_name(path: str) -> str:
    """``kernel/arch/x86/crypto/crc32c-intel.ko.xz`` -> ``crc32c_intel``."""
    name = path.rsplit("/", 1)[-1]
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return normalize(name)


def normalize(name: str) -> str:
    """Module names are the same with ``-`` or ``_``; the kernel writes ``_``."""
    return name.replace("-", "_")


def parse(dep: str, builtin: str = "", alias: str = "", softdep: str = "") -> ModuleIndex:
    """A `ModuleIndex` from the texts of modules.dep, .builtin, .alias and .softdep."""
    paths: dict[str, str] = {}
    listed: dict[str, list[str]] = {}
    for number, line in enumerate(dep.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        module, colon, rest = line.partition(":")
        if not colon:
            raise BootError(f"modules.dep line {number} has no ':': {line!r}")
        path = _relative(module.strip())
        paths[module_name(path)] = path
        listed[module_name(path)] = [_relative(p) for p in rest.split()]
    deps = {name: tuple(module_name(p) for p in files) for name, files in listed.items()}
    built = frozenset(module_name(ln.strip()) for ln in builtin.splitlines() if ln.strip())
    return ModuleIndex(paths, deps, built, _aliases(alias), _softdeps(softdep))


def load_index(folder: Path) -> ModuleIndex:
    """Read ``folder`` (an image's lib/modules/<version>); modules.dep must be there."""
    dep = folder / "modules.dep"
    if not dep.is_file():
        raise BootError(
            f"{dep} is missing",
            hint=f"run depmod for that kernel in the image (dim image exec IMAGE -- depmod "
            f"{folder.name})",
        )

    def text(name: str) -> str:
        path = folder / name
        return path.read_text(errors="replace") if path.is_file() else ""

    return parse(
        dep.read_text(errors="replace"),
        text("modules.builtin"),
        text("modules.alias"),
        text("modules.softdep"),
    )


def load_order(index: ModuleIndex, names: Iterable[str]) -> list[str]:
    """``names`` and everything they depend on, each once, dependencies first.

    modules.dep lists a module's dependencies with the one to load last first, as modprobe
    reads them: ``nfs.ko: lockd.ko grace.ko sunrpc.ko`` loads sunrpc, grace, lockd, then nfs.
    "pre:" soft dependencies (ext4 wants crc32c) come before their module; those that are
    aliases resolve through modules.alias. Built-in and unknown names are left out.
    """
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name not in index.paths:
            return
        if name in path:  # a cycle in modules.dep: depmod refuses them, be safe anyway
            return
        for soft in (index.softdeps or {}).get(name, ()):
            for target in resolve(index, soft):
                visit(target, (*path, name))
        for dep in reversed(index.deps.get(name, ())):
            visit(dep, (*path, name))
        if name not in seen:
            seen.add(name)
            order.append(name)

    for name in names:
        visit(normalize(name), ())
    return order


def resolve(index: ModuleIndex, name: str) -> tuple[str, ...]:
    """Modules that ``name`` stands for: itself if it is one, else an exact alias's targets."""
    name = normalize(name)
    if name in index.paths or name in index.builtin:
        return (name,)
    return tuple(t for t in (index.aliases or {}).get(name, ()) if t in index.paths)


def select(
    index: ModuleIndex, *, image: str, wanted: tuple[tuple[str, str], ...] = WANTED
) -> Selection:
    """The modules an initramfs for ``image`` carries, by dim's policy (see :data:`WANTED`).

    A required module is marked so in the result together with its dependencies: /init stops
    with a clear message when one of those fails to load, and only warns for the others.
    """
    builtin, absent, warnings, missing = [], [], [], []
    present = []
    for name, policy in wanted:
        if name in index.builtin:
            builtin.append(name)
        elif name in index.paths:
            present.append((name, policy))
        else:
            absent.append(name)
            if policy == REQUIRED:
                missing.append(name)
            elif policy == WARN:
                warnings.append(f"image {image} has no {name} module: {_WHY.get(name, name)}")
    if missing:
        raise BootError(
            f"image {image} lacks the kernel module{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}, which a network boot needs (neither in modules.dep nor "
            "built in)",
            hint="install the distribution's full kernel package in the image, then rebuild",
        )
    needed = set(load_order(index, [n for n, policy in present if policy == REQUIRED]))
    order = load_order(index, [n for n, _policy in present])
    modules = tuple(Module(n, index.paths[n], n in needed) for n in order)
    return Selection(modules, tuple(builtin), tuple(absent), tuple(warnings))


def modules_dep(index: ModuleIndex, modules: Iterable[Module]) -> str:
    """A modules.dep for just ``modules``, as the initramfs stores them (uncompressed .ko)."""
    carried = {m.name: uncompressed_path(m.path) for m in modules}
    lines = []
    for name, path in carried.items():
        deps = [carried[d] for d in index.deps.get(name, ()) if d in carried]
        lines.append(f"{path}: {' '.join(deps)}".rstrip() if deps else f"{path}:")
    return "".join(line + "\n" for line in sorted(lines))


_WHY = {
    "virtio_pci": "virtio NICs (QEMU, KVM) will not be found",
    "virtio_net": "virtio NICs (QEMU, KVM) will not work",
    "e1000": "Intel e1000 NICs (QEMU's default, VMware) will not work",
    "overlay": "no overlay file systems on the node",
    "loop": "no loop devices on the node",
    "ext4": "no ext4 on the node",
}

_ALIAS = re.compile(r"alias\s+(\S+)\s+(\S+)")
_SOFTDEP = re.compile(r"softdep\s+(\S+)\s+(.*)")


def _relative(path: str) -> str:
    """Paths in modules.dep are relative to lib/modules/<version>, or absolute in old ones."""
    if path.startswith("/"):
        _, _, after = path.partition("/lib/modules/")
        return after.partition("/")[2] or path.lstrip("/")
    return path


def uncompressed_path(path: str) -> str:
    """Where a module is in the initramfs: ``nfs.ko.xz`` is decompressed to ``nfs.ko``."""
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz"):
        if path.endswith(suffix):
            return path[: -len(suffix)] + ".ko"
    return path


def _aliases(text: str) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _ALIAS.match(line)
        if match and not any(c in match.group(1) for c in "*?["):
            found.setdefault(normalize(match.group(1)), []).append(normalize(match.group(2)))
    return {alias: tuple(targets) for alias, targets in found.items()}


def _softdeps(text: str) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _SOFTDEP.match(line)
        if not match:
            continue
        words = match.group(2).split()
        pre = words[words.index("pre:") + 1 :] if "pre:" in words else []
        pre = pre[: pre.index("post:")] if "post:" in pre else pre
        if pre:
            found.setdefault(normalize(match.group(1)), []).extend(pre)
    return {module: tuple(names) for module, names in found.items()}
