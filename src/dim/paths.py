"""The state folder's layout: the one place that knows where dim keeps what.

::

    <state>/state.db                            the state DB (SQLite, unless --database)
    <state>/boot-targets.db                     MAC -> node, network, image: dim serve's answers
                                                while the state DB is unreachable
    <state>/images/<image>/live/                the tree nodes mount read-only as their root
    <state>/images/<image>/live.version         which version live matches (written last)
    <state>/images/<image>/versions/<N>/        what version N wrote (the whole tree if full)
    <state>/images/<image>/meta/<N>.json        when and from what version N was made
    <state>/images/<image>/meta/<N>.changes     the paths version N wrote and removed (absent:
                                                version N is a whole tree)
    <state>/images/<image>/meta/<N>.fold        gc folding older versions into N (a journal)
    <state>/images/<image>/.staging-<pid>/      a new tree being filled (never listed)
    <state>/images/<image>/.exec-<pid>/         ``image exec``'s overlay (never listed)
    <state>/nodes/<node>/<image>/               the node's replica of its persistent paths
    <state>/nodes/<node>/<image>.version        the version that replica was last brought to
    <state>/nodes/<node>/.<image>.reset-<t>-…/  a replica's old content, kept aside until gc
    <state>/locks/<image>.lock                  the image's lock, holding its holder's pid
    <state>/boot/<image>/<version>/             the image version's kernel and initramfs
    <state>/applied/<digest>.db                 what the last ``dim apply`` of a server into a
                                                root rendered from (incremental apply)
    <state>/layouts/<key>.db                    the nodes of the cluster.xml last validated
                                                in full (dim.layout_cache)

    >>> paths = StatePaths(Path("/var/lib/dim"))
    >>> paths.replica("node01", "rhel9")
    PosixPath('/var/lib/dim/nodes/node01/rhel9')
    >>> paths.replica("../etc", "rhel9")
    Traceback (most recent call last):
    dim.errors.UsageError: invalid node name '../etc': ...

A name that becomes a folder is checked (:func:`dim.names.check_name`), so that ``../nodes``
never reaches a path. :func:`live_folder`, :func:`images_folder` and :func:`node_folder` are
the same paths as plain strings, unchecked, for names the layout parser checked already: the
renderers ask for them once per node.
"""

from __future__ import annotations

from pathlib import Path

from dim.errors import UsageError
from dim.names import check_name
from dim.structs import struct

DB = "state.db"
# not below boot/: an image may be named targets.json, and boot/<image>/ is its boot builds
BOOT_TARGETS = "boot-targets.db"
APPLIED = "applied"
IMAGES = "images"
LIVE = "live"
VERSIONS = "versions"
META = "meta"
NODES = "nodes"
LOCKS = "locks"
BOOT = "boot"
CACHE = "cache"
CONFLICTS = "conflicts.json"
MARKER = ".version"  # suffix of the file that says which version a tree matches
STAGING = ".staging-"
EXEC = ".exec-"


@struct(frozen=True, slots=True)
class StatePaths:
    """Every path of one state folder, from its root."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def db(self) -> Path:
        return self.root / DB

    @property
    def boot_targets(self) -> Path:
        return self.root / BOOT_TARGETS

    def applied(self, server: str, root: str) -> Path:
        """The inputs of the last ``dim apply`` of ``server`` into ``root``."""
        import hashlib  # here: OpenSSL's load (12 M instructions) for `dim apply` alone

        digest = hashlib.sha256(f"{server}\0{root}".encode()).hexdigest()[:20]
        return self.root / APPLIED / f"{digest}.db"

    # -- images ------------------------------------------------------------------------------

    @property
    def images(self) -> Path:
        return self.root / IMAGES

    def image(self, image: str) -> Path:
        return self.root / IMAGES / _checked("image", image)

    def live(self, image: str) -> Path:
        return self.image(image) / LIVE

    def live_marker(self, image: str) -> Path:
        return self.image(image) / f"{LIVE}{MARKER}"

    def conflicts(self, image: str) -> Path:
        """The paths each node's replica of ``image`` kept against the image's changes."""
        return self.image(image) / CONFLICTS

    def versions(self, image: str) -> Path:
        return self.image(image) / VERSIONS

    def version(self, image: str, number: int) -> Path:
        return self.image(image) / VERSIONS / str(number)

    def meta(self, image: str) -> Path:
        return self.image(image) / META

    def meta_file(self, image: str, number: int) -> Path:
        return self.image(image) / META / f"{number}.json"

    def changes_file(self, image: str, number: int) -> Path:
        return self.image(image) / META / f"{number}.changes"

    def fold_file(self, image: str, number: int) -> Path:
        return self.image(image) / META / f"{number}.fold"

    def staging(self, image: str, pid: int) -> Path:
        return self.image(image) / f"{STAGING}{pid}"

    def exec_work(self, image: str, pid: int) -> Path:
        return self.image(image) / f"{EXEC}{pid}"

    def unfinished(self, image: str) -> list[Path]:
        """What an interrupted command left in the image's folder: staging and exec folders,
        then hidden entries of versions/ (a rename never finished)."""
        folder = self.image(image)
        found = sorted(folder.glob(f"{STAGING}*")) + sorted(folder.glob(f"{EXEC}*"))
        return found + sorted((folder / VERSIONS).glob(".*"))

    # -- nodes -------------------------------------------------------------------------------

    @property
    def nodes(self) -> Path:
        return self.root / NODES

    def replica(self, node: str, image: str) -> Path:
        return self.root / NODES / _checked("node", node) / _checked("image", image)

    def replica_marker(self, node: str, image: str) -> Path:
        return self.root / NODES / _checked("node", node) / f"{_checked('image', image)}{MARKER}"

    def reset_prefix(self, image: str) -> str:
        """The name of a replica kept aside by ``node reset`` starts so, in the node's folder."""
        return f".{_checked('image', image)}.reset-"

    def reset_asides(self, image: str) -> list[Path]:
        """Every node's replicas of ``image`` kept aside by ``node reset``, oldest node first."""
        return sorted(self.nodes.glob(f"*/{self.reset_prefix(image)}*"))

    # -- locks and boot builds ---------------------------------------------------------------

    @property
    def locks(self) -> Path:
        return self.root / LOCKS

    def lock(self, image: str) -> Path:
        return self.root / LOCKS / f"{_checked('image', image)}.lock"

    def boot(self, image: str) -> Path:
        """The boot builds of ``image``, one folder per version."""
        return self.root / BOOT / _checked("image", image)

    def boot_build(self, image: str, version: int | str) -> Path:
        return self.boot(image) / _checked("version", str(version))

    @property
    def cache(self) -> Path:
        """What dim fetched and may fetch again: Debian packages of other architectures."""
        return self.root / CACHE


def live_folder(state: str | Path, image: str) -> str:
    """``str(StatePaths(state).live(image))`` for a name checked already, without its cost."""
    return f"{state}/{IMAGES}/{image}/{LIVE}"


def images_folder(state: str | Path) -> str:
    """``<state>/images``, the image store."""
    return f"{state}/{IMAGES}"


def node_folder(state: str | Path, node: str) -> str:
    """``<state>/nodes/<node>``, the node's replicas, for a name checked already."""
    return f"{state}/{NODES}/{node}"


def _checked(kind: str, name: str) -> str:
    try:
        return check_name(kind, name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
