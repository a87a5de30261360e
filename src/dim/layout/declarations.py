"""A cluster's declarations (everything but its nodes) as one text, and back: what the
validated-layout cache (:mod:`dim.layout_cache`) keeps beside the nodes, so that a command
that needs one node and the declarations (``dim node set NODE``, an incremental ``dim
apply``) imports neither the XML parser nor the schema::

    >>> decode(encode(cluster)) == replace(cluster, nodes=(), by_name={})
    True

Each value is written with its type, from a fixed list of the model's classes (and the
address classes, tuples and dictionaries they hold): a text of another form is refused
(ValueError), never turned into anything else. The text is JSON, read back by :mod:`json`
(which makes dictionaries, lists, strings, numbers and nothing else): its import costs a
third of :func:`ast.literal_eval`'s, which ``dim layout check`` and ``dim node list`` would
import for this alone.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

from dim.layout.model import Cluster, FailoverSet, Group, Image, Network, Server
from dim.structs import fields, replace

_CLASSES = {c.__name__: c for c in (Cluster, FailoverSet, Group, Image, Network, Server)}
_ADDRESSES = {c.__name__: c for c in (IPv4Address, IPv4Network)}


def encode(cluster: Cluster) -> str:
    """``cluster`` without its nodes, as one text."""
    return json.dumps(_encode(replace(cluster, nodes=(), by_name={})), separators=(",", ":"))


def decode(text: str) -> Cluster:
    """The cluster (no nodes) of :func:`encode`'s ``text``; ValueError for any other text."""
    try:
        tree = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not a cluster's declarations: {exc}") from None
    cluster = _decode(tree)
    if not isinstance(cluster, Cluster):
        raise ValueError("not a cluster's declarations")
    return cluster


def _encode(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    kind = type(value).__name__
    if isinstance(value, tuple):
        return {"t": "tuple", "v": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "v": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if _ADDRESSES.get(kind) is type(value):
        return {"t": kind, "v": str(value)}
    if _CLASSES.get(kind) is type(value):
        # by_name is Cluster's index of its nodes, rebuilt by its __post_init__
        names = [f.name for f in fields(value) if f.name != "by_name"]  # type: ignore[arg-type]
        return {"t": kind, "v": {name: _encode(getattr(value, name)) for name in names}}
    raise ValueError(f"{kind} is not part of a cluster's declarations")


def _decode(value: object) -> object:
    if not isinstance(value, dict):
        if value is None or isinstance(value, bool | int | str):
            return value
        raise ValueError(f"unexpected {type(value).__name__} in a cluster's declarations")
    kind, inner = value.get("t"), value.get("v")
    if kind == "tuple" and isinstance(inner, list):
        return tuple(_decode(v) for v in inner)
    if kind == "dict" and isinstance(inner, list):
        return {_decode(k): _decode(v) for k, v in inner}
    if kind in _ADDRESSES and isinstance(inner, str):
        return _ADDRESSES[kind](inner)
    if kind in _CLASSES and isinstance(inner, dict):
        return _CLASSES[kind](**{name: _decode(v) for name, v in inner.items()})
    raise ValueError(f"unexpected {kind!r} in a cluster's declarations")
