"""Sources of a new image version: each fills a staging folder with what changes.

The first version's staging holds the whole tree. After it, a source compares itself with
live (the latest version's whole tree) and stages only what differs, each entry with its new
metadata and the folders leading there, and returns the paths it removes; so a version costs
what changed, not what the image holds (see :mod:`dim.images.history`)::

    change.removed = fill(parse_source("/srv/master"), change.staging, change.live)
    change.removed = fill(parse_source("ssh://root@master1/"), change.staging, change.live,
                          excludes=image.keepout)
    change.removed = run_in_image(change.live, change.staging, work, ["apt-get", "install",
                                  "-y", "vim"])

A directory, a tarball or a master node is read by rsync twice: a dry run against live
lists what differs (``--itemize-changes``; rsync's walk of both trees is the one whole-tree
cost left), then only those paths are copied (``--files-from``). ``exec``'s overlay upper
layer is the change itself: it becomes the staging folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from dim import processes
from dim.errors import ImageError, UsageError
from dim.files import remove_tree
from dim.images.links import set_metadata
from dim.images.tree import entry

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
    live: Path | None,
    *,
    excludes: tuple[str, ...] = (),
    ssh_command: str | None = None,
) -> set[str]:
    """Fill ``staging`` with the source's whole tree (``live`` None: a first version) or with
    what differs from ``live``; return the paths the source no longer has."""
    staging.mkdir(parents=True, exist_ok=True)
    if source.kind == "tarball":
        unpacked = staging.with_name(staging.name + "-tar")
        try:
            _untar(Path(source.location), unpacked)
            return _fill_from(f"{unpacked}/", staging, live, excludes, source)
        finally:
            remove_tree(unpacked)
    if source.kind == "directory":
        return _fill_from(f"{source.location.rstrip('/')}/", staging, live, excludes, source)
    remote = f"{source.user + '@' if source.user else ''}{source.host}:"
    path = _SSH_URL.fullmatch(source.location)["path"] or "/"
    command = ssh_command or os.environ.get("DIM_SSH_COMMAND") or DEFAULT_SSH
    if source.port:
        command += f" -p {source.port}"
    runtime = tuple(f"{p}/*" for p in RUNTIME_PATHS)
    origin = f"{remote}{path.rstrip('/')}/"
    return _fill_from(origin, staging, live, runtime + excludes, source, ["-e", command])


def _fill_from(
    origin: str,
    staging: Path,
    live: Path | None,
    excludes: tuple[str, ...],
    source: Source,
    extra: list[str] | None = None,
) -> set[str]:
    if live is None:
        _rsync(origin, staging, excludes, source, extra)
        return set()
    # --delete-excluded: what the source leaves out goes from the image, as it always did
    listing = _rsync(origin, live, excludes, source, [*(extra or []), *DIFFERENCES], capture=True)
    changed, removed = parse_itemized(listing)
    if changed:
        names = b"".join(os.fsencode(p or ".") + b"\0" for p in changed)
        listed = staging.with_name(staging.name + ".list")
        listed.write_bytes(names)
        try:
            _rsync(
                origin,
                staging,
                excludes,
                source,
                [*(extra or []), "--from0", f"--files-from={listed}"],
            )
        finally:
            listed.unlink(missing_ok=True)
    if "" not in changed:  # the staging root stands for live's, which did not change
        root = entry(live)
        set_metadata(str(staging), root)
        os.utime(staging, ns=(root.mtime_ns, root.mtime_ns))
    return removed


# a dry run against live that lists each differing path (rsync's --itemize-changes)
DIFFERENCES = ["--dry-run", "--delete-excluded", "--out-format=%i %n"]
_ESCAPED = re.compile(rb"\\#([0-7]{3})")


def parse_itemized(listing: bytes) -> tuple[list[str], set[str]]:
    """The paths to copy and the paths to remove, from rsync's ``%i %n`` lines.

    >>> parse_itemized(b">f.st...... etc/motd\\n*deleting   var/old/\\n.d..t...... ./\\n")
    (['etc/motd', ''], {'var/old'})
    """
    changed, removed = [], set()
    for line in listing.split(b"\n"):
        if len(line) < 13 or line[11:12] != b" ":
            continue  # not an itemized line (rsync's own messages)
        code, name = line[:11], _ESCAPED.sub(lambda m: bytes([int(m[1], 8)]), line[12:])
        path = os.fsdecode(name.rstrip(b"/"))
        path = "" if path == "." else path
        if code.startswith(b"*deleting"):
            removed.add(path)
        else:
            changed.append(path)
    return changed, removed


def _rsync(
    origin: str,
    target: Path,
    excludes: tuple[str, ...],
    source: Source,
    extra: list[str] | None = None,
    *,
    capture: bool = False,
) -> bytes:
    command = [*RSYNC, *(extra or [])]
    command += [f"--exclude={pattern}" for pattern in excludes]
    command += [origin, f"{target}/"]
    run = processes.run(command, text=not capture)
    # 24: files vanished on the source while it was read (a running master node): normal
    if run.returncode not in (0, 24):
        stderr = run.stderr if isinstance(run.stderr, str) else os.fsdecode(run.stderr)
        raise ImageError(
            f"cannot read {source}: {_last_error(stderr) or f'rsync exited {run.returncode}'}",
            hint=_hint(source, run.returncode),
        )
    return run.stdout if capture else b""


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


def run_in_image(lower: Path, staging: Path, work: Path, command: list[str]) -> set[str]:
    """Run ``command`` chrooted over an overlay of ``lower``; stage its change in ``staging``
    and return the paths it removed.

    The overlay and its bind mounts live in a private mount namespace, so they vanish with
    the command even if dim is killed. The overlay's upper layer is exactly the change: it
    becomes the staging folder (:func:`stage_upper`).
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
    return stage_upper(upper, staging, lower)


