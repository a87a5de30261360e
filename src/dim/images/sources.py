"""Sources of a new image version: each fills a staging folder with the complete new tree.

Files that did not change are hard links to the latest version's (rsync ``--link-dest``, or a
hard-link farm for ``exec`` and rollback), so a version costs only what changed::

    fill(parse_source("/srv/master"), change.staging, change.latest_path)
    fill(parse_source("ssh://root@master1/"), change.staging, change.latest_path,
         excludes=image.keepout)
    run_in_image(change.latest_path, change.staging, work, ["apt-get", "install", "-y", "vim"])
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from dim import processes
from dim.errors import ImageError, UsageError
from dim.files import remove_path, remove_tree
from dim.images.links import set_metadata
from dim.images.tree import entry, scan

# What a running master node has that is not part of its image: the mount points stay.
RUNTIME_PATHS = ("/proc", "/sys", "/dev", "/run", "/tmp")
DEFAULT_SSH = (
    "ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=3"
)
RSYNC_TIMEOUT = 120  # seconds without any data before rsync gives up
# --modify-window=-1: compare times to the nanosecond; a file changed within the same second
# as the previous import would otherwise look unchanged and be linked, not copied
RSYNC = [
    "rsync",
    "-aHAX",
    "--numeric-ids",
    "--delete",
    "--modify-window=-1",
    f"--timeout={RSYNC_TIMEOUT}",
]
_SSH_URL = re.compile(
    r"ssh://(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)?"
)


@dataclass(frozen=True, slots=True)
class Source:
    kind: str  # directory | tarball | ssh
    location: str
    user: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}" if self.kind != "ssh" else self.location


def parse_source(text: str) -> Source:
    """``DIR``, ``FILE.tar[.gz|.xz|.zst…]`` or ``ssh://[USER@]HOST[:PORT][/PATH]``."""
    if text.startswith("ssh://"):
        match = _SSH_URL.fullmatch(text)
        if match is None:
            raise UsageError(f"invalid ssh source {text!r}: use ssh://[USER@]HOST[:PORT][/PATH]")
        return Source(
            "ssh", text, match["user"], match["host"], int(match["port"]) if match["port"] else None
        )
    path = Path(text)
    if path.is_dir():
        return Source("directory", str(path.resolve()))
    if path.is_file():
        return Source("tarball", str(path.resolve()))
    raise UsageError(
        f"source {text!r} does not exist", hint="give a directory, a tarball or ssh://HOST[/PATH]"
    )


def fill(
    source: Source,
    staging: Path,
    latest: Path | None,
    *,
    excludes: tuple[str, ...] = (),
    ssh_command: str | None = None,
) -> None:
    """Fill ``staging`` with the source's tree, linking what ``latest`` has unchanged."""
    staging.mkdir(parents=True, exist_ok=True)
    if source.kind == "directory":
        _rsync(f"{source.location.rstrip('/')}/", staging, latest, excludes, source)
    elif source.kind == "tarball":
        unpacked = staging.with_name(staging.name + "-tar")
        try:
            _untar(Path(source.location), unpacked)
            _rsync(f"{unpacked}/", staging, latest, excludes, source)
        finally:
            remove_tree(unpacked)
    else:
        remote = f"{source.user + '@' if source.user else ''}{source.host}:"
        path = _SSH_URL.fullmatch(source.location)["path"] or "/"
        command = ssh_command or os.environ.get("DIM_SSH_COMMAND") or DEFAULT_SSH
        if source.port:
            command += f" -p {source.port}"
        runtime = tuple(f"{p}/*" for p in RUNTIME_PATHS)
        _rsync(
            f"{remote}{path.rstrip('/')}/",
            staging,
            latest,
            runtime + excludes,
            source,
            ["-e", command],
        )


def _rsync(
    origin: str,
    staging: Path,
    latest: Path | None,
    excludes: tuple[str, ...],
    source: Source,
    extra: list[str] | None = None,
) -> None:
    command = [*RSYNC, *(extra or [])]
    if latest is not None:
        command.append(f"--link-dest={Path(latest).resolve()}")
    command += [f"--exclude={pattern}" for pattern in excludes]
    command += [origin, f"{staging}/"]
    run = processes.run(command)
    # 24: files vanished on the source while it was read (a running master node): normal
    if run.returncode not in (0, 24):
        raise ImageError(
            f"cannot read {source}: {_last_error(run.stderr) or f'rsync exited {run.returncode}'}",
            hint=_hint(source, run.returncode),
        )


def _hint(source: Source, status: int) -> str | None:
    # ssh failed: rsync exits 255 if it saw ssh's status, 12 if it saw the broken stream first
    if source.kind == "ssh" and status in (12, 255):
        return (
            "check that the host is up and accepts key-based ssh as root "
            "(DIM_SSH_COMMAND sets the ssh command)"
        )
    if status == 11:
        return "the disk may be full: df -h the state folder"
    return None


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if any(w in line for w in ("ssh:", "Permission denied", "No such", "error", "failed")):
            return line
    return lines[-1] if lines else ""


