"""The boot storm's ganesha variants, bench-only (bench/storm.py, bench/ganesha_exports.py):
another ganesha build run from a chroot on dim's rendered configuration, unchanged, and
single settings changed in that configuration to measure what each costs or saves.

Another release without touching the host's package: a Debian tree with that release of
``nfs-ganesha nfs-ganesha-vfs`` installed, and ganesha started in it with every path it reads
bound at the same path inside (the configuration, the image store and the nodes' replicas,
its log, pid and state folders, /proc and /dev), in the daemon's private mount namespace (the
bind mounts go with it)::

    T=/var/tmp/dsg-trixie; mkdir $T && tar -xf /var/cache/dim-tests/minbase-trixie.tar -C $T
    cp /etc/resolv.conf $T/etc/ && mount -t proc proc $T/proc  # (in an unshare --mount)
    chroot $T sh -c 'apt-get update && apt-get install -y --no-install-recommends \\
        nfs-ganesha nfs-ganesha-vfs'
    ln -sf ../proc/self/mounts $T/etc/mtab   # FSAL_VFS reads the mounts there (else no export)
    bench/storm.py … --ganesha-root $T \\
        --ganesha-option NFS_CORE_PARAM.allow_set_io_flusher_fail=true

(The option: ganesha 6 asks for PR_SET_IO_FLUSHER, which needs CAP_SYS_RESOURCE; a root
without it, as in this VM, stops ganesha 6 at start unless it is allowed to fail.)

A setting changed: ``--ganesha-option MDCACHE.Dir_Chunk=128`` replaces (or adds) that line
in that block of the rendered ganesha.conf (``EXPORT_DEFAULTS.Attr_Expiration_Time=60``
likewise); a block the file lacks is added.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from dim.lab.daemons import DaemonSpec


def chrooted(spec: DaemonSpec, root: Path, shared: list[Path]) -> DaemonSpec:
    """``spec`` run by ``chroot root``: its binds moved inside the tree, and ``shared``
    folders (those its command line and configuration name) bound at their own paths."""
    binds = {f"{root}{target}": source for target, source in spec.binds.items()}
    binds |= {f"{root}/proc": Path("/proc"), f"{root}/dev": Path("/dev")}
    binds |= {f"{root}{folder}": folder for folder in shared}
    return replace(spec, command=("chroot", str(root), *spec.command), binds=binds)


def set_options(conf: str, options: list[str]) -> str:
    """``conf`` with each ``BLOCK.Name=Value`` of ``options`` set in its block."""
    for option in options:
        found = re.fullmatch(r"(\w+)\.(\w+)=(.+)", option)
        if not found:
            raise SystemExit(f"--ganesha-option {option!r}: not BLOCK.Name=Value")
        block, name, value = found.groups()
        head = re.search(rf"^{block} \{{\n", conf, re.M)
        if head is None:
            conf = f"{block} {{\n    {name} = {value};\n}}\n" + conf
            continue
        end = conf.index("\n}", head.end() - 1)
        body = conf[head.end() : end + 1]
        line = re.compile(rf"^\s*{name} = [^;]*;\n", re.M | re.I)
        body = line.sub("", body) + f"    {name} = {value};\n"
        conf = conf[: head.end()] + body + conf[end + 1 :]
    return conf
