"""Client kernels and the NFS root: which kernels dim has booted, and what to say of the others.

::

    >>> series("6.12.117+deb13-amd64")
    (6, 12)
    >>> warnings("deb13", "6.12.117+deb13-amd64", "actimeo=1,vers=4.2",
    ...          "CONFIG_NFS_V4_2_READ_PLUS=y\\n", ganesha=True)        # doctest: +ELLIPSIS
    ('image deb13: its nfs-options ask for vers=4.2 and kernel 6.12.117+deb13-amd64 reads ...',)

dim's end-to-end tests boot the kernel series in :data:`TESTED`. A kernel newer than all of
them may mount its root differently: the warning names :data:`KNOWN_GOOD_OPTIONS`. One
difference is known. A kernel built with ``CONFIG_NFS_V4_2_READ_PLUS=y`` (Debian 13's 6.12;
not Debian 12's 6.1) reads file data over NFS 4.2 with READ_PLUS, which nfs-ganesha before
6.2 answers with an empty data segment (fixed by ganesha's commit 24da5c304): the node's root
mounts, then switch_root fails with Input/output error. NFS 4.1 has no READ_PLUS.

Pure: the caller reads the image's ``/boot/config-<release>`` and knows which NFS servers
export the image.
"""

from __future__ import annotations

import re

TESTED = ("6.1", "6.12")
"""The kernel series (major.minor) dim's end-to-end tests boot: Debian 12's and Debian 13's."""

KNOWN_GOOD_OPTIONS = "actimeo=1,vers=4.1"
"""Image ``nfs-options`` that every tested kernel mounts and reads its root with."""

READ_PLUS = "CONFIG_NFS_V4_2_READ_PLUS"
GANESHA_READ_PLUS_FIXED = "6.2"

_SERIES = re.compile(r"\s*v?(\d+)\.(\d+)")


def series(release: str) -> tuple[int, int] | None:
    """The major and minor numbers a kernel release starts with (``6.1.0-57-amd64`` ->
    ``(6, 1)``); None when it starts with no ``N.N``."""
    match = _SERIES.match(release)
    return (int(match[1]), int(match[2])) if match else None


def newest_tested() -> tuple[int, int]:
    return max(s for s in map(series, TESTED) if s is not None)


def newer_than_tested(release: str) -> bool:
    """Whether ``release`` belongs to a series newer than every tested one (an unreadable
    release is not: nothing is known of it)."""
    found = series(release)
    return found is not None and found > newest_tested()


def nfs_version(options: str) -> tuple[str, str] | None:
    """The version ``nfs-options`` ask for, as ``(key, value)`` (``("vers", "4.2")``): the last
    ``vers=`` or ``nfsvers=``, as the kernel takes it; None when they name none."""
    asked = None
    for option in options.split(","):
        key, _, value = option.strip().partition("=")
        if key in ("vers", "nfsvers"):
            asked = (key, value)
    return asked


def reads_with_read_plus(config: str) -> bool:
    """Whether a kernel's config (``/boot/config-<release>``) builds in NFS READ_PLUS."""
    return any(line.strip() == f"{READ_PLUS}=y" for line in config.splitlines())


def warnings(
    image: str, release: str, nfs_options: str, config: str | None, *, ganesha: bool
) -> tuple[str, ...]:
    """What to tell the administrator about booting ``image``'s kernel ``release`` from its NFS
    root, one line per warning.

    ``config`` is the kernel's configuration (None when the image has none); ``ganesha``
    whether an nfs-ganesha server exports the image.
    """
    found = []
    if newer_than_tested(release):
        major, minor = series(release) or (0, 0)
        found.append(
            f"image {image}: kernel {release} (series {major}.{minor}) is newer than the "
            f"series dim is tested with ({', '.join(TESTED)}); if its nodes fail to mount or "
            f'read their root, nfs-options="{KNOWN_GOOD_OPTIONS}" is known to work'
        )
    asked = nfs_version(nfs_options)
    read_plus = config is not None and reads_with_read_plus(config)
    if ganesha and read_plus and asked is not None and asked[1] == "4.2":
        found.append(
            f"image {image}: its nfs-options ask for {asked[0]}=4.2 and kernel {release} "
            f"reads files with NFS READ_PLUS ({READ_PLUS}=y), which nfs-ganesha before "
            f"{GANESHA_READ_PLUS_FIXED} answers with empty data: the node fails at "
            "switch_root with Input/output error; use vers=4.1 in nfs-options, or "
            f"nfs-ganesha {GANESHA_READ_PLUS_FIXED} or later"
        )
    return tuple(found)
