"""Which boot file each kind of network-boot client gets, and where dim's loaders come from.

Pure data and two small functions over it. The DHCP templates
(:mod:`dim.services.dhcp`) match clients by the values of :data:`KINDS`, first match wins;
``dim apply`` (:mod:`dim.actions.apply`) copies the files of :data:`SHIPPED` that a server's
loaders need into its TFTP and HTTP roots::

    >>> [(k.name, k.transport, k.default) for k in KINDS]  # doctest: +NORMALIZE_WHITESPACE
    [('ipxe', 'http', 'boot.ipxe'), ('uefi-http', 'http', 'snponly.efi'),
     ('uefi-pxe', 'tftp', 'snponly.efi'), ('bios-pxe', 'tftp', 'undionly.kpxe')]
    >>> loader_for(server, "bios-pxe")  # the server's bios-loader, else the default
    'undionly.kpxe'
    >>> [f.path for f in loader_files(server)]
    ['/srv/dim/http/snponly.efi', '/srv/dim/tftp/snponly.efi', '/srv/dim/tftp/undionly.kpxe']

Every client ends in iPXE by default: a PXE ROM loads iPXE over TFTP (``undionly.kpxe`` on
BIOS, ``snponly.efi`` on UEFI), UEFI HTTP boot loads ``snponly.efi`` over HTTP from
``dim serve``; iPXE then asks DHCP again, now as an iPXE client, and gets ``boot.ipxe``.
Nodes declared ``secure-boot="yes"`` are sent ``shimx64.efi`` (:data:`SECURE_BOOT`), by MAC.
A server's ``bios-loader``, ``uefi-loader``, ``uefi-http-loader`` and ``secure-boot-loader``
attributes replace the defaults: a name of :data:`SHIPPED` (``lpxelinux.0``, ``grubx64.efi``…)
is copied from its Debian package like the defaults; any other name is the site's own loader,
which must already be in the root.

Nodes of another architecture than the default (cluster.xml's ``<group arch=>``) are told
apart by their option 93 alone: :func:`kinds_of` adds, for each architecture of the cluster's
groups, ``<arch>-uefi-http`` and ``<arch>-uefi-pxe`` with the loaders of its table in
``architectures.toml`` (aarch64: Debian's signed network GRUB, ``grubaa64.efi``, fetched from
Debian's arm64 package by ``dim apply``)::

    >>> [k.name for k in kinds_of(cluster)]  # a group of arch="aarch64"
    ['ipxe', 'uefi-http', 'uefi-pxe', 'aarch64-uefi-http', 'aarch64-uefi-pxe', 'bios-pxe']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from dim import architectures
from dim.layout.model import Cluster, Server


@dataclass(frozen=True, slots=True)
class ClientKind:
    """One kind of boot client: how DHCP recognises it and what it is sent.

    A client is of this kind when its option 93 (client architecture) is one of ``arch``
    (any, if empty) and its option 60 (vendor class) starts with ``vendor_class`` (any, if
    None); iPXE is recognised by its user class (option 77) or its option 175 instead.
    """

    name: str
    arch: tuple[int, ...]
    vendor_class: str | None
    user_class: str | None
    transport: str  # tftp | http
    default: str  # the boot file, relative to the TFTP or HTTP root
    attribute: str | None  # the <server> attribute that overrides the default
    architecture: str = architectures.DEFAULT  # of its clients ("": any)


#: First match wins; the last kind matches every client left.
KINDS: tuple[ClientKind, ...] = (
    ClientKind("ipxe", (), None, "iPXE", "http", "boot.ipxe", None, ""),
    ClientKind("uefi-http", (16,), "HTTPClient", None, "http", "snponly.efi", "uefi-http-loader"),
    ClientKind("uefi-pxe", (7, 9), None, None, "tftp", "snponly.efi", "uefi-loader"),
    ClientKind("bios-pxe", (), None, None, "tftp", "undionly.kpxe", "bios-loader"),
)
#: A Secure Boot client asks DHCP exactly as a UEFI PXE one: nothing in the request tells them
#: apart. Nodes declared ``secure-boot="yes"`` get this kind's loader instead, by their MAC:
#: Microsoft-signed shim, which runs with Secure Boot on (iPXE is refused) and off alike.
SECURE_BOOT = ClientKind(
    "uefi-secureboot", (7, 9), None, None, "tftp", "shimx64.efi", "secure-boot-loader"
)
BY_NAME = {kind.name: kind for kind in (*KINDS, SECURE_BOOT)}


@cache
def foreign_kinds(names: tuple[str, ...]) -> tuple[ClientKind, ...]:
    """The kinds of UEFI clients of the architectures ``names`` other than the default, from
    their tables (``architectures.toml``): ``<arch>-uefi-http`` (its HTTP boot option 93
    values, option 60 ``HTTPClient``) and ``<arch>-uefi-pxe``, each sent its architecture's
    loader. Their option 93 values tell them from each other and from the default's kinds."""
    found = []
    for name in names:
        if name == architectures.DEFAULT:
            continue
        arch = architectures.known()[name]
        if arch.dhcp_uefi_http:
            found.append(
                ClientKind(
                    f"{name}-uefi-http", arch.dhcp_uefi_http, "HTTPClient", None, "http",
                    arch.uefi_http_loader, None, name,
                )
            )  # fmt: skip
        if arch.dhcp_uefi:
            found.append(
                ClientKind(
                    f"{name}-uefi-pxe", arch.dhcp_uefi, None, None, "tftp", arch.uefi_loader,
                    None, name,
                )
            )  # fmt: skip
    return tuple(found)