def stage_upper(upper: Path, staging: Path, lower: Path) -> set[str]:
    """Turn an overlayfs upper layer into a staging folder (renamed to ``staging``) and return
    the paths it removes from ``lower``: each whiteout, and what a lower directory held that
    its opaque replacement does not. Overlay's own extended attributes go; every directory
    keeps the metadata the merged tree gave it, deepest first."""
    removed: set[str] = set()
    dirs = []
    stack = [""]
    while stack:
        relative = stack.pop()
        folder = f"{upper}/{relative}" if relative else str(upper)
        dirs.append((folder, entry(folder)))  # before its whiteouts go, which changes its time
        names = set(os.listdir(folder))
        if relative and _opaque(Path(folder)):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                below = f"{relative}/" if relative else ""
                removed.update(
                    below + n for n in os.listdir(f"{lower}/{relative}") if n not in names
                )
        for name in sorted(names):
            path = f"{relative}/{name}" if relative else name
            where = f"{folder}/{name}"
            st = os.lstat(where)
            if _is_whiteout(st):
                os.unlink(where)
                removed.add(path)
            elif stat.S_ISDIR(st.st_mode):
                stack.append(path)
            else:
                _strip_overlay_xattrs(Path(where))
    for folder, e in reversed(dirs):
        e = replace(e, xattrs=tuple((n, v) for n, v in e.xattrs if not n.startswith(OVERLAY_XATTR)))
        set_metadata(folder, e)
        os.utime(folder, ns=(e.mtime_ns, e.mtime_ns))
    _move_tree(upper, staging)
    return removed


def _move_tree(folder: Path, target: Path) -> None:
    """``folder`` renamed to ``target``, or copied there whole (hard links, attributes,
    devices) when it lies on another file system (:func:`upper_folder`)."""
    if os.stat(folder).st_dev == os.stat(target.parent).st_dev:
        os.rename(folder, target)
        return
    argv = ["rsync", "-aHAX", "--numeric-ids", f"{folder}/", f"{target}/"]
    copied = processes.run(argv)
    if copied.returncode != 0:
        raise ImageError(f"cannot copy the change of exec into the store: {copied.stderr.strip()}")
    remove_tree(folder)


# File systems that cannot be an overlay's upper layer: FUSE has no RENAME_WHITEOUT (the
# kernel says "overlayfs: upper fs missing required features" for ceph-fuse, for one).
NO_UPPER = ("fuse", "fuseblk")
SCRATCH = Path("/var/tmp")  # exec's overlay when the store cannot hold it: a local disk


def upper_folder(store_folder: Path, pid: int) -> Path:
    """Where ``image exec`` keeps its overlay (upper, work and merged folders): in the store
    (``store_folder``, so that the change becomes the staging folder by a rename), unless the
    store's file system cannot be an overlay's upper layer; then a new folder of
    :data:`SCRATCH`, and the change is copied into the store."""
    if filesystem_type(store_folder.parent).partition(".")[0] not in NO_UPPER:
        return store_folder
    return Path(tempfile.mkdtemp(prefix=f"dim-exec-{pid}-", dir=SCRATCH))


def filesystem_type(path: Path) -> str:
    """The type of the file system holding ``path`` (``ext4``, ``fuse.ceph-fuse``…), from the
    mount that is its longest prefix in /proc/self/mountinfo; "" if none is found."""
    where, found, longest = os.path.realpath(path), "", -1
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
        for line in mounts:
            fields, _, rest = line.partition(" - ")
            point = fields.split()[4].replace("\\040", " ")
            inside = where == point or where.startswith(point.rstrip("/") + "/")
            if inside and len(point) > longest:
                found, longest = rest.split()[0], len(point)
    return found


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
