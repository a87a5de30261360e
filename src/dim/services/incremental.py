"""Render what the nodes that changed since the last apply need, and nothing else.

The caller (:func:`dim.actions.apply.apply`) knows from :mod:`dim.services.applied` that
nothing but some nodes' boot MACs and assigned images changed since the last apply into the
same root, and builds a :class:`RenderContext` over a partial layout holding only those nodes
(rebuilt from their records, cluster.xml not expanded). Of every file dim renders, these
depend on those values:

- each node's boot loader links (:func:`dim.services.loaders.node_links`), named after its MAC
  and pointing at its image's configuration: the changed nodes' are rendered, and their old
  ones that are no longer rendered are to be removed;
- dnsmasq's hosts file, one line per node with a MAC: the changed nodes' lines are rendered
  with the same template, one node at a time, and spliced between the installed lines of the
  others, in the order a full render gives (boot networks in layout order, nodes in layout
  order within each);
- dnsmasq's main file, only through which networks have a node with a MAC: unchanged unless
  that set changes.

The rest (hosts file, NFS exports, image configurations, VRRP) is a function of what the
fingerprint covers and stays as installed. What cannot be spliced is refused (None) and the
caller renders everything: Kea's and ISC dhcpd's files (one document each, with the hosts
inside), a template override of dnsmasq's hosts file, a change in the set of networks, a
hosts file without a changed node's old line, more than :data:`MOST_NODES` changed nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dim.layout.model import Server
from dim.services import dhcp, loaders
from dim.services.applied import Applied, NodeEntry
from dim.services.apply import target
from dim.services.dhcp import DNSMASQ_CONF, DNSMASQ_HOSTS
from dim.services.rendering import RenderContext, RenderedFile

# Above this many changed nodes a full render is cheaper than splicing one line at a time.
MOST_NODES = 1000


@dataclass(slots=True)
class Changes:
    """The files to compare and install, the paths to remove, and how many files a full
    render would have returned (for the count of unchanged files)."""

    files: list[RenderedFile]
    removed: list[str]
    total: int


def supported(server: Server, template_dir: Path | None) -> bool:
    """Whether an apply for ``server`` can render nodes alone (else a record is not kept)."""
    if server.dhcp not in ("dnsmasq", "none"):
        return False  # Kea's and dhcpd's files are one document each, the hosts inside
    return template_dir is None or not (template_dir / "dnsmasq.hosts.j2").exists()


def render_changes(
    context: RenderContext,
    previous: Applied,
    entries: dict[str, NodeEntry],
    changed: list[str],
    root: Path,
) -> Changes | None:
    """What ``changed`` (node names in layout order, each in ``context``'s partial layout and
    in ``entries``, their records) need; None when only a full render can tell."""
    server = context.server
    if not supported(server, context.template_dir) or len(changed) > MOST_NODES:
        return None
    # The loaders' and VRRP's other files are functions of what the record's fingerprint
    # covers: as installed, not rendered again (which would take Jinja2 and its templates).
    old_links, new_links = _link_paths(context, entries, changed)
    files = list(new_links.values())
    if server.dhcp == "dnsmasq":
        dnsmasq = _dnsmasq_files(context, previous, entries, changed, root)
        if dnsmasq is None:
            return None
        files += dnsmasq
    removed = sorted(set(old_links) - set(new_links))
    return Changes(files, removed, previous.files - len(old_links) + len(new_links))


def _link_paths(
    context: RenderContext, entries: dict[str, NodeEntry], changed: list[str]
) -> tuple[list[str], dict[str, RenderedFile]]:
    """The changed nodes' loader links: their paths as last applied, and as rendered now
    (by path)."""
    server, inventory = context.server, context.inventory
    cluster = inventory.cluster
    old: list[str] = []
    new: dict[str, RenderedFile] = {}
    for name in changed:
        entry, node = entries[name], cluster.by_name[name]
        if not entry.served:
            continue
        if entry.mac is not None and (entry.image or node.image) is not None:
            stem = loaders.config_stem(cluster, node.server, entry.image or node.image)
            old += [f.path for f in loaders.node_links(server, entry.mac, stem)]
        mac, image = inventory.mac(node), inventory.image(node)
        if mac is not None and image is not None:
            stem = loaders.config_stem(cluster, node.server, image)
            new.update((f.path, f) for f in loaders.node_links(server, mac, stem))
    return old, new


def _dnsmasq_files(
    context: RenderContext,
    previous: Applied,
    entries: dict[str, NodeEntry],
    changed: list[str],
    root: Path,
) -> list[RenderedFile] | None:
    """dnsmasq's main file as installed and its hosts file spliced; None if either cannot be.

    The changed nodes' old lines are cut out of the installed file, found by their MACs;
    each new line goes before the line of the next node that keeps its line (the record
    answers which, through its index), or at the end: a few searches in the file's bytes."""
    cluster = context.inventory.cluster
    networks, leaving = list(cluster.networks), set(changed)
    now = {n: context.inventory.mac(cluster.by_name[n]) for n in changed}
    kept = previous.networks_with_hosts(networks, leaving)
    served = [n for n in changed if entries[n].served]
    before = kept | {entries[n].network for n in served if entries[n].mac}
    after = kept | {entries[n].network for n in served if now[n] is not None}
    if before != after:
        return None  # dnsmasq's main file declares the networks that have a host
    conf = _read(target(root, DNSMASQ_CONF))
    hosts = _read(target(root, DNSMASQ_HOSTS))
    if conf is None or hosts is None:
        return None
    for name in served:
        if entries[name].mac is not None:
            hosts = _cut(hosts, entries[name].mac)
            if hosts is None:
                return None  # not the file the last apply installed
    for name in served:
        if now[name] is not None:
            line = _host_line(context, name, now[name])
            anchor = previous.next_host(networks, entries[name], leaving)
            hosts = None if line is None else _insert(hosts, line, anchor)
            if hosts is None:
                return None
    return [
        RenderedFile(DNSMASQ_CONF, conf, service="dnsmasq"),
        RenderedFile(DNSMASQ_HOSTS, hosts, service="dnsmasq"),
    ]