def kinds_of(cluster: Cluster) -> tuple[ClientKind, ...]:
    """Every kind of client of ``cluster``'s nodes, first match wins: :data:`KINDS`, with
    those of its groups' other architectures (:func:`foreign_kinds`) before BIOS PXE, which
    takes every client left."""
    return (*KINDS[:-1], *foreign_kinds(cluster.architectures), KINDS[-1])


@dataclass(frozen=True, slots=True)
class ShippedFile:
    """A file of a Debian package that dim installs as a loader or a loader's companion."""

    source: str
    package: str


SIGNED_GRUB = ShippedFile(
    "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "grub-efi-amd64-signed"
)
#: Debian's arm64 package cannot be installed beside the amd64 GRUB (grub-common is not
#: Multi-Arch: same): ``dim apply`` takes the file from the package unpacked into its cache
#: (:mod:`dim.debs`) when it is not installed.
SIGNED_GRUB_ARM64 = ShippedFile(
    "/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed", "grub-efi-arm64-signed:arm64"
)

#: Loaders dim installs, by the name a server gives them, with the files each one needs next
#: to it: lpxelinux.0 loads ldlinux.c32 from its own folder; GRUB is Debian's signed network
#: image, whose prefix is ``/grub`` (where :mod:`dim.services.loaders` puts grub.cfg).
SHIPPED: dict[str, tuple[tuple[str, ShippedFile], ...]] = {
    "undionly.kpxe": (("undionly.kpxe", ShippedFile("/usr/lib/ipxe/undionly.kpxe", "ipxe")),),
    "snponly.efi": (("snponly.efi", ShippedFile("/usr/lib/ipxe/snponly.efi", "ipxe")),),
    "ipxe.efi": (("ipxe.efi", ShippedFile("/usr/lib/ipxe/ipxe.efi", "ipxe")),),
    "lpxelinux.0": (
        ("lpxelinux.0", ShippedFile("/usr/lib/PXELINUX/lpxelinux.0", "pxelinux")),
        (
            "ldlinux.c32",
            ShippedFile("/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"),
        ),
    ),
    "grubx64.efi": (("grubx64.efi", SIGNED_GRUB),),
    "grubaa64.efi": (("grubaa64.efi", SIGNED_GRUB_ARM64),),
    # Secure Boot: Microsoft-signed shim loads grubx64.efi from its own folder and checks
    # Debian's signature on it; mmx64.efi (MokManager) is what shim starts if keys are pending.
    "shimx64.efi": (
        ("shimx64.efi", ShippedFile("/usr/lib/shim/shimx64.efi.signed", "shim-signed")),
        ("grubx64.efi", SIGNED_GRUB),
        ("mmx64.efi", ShippedFile("/usr/lib/shim/mmx64.efi.signed", "shim-signed")),
    ),
}


#: What each loader of :data:`SHIPPED` (and ``boot.ipxe``) reads of the files per MAC that
#: :mod:`dim.services.loaders` links in the TFTP root: PXELINUX ``pxelinux.cfg/01-<mac>``, GRUB
#: (loaded as such or by shim) ``grub/nodes/<mac>.cfg``, iPXE neither (it asks DHCP again and
#: gets ``boot.ipxe``). A name not here is a site's own loader: it may read either.
PER_MAC_CONFIG: dict[str, str | None] = {
    "boot.ipxe": None,
    "undionly.kpxe": None,
    "snponly.efi": None,
    "ipxe.efi": None,
    "lpxelinux.0": "pxelinux",
    "grubx64.efi": "grub",
    "grubaa64.efi": "grub",
    "shimx64.efi": "grub",
}


@dataclass(frozen=True, slots=True)
class LoaderFile:
    """One file a server's loaders need: where it goes, and where dim copies it from.

    ``shipped`` is None for a site's own loader: dim does not copy it, it must be at ``path``.
    """

    path: str  # absolute path on the target system
    shipped: ShippedFile | None
    kind: str


def loader_for(server: Server, kind: str | ClientKind) -> str:
    """The boot file ``server`` sends to clients of ``kind``: its override, or the default."""
    found = BY_NAME[kind] if isinstance(kind, str) else kind
    if found.attribute is None:
        return found.default
    return getattr(server, found.attribute.replace("-", "_")) or found.default


def loader_files(
    server: Server,
    *,
    secure_boot: bool = False,
    peers: Sequence[Server] = (),
    kinds: Iterable[ClientKind] = KINDS,
) -> list[LoaderFile]:
    """Every loader file that the server's clients fetch, once each, in the order of
    ``kinds`` (:func:`kinds_of` its cluster); with ``secure_boot`` (the server boots nodes
    declared so) the Secure Boot loader's too.

    ``peers``, the other servers of its failover set: their loaders as well, in this server's
    roots. A peer's node fetches its loader from the peer's service address, which this
    server holds when the peer is dead.
    """
    files: dict[str, LoaderFile] = {}
    for owner in (server, *peers):
        for kind in (*kinds, SECURE_BOOT) if secure_boot else kinds:
            if kind.name == "ipxe":
                continue  # boot.ipxe is rendered, not copied
            root = server.tftp_root if kind.transport == "tftp" else server.http_root
            path = f"{root.rstrip('/')}/{loader_for(owner, kind).lstrip('/')}"
            folder, _, name = path.rpartition("/")
            shipped = SHIPPED.get(name)  # efi/snponly.efi is snponly.efi too
            if shipped is None:
                files.setdefault(path, LoaderFile(path, None, kind.name))
                continue
            for file, source in shipped:  # the loader first, then what it loads from its folder
                where = f"{folder}/{file}"
                files.setdefault(where, LoaderFile(where, source, kind.name))
    return list(files.values())
