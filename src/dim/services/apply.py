"""Install rendered files: compare, validate with the real daemons, write atomically, reload.

    >>> result = apply(files, Path("/"), servers_reload, dry_run=False)

Order, so that a failure changes nothing or leaves something a re-run completes:

1. compare each rendered file with what is on disk under ``root`` (content, mode, link target);
   files that dim installed last time (listed in ``<root>/etc/dim/applied.list``) and no longer
   renders are to be removed;
2. for every service with a changed file, run the daemon's own test mode on the complete new
   configuration in a temporary folder; any refusal stops here, nothing written;
3. write each changed file to a temporary name in its folder, fsync, rename over the old one
   (links likewise); fsync the folders; record the new list of installed files;
4. run the reload command of every service whose files changed.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dim import processes
from dim.errors import ApplyError, ValidationError
from dim.files import fsync_folder, temporary_name, write_atomically
from dim.services.limits import SYSCTL_CONF
from dim.services.manifest import PATH as MANIFEST
from dim.services.manifest import Manifest
from dim.services.rendering import RenderedFile
from dim.services.units import DNS_RELOAD

DEFAULT_RELOAD = {
    "dnsmasq": "systemctl restart dnsmasq",
    "kea": "systemctl reload kea-dhcp4-server",
    "isc": "systemctl restart isc-dhcp-server",
    "tftp": "systemctl restart dnsmasq",
    "dns": DNS_RELOAD,
    # daemon-reload: a CephFS head's drop-in (dim.services.nfs._grace_files) may be new
    "ganesha": "systemctl daemon-reload && systemctl restart nfs-ganesha",
    "kernel": "exportfs -ra",
    "keepalived": "systemctl reload keepalived",
    "sysctl": f"sysctl -p {SYSCTL_CONF}",
}
VALIDATION_TIMEOUT = 120
LISTED = 64  # links to one folder above which plan() lists the folder rather than each link


# Not frozen: 300,000 of them in a first apply at 100,000 nodes (dim.layout.model.Node says
# why). Treat them as immutable all the same.
@dataclass(slots=True)
class FileChange:
    """A file (or link) of the target system to create, update or remove."""

    path: str
    action: str  # create | update | remove
    file: RenderedFile | None
    old: bytes | None = None  # previous content of a regular file, for --diff

    @property
    def service(self) -> str | None:
        return self.file.service if self.file is not None else None


@dataclass(slots=True)
class ApplyResult:
    changes: list[FileChange]
    unchanged: int
    validated: list[str] = field(default_factory=list)
    not_validated: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "remove": 0}
        for change in self.changes:
            counts[change.action] += 1
        return counts


def target(root: Path, path: str) -> str:
    """Where ``path`` of the target system lies under ``root``.

    Plain strings, not pathlib: this runs for each of 300,000 files at 100,000 nodes.
    """
    return str(root).rstrip("/") + path


# -- 1. compare ------------------------------------------------------------------------------


def plan(
    files: list[RenderedFile],
    root: Path,
    manifest: Manifest | None = None,
    *,
    removed: Iterable[str] | None = None,
) -> tuple[list[FileChange], int]:
    """The changes that would make ``root`` match ``files``, and the count of unchanged files.

    Files dim installed and no longer renders are removed: those of the manifest that are not
    in ``files``, or, for a partial list of files (an incremental apply,
    :mod:`dim.services.incremental`), those of ``removed`` that the manifest holds.

    Each folder is listed once. A link that is still a link and whose target the manifest
    recorded as the rendered one is unchanged without a ``readlink``: at 100,000 nodes that
    spares 300,000 system calls.
    """
    manifest = manifest if manifest is not None else Manifest.read(target(root, MANIFEST))
    recorded = manifest.entries
    changes: list[FileChange] = []
    listings: dict[str, dict[str, bool]] = {}
    prefix = target(root, "")
    # A folder is listed when many links go there (100,000 a folder at 100,000 nodes); a few
    # links (an incremental apply's) are looked at one by one, not by listing their folder.
    links = Counter([f.path[: f.path.rfind("/")] for f in files if f.link is not None])
    crowded = {folder for folder, count in links.items() if count > LISTED}
    for file in files:  # once per file, 300,000 at 100,000 nodes: locals, few calls
        path = file.path
        if file.link is not None:
            folder, _, name = path.rpartition("/")
            if folder in crowded:
                listing = listings.get(folder)
                if listing is None:
                    listing = listings[folder] = _listing(prefix + folder)
                is_link = listing.get(name)
                if is_link is None:
                    changes.append(FileChange(path, "create", file))
                    continue
                if is_link and recorded.get(path) == file.link:
                    continue
        change = _compare(file, prefix + path)
        if change is not None:
            changes.append(change)
    # ``removed``: what the last apply rendered, so dim's; the manifest may not have been read
    rendered = {f.path for f in files}
    gone = manifest.paths() - rendered if removed is None else set(removed) - rendered
    for path in sorted(gone):
        where = target(root, path)
        if os.path.lexists(where):
            changes.append(FileChange(path, "remove", None, _read(where)))
    return changes, len(files) - sum(1 for c in changes if c.action != "remove")


def _listing(folder: str) -> dict[str, bool]:
    """name -> whether it is a symbolic link, for every entry of ``folder``."""
    try:
        with os.scandir(folder) as entries:
            return {e.name: e.is_symlink() for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _compare(file: RenderedFile, where: str) -> FileChange | None:
    if file.link is not None:
        try:
            if os.readlink(where) == file.link:
                return None
            return FileChange(file.path, "update", file)
        except FileNotFoundError:
            return FileChange(file.path, "create", file)
        except OSError:  # a regular file where the link belongs
            return FileChange(file.path, "update", file, _read(where))
    try:
        with open(where, "rb") as handle:
            old = handle.read()
            mode = os.fstat(handle.fileno()).st_mode & 0o7777
    except FileNotFoundError:
        return FileChange(file.path, "create", file)
    except IsADirectoryError:
        raise ApplyError(f"{where} is a directory; dim wants to install a file there") from None
    if os.path.islink(where) or old != file.content or mode != file.mode:
        return FileChange(file.path, "update", file, old)
    return None


def _read(where: str) -> bytes | None:
    if os.path.islink(where) or not os.path.isfile(where):
        return None
    with open(where, "rb") as handle:
        return handle.read()


# -- 2. validate -----------------------------------------------------------------------------


DNSMASQ_CHUNK = 2000
Check = tuple[list[str], str]  # a command, and the file it checks


def _validate_dnsmasq(files: dict[str, bytes], folder: Path, root: Path) -> list[Check]:
    """dnsmasq's test mode, made to read the hosts file too, and linear in its size.

    ``dnsmasq --test`` does not read ``dhcp-hostsfile``, so its lines are inlined as
    ``dhcp-host=`` options; dnsmasq checks those in quadratic time (10,000 in 0.27 s, 20,000 in
    1.3 s here), so only the lines not already installed are checked (:func:`added_lines`),
    2,000 at a time. Whether a MAC or an address appears twice is dim's own check, before
    rendering.
    """
    conf = next(p for p in files if p.endswith(".conf"))
    base, hosts_file = [], None
    for line in files[conf].decode().splitlines():
        key, _, value = line.partition("=")
        if key == "dhcp-hostsfile" and value in files:
            hosts_file = value
        elif key not in ("addn-hosts", "tftp-root"):
            base.append(line)
    new_hosts: list[str] = []
    if hosts_file is not None:
        new_hosts = added_lines(_file_bytes(target(root, hosts_file)), files[hosts_file])
    checks = []
    for number, start in enumerate(range(0, max(len(new_hosts), 1), DNSMASQ_CHUNK)):
        chunk = [f"dhcp-host={h}" for h in new_hosts[start : start + DNSMASQ_CHUNK]]
        path = folder / f"dnsmasq-{number}.conf"
        path.write_text("\n".join(base + chunk) + "\n")
        checks.append((["dnsmasq", "--test", f"--conf-file={path}"], conf))
    return checks


def added_lines(old: bytes, new: bytes) -> list[str]:
    """The lines of ``new`` that ``old`` lacks (or a few more), to be checked by the daemon:
    every line when none of ``new``'s is in ``old`` (in file order), else sorted.

    Lines that ``old`` holds were checked when it was installed, and dnsmasq checks a
    ``dhcp-host`` line by itself (a MAC or address twice is dim's own check). The first and
    last lines that both files share, byte for byte, are not looked at: a one-node change at
    100,000 nodes splices one line of a 5 MB file, and splitting both files into sets of
    lines cost more than the rest of the apply's work (0.1 s). Of the span between, the lines
    that ``old``'s span lacks are kept: a line moved from elsewhere in ``old`` is checked
    again, harmless; no line of ``new`` outside its span can be new, since the same bytes
    lie in ``old`` as whole lines.
    """
    start, new_end, old_end = _changed_span(old, new)
    lines = new[start:new_end].split(b"\n")
    added = set(lines).difference(old[start:old_end].split(b"\n"), (b"",))
    if start == 0 and new_end == len(new) and len(added) == len(lines) - (lines[-1] == b""):
        return [h for h in new.decode().splitlines() if h]  # file order
    return sorted(h.decode() for h in added)


_BLOCK = 1 << 16  # bytes compared at once, in C


def _changed_span(old: bytes, new: bytes) -> tuple[int, int, int]:
    """``(start, new_end, old_end)``: ``new[:start] == old[:start]`` and ``new[new_end:] ==
    old[old_end:]``, both whole lines (``start`` and the ends begin lines in both files)."""
    shared = _common_prefix(old, new)
    start = new.rfind(b"\n", 0, shared) + 1  # back to the start of a line
    tail = _common_suffix(old, new, min(len(old), len(new)) - start)
    if tail == 0:
        return start, len(new), len(old)
    # forward to the start of a line in both: after the tail's first newline
    newline = new.find(b"\n", len(new) - tail)
    new_end = len(new) if newline < 0 else newline + 1
    return start, new_end, new_end + len(old) - len(new)


def _common_prefix(a: bytes, b: bytes) -> int:
    """How many first bytes ``a`` and ``b`` share: blocks compared in C, then halves."""
    limit, low = min(len(a), len(b)), 0
    while low < limit and a[low : low + _BLOCK] == b[low : low + _BLOCK]:
        low += _BLOCK
    high = min(low + _BLOCK, limit)
    if low >= limit or a[low:high] == b[low:high]:
        return high if low < limit else limit
    while high - low > 1:  # a[:low] == b[:low], a[:high] != b[:high]
        middle = (low + high) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle
    return low


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """How many last bytes ``a`` and ``b`` share, at most ``limit``."""
    end_a, end_b, low = len(a), len(b), 0
    while low < limit:
        high = min(low + _BLOCK, limit)
        if a[end_a - high : end_a - low] != b[end_b - high : end_b - low]:
            break
        low = high
    else:
        return limit
    while high - low > 1:  # the last low bytes are shared, the last high are not
        middle = (low + high) // 2
        if a[end_a - middle : end_a - low] == b[end_b - middle : end_b - low]:
            low = middle
        else:
            high = middle
    return low


def _file_bytes(path: str) -> bytes:
    """The file's bytes; none if it is not there."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return b""


def _validate_single(command: list[str], suffix: str):
    def validate(files: dict[str, bytes], folder: Path, root: Path) -> list[Check]:
        ((path, content),) = files.items()
        copy = folder / f"candidate{suffix}"
        copy.write_bytes(content)
        return [([part.replace("{}", str(copy)) for part in command], path)]

    return validate


def _validate_tftp(files: dict[str, bytes], folder: Path, root: Path) -> list[Check]:
    """dnsmasq's test mode on the TFTP-only file, without its tftp-root (which dnsmasq wants
    to exist, and which this same apply may be about to create, as for dnsmasq's own file)."""
    ((path, content),) = files.items()
    lines = [line for line in content.decode().splitlines() if not line.startswith("tftp-root=")]
    copy = folder / "dnsmasq-tftp.conf"
    copy.write_text("\n".join(lines) + "\n")
    return [(["dnsmasq", "--test", f"--conf-file={copy}"], path)]


def _validate_dns(files: dict[str, bytes], folder: Path, root: Path) -> list[Check]:
    """dnsmasq's test mode on the DNS-only file. It reads no hosts file (``addn-hosts`` is
    checked when dnsmasq starts): when only the hosts file changed, there is nothing to test
    but an empty configuration."""
    conf = next((p for p in files if p.endswith(".conf")), None)
    copy = folder / "dnsmasq-dns.conf"
    copy.write_bytes(files[conf] if conf else b"")
    return [(["dnsmasq", "--test", f"--conf-file={copy}"], conf or next(iter(files)))]


_KEA_INTERFACES = re.compile(rb'("interfaces"\s*:\s*)\[[^\]]*\]')


def _validate_kea(files: dict[str, bytes], folder: Path, root: Path) -> list[Check]:
    """kea-dhcp4 -t, on a copy that listens on "*".

    Kea's test mode refuses a configuration naming an interface this machine does not have,
    which would make staging for another server (``--root``) impossible. Which interface to
    listen on is the only thing the copy changes.
    """
    ((path, content),) = files.items()
    copy = folder / "kea-dhcp4.json"
    copy.write_bytes(_KEA_INTERFACES.sub(rb'\1[ "*" ]', content))
    return [(["kea-dhcp4", "-t", str(copy)], path)]


_CLEAN_UP: list[Path] = []  # folders of validation copies made outside the temporary one
_KEEPALIVED_INTERFACE = re.compile(r"^(\s*interface\s+|.*\sdev\s+)(\S+)", re.M)


def _validate_keepalived(files: dict[str, bytes], folder: Path, root: Path) -> list[Check]:
    """``keepalived --config-test`` on a copy that runs the new check scripts.

    keepalived refuses a check script it cannot find, and (``enable_script_security``) one in
    a folder that others may write, as /tmp is: the copies go to a folder of their own below
    /run when it can be made. It refuses an interface this machine does not have, which would
    make staging for another server impossible: the copy names one it has.
    """
    conf_path = next(p for p in files if p.endswith(".conf"))
    text = files[conf_path].decode()
    with contextlib.suppress(OSError):
        folder = Path(tempfile.mkdtemp(prefix="dim-keepalived-", dir="/run"))
        _CLEAN_UP.append(folder)
    for path, content in files.items():
        if path != conf_path:
            copy = folder / Path(path).name
            copy.write_bytes(content)
            copy.chmod(0o755)
            text = text.replace(f'"{path}"', f'"{copy}"')
    local = sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    if local:
        text = _KEEPALIVED_INTERFACE.sub(
            lambda m: m.group(1) + (m.group(2) if m.group(2) in local else local[0]), text
        )
    copy = folder / "keepalived.conf"
    copy.write_text(text)
    return [(["keepalived", "--config-test", "-f", str(copy)], conf_path)]


VALIDATORS: dict[str, Callable[[dict[str, bytes], Path, Path], list[Check]]] = {
    "keepalived": _validate_keepalived,
    "dnsmasq": _validate_dnsmasq,
    "kea": _validate_kea,
    "isc": _validate_single(["dhcpd", "-4", "-t", "-cf", "{}"], ".conf"),
    "tftp": _validate_tftp,
    "dns": _validate_dns,
}
PACKAGES = {
    "dnsmasq": "dnsmasq",
    "kea": "kea-dhcp4-server",
    "isc": "isc-dhcp-server",
    "tftp": "dnsmasq",
    "dns": "dnsmasq",
    "keepalived": "keepalived",
}


def validate(
    files: list[RenderedFile], services: Iterable[str], root: Path, *, required: bool = True
) -> tuple[list[str], list[str]]:
    """Run each service's test mode on its complete new configuration (or on a file's
    ``check``: the new entries of a spliced file, in a document of their own).

    Returns (validated, not validated). A daemon that is not installed is an error unless
    ``required`` is false, since installing an unchecked configuration is what we promise not
    to do.
    """
    validated, skipped = [], []
    for service in sorted(services):
        validator = VALIDATORS.get(service)
        if validator is None:  # no test mode (nfs-ganesha, exportfs, sysctl)
            continue
        contents = {
            f.path: f.content if f.check is None else f.check
            for f in files
            if f.service == service and f.content
        }
        with tempfile.TemporaryDirectory(prefix="dim-validate-") as tmp:
            checks = validator(contents, Path(tmp), root)
            program = checks[0][0][0]
            if shutil.which(program) is None:
                if required:
                    raise ApplyError(
                        f"cannot validate {checks[0][1]}: {program} is not installed",
                        hint=f"install {PACKAGES[service]}, or pass --skip-validation",
                    )
                skipped.append(service)
                continue
            try:
                for command, path in checks:
                    _check(service, command, path, tmp)
            finally:
                while _CLEAN_UP:
                    shutil.rmtree(_CLEAN_UP.pop(), ignore_errors=True)
        validated.append(service)
    return validated, skipped


def _check(service: str, command: list[str], path: str, tmp: str) -> None:
    env = dict(
        os.environ,
        KEA_PIDFILE_DIR=tmp,
        KEA_LOCKFILE_DIR=tmp,
        KEA_LOGGER_DESTINATION=f"{tmp}/kea.log",
    )
    try:
        run = processes.run(command, timeout=VALIDATION_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise ValidationError(service, path, f"{command[0]} timed out") from None
    if run.returncode != 0:
        raise ValidationError(service, path, _explain(run.stderr + run.stdout))


def _explain(output: str) -> str:
    """The most telling line of a daemon's complaint: one that names an error."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for line in lines:
        if any(w in line.lower() for w in ("error", "bad", "fail", "unknown", "invalid")):
            return line
    return lines[0] if lines else "no output"


# -- 3. write --------------------------------------------------------------------------------


def write(changes: list[FileChange], root: Path, manifest: Manifest | None = None) -> None:
    """Install every change atomically, and journal what dim installed."""
    manifest = manifest if manifest is not None else Manifest.read(target(root, MANIFEST))
    # Noted first, a file that a killed run created is removed by a later run if unrendered.
    manifest.intend(c.path for c in changes if c.action == "create")
    folders: set[str] = set()
    done: list[FileChange] = []
    prefix = target(root, "")
    try:
        for change in changes:  # once per file, 300,000 at 100,000 nodes: locals, few calls
            where = prefix + change.path
            folder = where.rpartition("/")[0] or "/"
            if folder not in folders:
                folders.add(folder)
                if change.action != "remove":
                    os.makedirs(folder, exist_ok=True)
            file = change.file
            if file is None:
                _unlink(where)
            elif file.link is None:
                write_atomically(where, file.content, file.mode)
            else:
                install_link(where, file.link, new=change.action == "create")
            done.append(change)
    except OSError as exc:
        raise ApplyError(
            f"cannot write {where}: {exc.strerror}",
            hint="files written so far are complete; run dim apply again once fixed",
        ) from exc
    finally:
        for folder in folders:
            fsync_folder(folder)
        manifest.record(
            [(c.path, c.file.link) for c in done if c.file is not None],
            [c.path for c in done if c.file is None],
        )


def _unlink(where: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(where)


def install_link(where: str, link: str, *, new: bool = False) -> None:
    """``where`` becomes a symbolic link to ``link``, in one rename (``new``: created)."""
    if new:
        # creating a link is atomic by itself: no temporary name needed
        try:
            os.symlink(link, where)
            return
        except FileExistsError:
            pass
    temporary = temporary_name(where)
    try:
        os.symlink(link, temporary)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(where), exist_ok=True)
        os.symlink(link, temporary)
    except FileExistsError:
        os.unlink(temporary)
        os.symlink(link, temporary)
    os.replace(temporary, where)


# -- 4. reload -------------------------------------------------------------------------------


def reload(services: Iterable[str], command_for: Callable[[str], str | None]) -> list[str]:
    """Run the reload command of each service; stop at the first that fails."""
    reloaded = []
    for service in sorted(services):
        command = command_for(service) or DEFAULT_RELOAD.get(service)
        if not command:
            continue
        # the administrator's command line, run by the shell as written in cluster.xml
        run = processes.run(["sh", "-c", command])
        if run.returncode != 0:
            raise ApplyError(
                f"the new {service} configuration is installed, but reloading it failed "
                f"({command!r} exited {run.returncode}): {_explain(run.stderr + run.stdout)}",
                hint="fix the service, or set its reload command with <reload> in cluster.xml",
            )
        reloaded.append(service)
    return reloaded


# -- all together ----------------------------------------------------------------------------


def apply(
    files: list[RenderedFile],
    root: Path,
    *,
    reload_command: Callable[[str], str | None],
    dry_run: bool = False,
    do_reload: bool = True,
    validation: bool = True,
    removed: Iterable[str] | None = None,
) -> ApplyResult:
    """Steps 1 to 4 of the module's docstring; ``removed``: see :func:`plan`.

    With ``removed`` (a partial list of files), the manifest is appended to but not read:
    300,000 lines at 100,000 nodes, for a few paths.
    """
    location = target(root, MANIFEST)
    manifest = Manifest.read(location) if removed is None else Manifest.appending(location)
    changes, unchanged = plan(files, root, manifest, removed=removed)
    result = ApplyResult(changes, unchanged, dry_run=dry_run)
    services = {c.file.service for c in changes if c.file is not None and c.file.service}
    if validation and services:
        result.validated, result.not_validated = validate(files, services, root)
    else:
        result.not_validated = sorted(s for s in services if s in VALIDATORS)
    if dry_run or not changes:
        return result
    write(changes, root, manifest)
    if do_reload:
        result.reloaded = reload(services, reload_command)
    return result


def diff(change: FileChange) -> str:
    """A unified diff of one change, for people."""
    if change.file is not None and change.file.link is not None:
        return f"--- {change.path}\n+++ {change.path}\n+-> {change.file.link}\n"
    old = (change.old or b"").decode(errors="replace").splitlines(keepends=True)
    new = b""
    if change.file is not None and change.file.content is not None:
        new = change.file.content
    if b"\0" in new or b"\0" in (change.old or b""):  # a boot loader's binary
        return f"--- {change.path}\n+++ {change.path}\nbinary: {len(new)} bytes\n"
    lines = difflib.unified_diff(
        old, new.decode(errors="replace").splitlines(keepends=True), change.path, change.path
    )
    return "".join(lines)