def _find_line(hosts: bytes, mac: str) -> int:
    """Where the line of ``mac`` starts in ``hosts``, -1 if it has none."""
    key = f"{mac},".encode()
    if hosts.startswith(key):
        return 0
    found = hosts.find(b"\n" + key)
    return found + 1 if found >= 0 else -1


def _cut(hosts: bytes, mac: str) -> bytes | None:
    start = _find_line(hosts, mac)
    if start < 0:
        return None
    end = hosts.find(b"\n", start)
    return hosts[:start] + (hosts[end + 1 :] if end >= 0 else b"")


def _insert(hosts: bytes, line: str, before: str | None) -> bytes | None:
    """``hosts`` with ``line`` before the line of the MAC ``before`` (None: at the end)."""
    at = len(hosts) if before is None else _find_line(hosts, before)
    if at < 0:
        return None
    return hosts[:at] + f"{line}\n".encode() + hosts[at:]


def _host_line(context: RenderContext, name: str, mac: str) -> str | None:
    """The node's line of dnsmasq's hosts file, rendered by the hosts file's own template for
    a layout of that node alone; None if that is not one line for its MAC."""
    cluster = context.inventory.cluster
    alone = replace(cluster, nodes=(cluster.by_name[name],), by_name={})
    single = replace(context, inventory=replace(context.inventory, cluster=alone))
    text = (dhcp.dnsmasq_hosts(single).content or b"").decode()
    if text.count("\n") != 1 or not text.endswith("\n") or not text.startswith(f"{mac},"):
        return None
    return text[:-1]


def _read(where: str) -> bytes | None:
    try:
        with open(where, "rb") as handle:
            return handle.read()
    except OSError:
        return None
