"""Names and addresses as dim accepts them: node, image and file names, IPv4 addresses, MACs.

    >>> check_name("image", "rhel9")
    'rhel9'
    >>> ip_to_int("10.0.0.1")
    167772161
    >>> normalize_mac("52-54-00-AB-CD-EF")
    '52:54:00:ab:cd:ef'

A leaf: the layout parser, the state DB, the image store, the renderers, the boot service and
the power drivers all check names here, and none of them needs the others to do so. Each
function raises ``ValueError`` (``OSError`` for an address); callers turn it into their own
:class:`~dim.errors.DimError` with the file, line or node it belongs to.
"""

from __future__ import annotations

import re
import socket

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_MAC = re.compile(r"[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}")


def check_name(kind: str, value: str) -> str:
    """Refuse names that could escape a folder or break a config file."""
    if not SAFE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid {kind} name {value!r}: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit, without '/' or '..'"
        )
    return value


def ip_to_int(text: str) -> int:
    """Strict dotted quad -> integer; OSError for anything else (``010.0.0.1``, ``1.2.3``)."""
    return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")


def normalize_mac(text: str) -> str:
    """``52-54-00-AB-CD-EF`` or ``525400abcdef`` -> ``52:54:00:ab:cd:ef``.

    Raises ValueError for anything else.
    """
    value = text.strip().lower()
    if not _MAC.fullmatch(value):
        raise ValueError(f"malformed MAC address {text!r} (expected e.g. 52:54:00:ab:cd:ef)")
    digits = value.replace(":", "").replace("-", "")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