def _untar(tarball: Path, folder: Path) -> None:
    folder.mkdir(parents=True)
    command = [
        "tar",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "-xpf",
        str(tarball),
        "-C",
        str(folder),
    ]
    run = processes.run(command)
    if run.returncode != 0:
        raise ImageError(
            f"cannot unpack {tarball}: {_last_error(run.stderr)}",
            hint="the disk may be full" if "space" in run.stderr else None,
        )


# -- hard-link farms: rollback and exec --------------------------------------------------------


def link_farm(version: Path, staging: Path) -> None:
    """A copy of ``version`` in ``staging`` whose files are hard links: directories are new."""
    entries = scan(version)
    staging.mkdir(parents=True, exist_ok=True)
    base_from, base_to = str(version), str(staging)
    dirs = []
    for path, e in entries.items():
        where = f"{base_to}/{path}" if path else base_to
        if e.kind == "d":
            if path:
                os.mkdir(where)
            dirs.append((where, e))
        else:
            os.link(f"{base_from}/{path}", where, follow_symlinks=False)
    for where, e in reversed(dirs):
        set_metadata(where, e)
        os.utime(where, ns=(e.mtime_ns, e.mtime_ns))


# -- exec: a command in a chroot over an overlay of the latest version ----------------------

_EXEC_SCRIPT = r"""
set -e
mount -t overlay dim-exec -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
m="$4"; shift 4
[ -d "$m/proc" ] && mount -t proc proc "$m/proc"
[ -d "$m/sys" ] && mount --rbind /sys "$m/sys" && mount --make-rslave "$m/sys"
[ -d "$m/dev" ] && mount --rbind /dev "$m/dev" && mount --make-rslave "$m/dev"
[ -d "$m/tmp" ] && mount -t tmpfs tmpfs "$m/tmp"
[ -d "$m/run" ] && mount -t tmpfs tmpfs "$m/run"
if [ -f "$m/etc/resolv.conf" ] && [ ! -L "$m/etc/resolv.conf" ] && [ -f /etc/resolv.conf ]; then
    mount --bind /etc/resolv.conf "$m/etc/resolv.conf"
fi
exec chroot "$m" "$@"
"""
OVERLAY_XATTR = "trusted.overlay."


def run_in_image(lower: Path, staging: Path, work: Path, command: list[str]) -> None:
    """Run ``command`` chrooted over an overlay of ``lower``; fill ``staging`` with the result.

    The overlay and its bind mounts live in a private mount namespace, so they vanish with
    the command even if dim is killed. The overlay's upper layer is exactly the change: it is
    applied to a hard-link farm of ``lower`` (whiteouts remove, opaque directories replace).
    """
    upper, scratch, merged = work / "upper", work / "work", work / "merged"
    for folder in (upper, scratch, merged):
        folder.mkdir(parents=True, exist_ok=True)
    # the upper root gives the merged root its owner, mode and times: start from the image's
    root = entry(lower)
    set_metadata(str(upper), root)
    os.utime(upper, ns=(root.mtime_ns, root.mtime_ns))
    # In a PID namespace of its own, the command's whole process tree dies with unshare,
    # which dies with dim: no command runs on without the image's lock.
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        _EXEC_SCRIPT,
        "dim-exec",
        str(lower),
        str(upper),
        str(scratch),
        str(merged),
        *command,
    ]
    try:
        status = processes.run(argv, capture=False).returncode
    except FileNotFoundError as exc:
        raise ImageError(f"cannot run {exc.filename}: not installed") from None
    if status != 0:
        raise ImageError(
            f"the command {shlex.join(command)} exited with status {status}: "
            "no version recorded, live untouched"
        )
    link_farm(lower, staging)
    apply_upper(upper, staging)


def apply_upper(upper: Path, target: Path) -> None:
    """Apply an overlayfs upper layer to ``target`` (same file system: entries are moved)."""
    # a directory's metadata is read before its entries are moved out, which changes its time
    dirs = [(target, entry(upper))]
    stack = [""]
    while stack:
        relative = stack.pop()
        source = upper / relative if relative else upper
        for name in sorted(os.listdir(source)):
            path = f"{relative}/{name}" if relative else name
            origin, where = source / name, target / path
            st = os.lstat(origin)
            if _is_whiteout(st):
                remove_path(where)
                continue
            if os.path.isdir(origin) and not os.path.islink(origin):
                if _opaque(origin) or (os.path.lexists(where) and not where.is_dir()):
                    remove_path(where)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(where)
                dirs.append((where, entry(origin)))
                stack.append(path)
                continue
            remove_path(where)
            os.rename(origin, where)
            _strip_overlay_xattrs(where)
    # directories of the upper layer carry the merged metadata: apply it, deepest first
    for where, e in reversed(dirs):
        e = replace(e, xattrs=tuple((n, v) for n, v in e.xattrs if not n.startswith(OVERLAY_XATTR)))
        set_metadata(str(where), e)
        os.utime(where, ns=(e.mtime_ns, e.mtime_ns))


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _strip_overlay_xattrs(where: Path) -> None:
    try:
        names = os.listxattr(where, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(OVERLAY_XATTR):
            with contextlib.suppress(OSError):
                os.removexattr(where, name, follow_symlinks=False)
