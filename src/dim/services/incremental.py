"""Render what the nodes that changed since the last apply need, and nothing else.

The caller (:func:`dim.actions.apply.apply`) knows from :mod:`dim.services.applied` that
nothing but some nodes' boot MACs and assigned images changed since the last apply into the
same root, and builds a :class:`RenderContext` over a partial layout holding only those nodes
(rebuilt from their records, cluster.xml not expanded). Of every file dim renders, these
depend on those values:

- each node's boot loader links (:func:`dim.services.loaders.node_links`, those its server's
  :func:`~dim.services.loaders.link_rule` gives it), named after its MAC and pointing at its
  image's configuration: the changed nodes' are rendered, and their old ones that are no
  longer rendered are to be removed;
- dnsmasq's hosts file, one line per node with a MAC: the changed nodes' lines are rendered
  with the same template, one node at a time, and spliced between the installed lines of the
  others, in the order a full render gives (boot networks in layout order, nodes in layout
  order within each);
- dnsmasq's main file, only through the subnets it declares (the networks with a node with a
  MAC, and the server's own): unchanged unless that set changes, as Kea's and dhcpd's;
- Kea's and ISC dhcpd's one file each, the reservations inside, one line each: the file is
  rendered for a layout of the changed nodes alone (the same template, one render for all of
  them), each one's line is taken from it and spliced into the installed file, in the order a
  full render gives. Kea's reservations are a JSON list per subnet (subnets in layout order,
  nodes in layout order within each, a comma after each but the subnet's last): a line goes
  before the next node's of its subnet that keeps its line, or last in its subnet. dhcpd's
  hosts follow the subnets, one flat list in the order of dnsmasq's hosts file. The small
  file is what the daemon's test mode checks (:attr:`RenderedFile.check`): at 100,000 nodes
  ``kea-dhcp4 -t`` on the whole file took 2.1-2.7 s here and ``dhcpd -t`` 1.0-1.7 s, on one
  node's 26-28 and 4-6 ms (``bench/dhcp_check.py``). The spliced file's other lines were
  checked when they were installed (unless that apply skipped validation), and that no MAC
  or address is given twice is dim's own check.

The rest (hosts file, NFS exports, image configurations, VRRP) is a function of what the
fingerprint covers and stays as installed. What cannot be spliced is refused (None) and the
caller renders everything: a template override of the file that holds the hosts, ISC dhcpd in
a failover set (its hosts are grouped by server, which the record does not say), a change in
the set of subnets, a file without a changed node's old line, more than :data:`MOST_NODES`
changed nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dim.layout.model import Server
from dim.services import dhcp, loaders
from dim.services.applied import Applied, NodeEntry
from dim.services.apply import target
from dim.services.dhcp import DNSMASQ_CONF, DNSMASQ_HOSTS, ISC_TEMPLATE, KEA_TEMPLATE
from dim.services.rendering import RenderContext, RenderedFile

# Above this many changed nodes a full render is cheaper than splicing one line at a time.
MOST_NODES = 1000
# The template whose file holds the hosts, by DHCP flavour: an override of it is not spliced.
HOSTS_TEMPLATES = {
    "none": None,
    "dnsmasq": "dnsmasq.hosts.j2",
    "kea": KEA_TEMPLATE,
    "isc": ISC_TEMPLATE,
}
# What only the line of one MAC's reservation holds, in Kea's and dhcpd's files
_KEYS = {"kea": '{{ "hw-address": "{}"', "isc": "{{ hardware ethernet {};"}
# kea-dhcp4.conf.j2: a subnet's first line, and the line that closes its reservations
_KEA_SUBNET = '\n    {{ "id": {}, "subnet": "'
_KEA_CLOSE = b"\n      ] }"


@dataclass(slots=True)
class Changes:
    """The files to compare and install, the paths to remove, and how many files a full
    render would have returned (for the count of unchanged files)."""

    files: list[RenderedFile]
    removed: list[str]
    total: int


def supported(server: Server, template_dir: Path | None) -> bool:
    """Whether an apply for ``server`` can render nodes alone (else a record is not kept)."""
    if server.dhcp not in HOSTS_TEMPLATES or (server.dhcp == "isc" and server.failover):
        return False  # dhcpd's hosts grouped by server: where a line goes, the record can't say
    template = HOSTS_TEMPLATES[server.dhcp]
    return template is None or template_dir is None or not (template_dir / template).exists()


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
    if server.dhcp != "none":
        if not _same_subnets(context, previous, entries, changed):
            return None  # the main file declares the networks that have a host
        if server.dhcp == "dnsmasq":
            spliced = _dnsmasq_files(context, previous, entries, changed, root)
        else:
            spliced = _document_file(context, previous, entries, changed, root)
        if spliced is None:
            return None
        files += spliced
    removed = sorted(set(old_links) - set(new_links))
    return Changes(files, removed, previous.files - len(old_links) + len(new_links))


def _link_paths(
    context: RenderContext, entries: dict[str, NodeEntry], changed: list[str]
) -> tuple[list[str], dict[str, RenderedFile]]:
    """The changed nodes' loader links: their paths as last applied, and as rendered now
    (by path)."""
    server, inventory = context.server, context.inventory
    cluster = inventory.cluster
    # the rule of the last apply too: what it depends on (cluster.xml, the template
    # overrides) is in the record's fingerprint
    rule = loaders.link_rule(cluster, server.name, context.template_dir)
    old: list[str] = []
    new: dict[str, RenderedFile] = {}
    for name in changed:
        entry, node = entries[name], cluster.by_name[name]
        if not entry.served:
            continue
        secure = node.secure_boot
        if entry.mac is not None and (entry.image or node.image) is not None:
            stem = loaders.config_stem(cluster, node.server, entry.image or node.image)
            was = loaders.node_links(server, rule, entry.mac, stem, secure_boot=secure)
            old += [f.path for f in was]
        mac, image = inventory.mac(node), inventory.image(node)
        if mac is not None and image is not None:
            stem = loaders.config_stem(cluster, node.server, image)
            now = loaders.node_links(server, rule, mac, stem, secure_boot=secure)
            new.update((f.path, f) for f in now)
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
    now = _macs_now(context, changed)
    served = [n for n in changed if entries[n].served]
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


def _macs_now(context: RenderContext, changed: list[str]) -> dict[str, str | None]:
    cluster = context.inventory.cluster
    return {n: context.inventory.mac(cluster.by_name[n]) for n in changed}


def _same_subnets(
    context: RenderContext, previous: Applied, entries: dict[str, NodeEntry], changed: list[str]
) -> bool:
    """Whether the DHCP file still declares the same subnets: the boot networks of the
    served nodes with a MAC, and the server's own network."""
    networks, leaving = list(context.inventory.cluster.networks), set(changed)
    now = _macs_now(context, changed)
    served = [n for n in changed if entries[n].served]
    kept = previous.networks_with_hosts(networks, leaving) | {context.server.network}
    before = kept | {entries[n].network for n in served if entries[n].mac}
    after = kept | {entries[n].network for n in served if now[n] is not None}
    return before == after


def _document_file(
    context: RenderContext,
    previous: Applied,
    entries: dict[str, NodeEntry],
    changed: list[str],
    root: Path,
) -> list[RenderedFile] | None:
    """Kea's or dhcpd's file with the changed nodes' lines spliced (the module's docstring
    says where); None if it cannot be. Its ``check`` is the file of the changed nodes alone."""
    cluster, flavour = context.inventory.cluster, context.server.dhcp
    networks, leaving = list(cluster.networks), set(changed)
    now = _macs_now(context, changed)
    served = [n for n in changed if entries[n].served]
    alone = dhcp.main_file(_layout_of(context, [n for n in served if now[n] is not None]))
    rendered = alone.content or b""
    installed = _read(target(root, alone.path))
    if installed is None:
        return None
    # changed in place: each cut or insertion moves the rest of 10 MB at 100,000 nodes once,
    # rather than copying all of it twice
    text, key, commas = bytearray(installed), _KEYS[flavour], flavour == "kea"
    was: dict[str, int] = {}  # where a node's old line was: most often where its new one goes
    for name in served:
        mac = entries[name].mac
        if mac is not None:
            was[name] = _cut_entry(text, key.format(mac).encode(), commas)
            if was[name] < 0:
                return None  # not the file the last apply installed
    for name in served:
        mac, entry = now[name], entries[name]
        if mac is None:
            continue
        line = _line(rendered, key.format(mac).encode())
        if line is None:
            return None
        near = was.get(name, 0)
        if commas:
            anchor = previous.next_host([entry.network], entry, leaving)  # in its subnet
            subnet = networks.index(entry.network) + 1
            done = _insert_kea(text, line.removesuffix(b","), anchor, subnet, near)
        else:
            anchor = previous.next_host(networks, entry, leaving)
            done = _insert_entry(text, line, anchor and key.format(anchor), near)
        if not done:
            return None
    return [RenderedFile(alone.path, bytes(text), service=alone.service, check=rendered)]


def _layout_of(context: RenderContext, names: list[str]) -> RenderContext:
    """``context`` over a layout of the nodes ``names`` alone."""
    cluster = context.inventory.cluster
    nodes = tuple(cluster.by_name[name] for name in names)
    alone = replace(cluster, nodes=nodes, by_name={})
    return replace(context, inventory=replace(context.inventory, cluster=alone))


def _find_entry(text: bytes | bytearray, key: bytes, near: int = 0) -> int:
    """Where the line holding ``key`` starts in ``text``, -1 if none does; looked for from
    ``near`` on first (a hint: a key is in one line at most)."""
    at = text.find(key, near)
    if at < 0 and near > 0:
        at = text.find(key, 0, near + len(key))
    return at if at < 0 else text.rfind(b"\n", 0, at) + 1


def _line(text: bytes, key: bytes) -> bytes | None:
    """The line holding ``key``, without its newline."""
    start = _find_entry(text, key)
    end = text.find(b"\n", start)
    return None if start < 0 or end < 0 else text[start:end]


def _cut_entry(text: bytearray, key: bytes, commas: bool) -> int:
    """Take the line holding ``key`` out of ``text``; with ``commas`` (Kea's list), a
    subnet's last line takes the comma off the line before it, if that is a reservation's.
    Where the line was, -1 if there was none."""
    start = _find_entry(text, key)
    end = text.find(b"\n", start) + 1
    if start < 0 or end == 0:
        return -1
    last = commas and text[end - 2 : end] != b",\n"
    del text[start:end]
    if last and text[start - 3 : start] == b"},\n":
        del text[start - 2]
        start -= 1
    return start


def _insert_entry(text: bytearray, line: bytes, before: str | None, near: int) -> bool:
    """Put ``line`` before the line of the key ``before`` (None: at the end) in ``text``;
    whether it could be."""
    at = len(text) if before is None else _find_entry(text, before.encode(), near)
    if at >= 0:
        text[at:at] = line + b"\n"
    return at >= 0


def _insert_kea(text: bytearray, line: bytes, before: str | None, subnet: int, near: int) -> bool:
    """Put the reservation ``line`` in Kea's file ``text`` before the line of the MAC
    ``before``, or (None) last in the subnet numbered ``subnet``, the comma moved after the
    line before; whether it could be."""
    if before is not None:
        at = _find_entry(text, _KEYS["kea"].format(before).encode(), near)
        if at >= 0:
            text[at:at] = line + b",\n"
        return at >= 0
    head = text.find(_KEA_SUBNET.format(subnet).encode())
    close = text.find(_KEA_CLOSE, head) + 1 if head >= 0 else 0
    if close == 0:
        return False
    if text[close - 2 : close] == b"}\n":  # the last reservation so far
        text[close - 1 : close - 1] = b","
        close += 1
    text[close:close] = line + b"\n"
    return True


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
