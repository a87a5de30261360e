"""The package's per-node templates, compiled by hand into Python: the same bytes, faster.

At 100,000 nodes the hosts file has 300,000 lines, dnsmasq's hosts file and the kernel's
exports (or ganesha's) 100,000 each, and Jinja2 spends most of rendering on them: a generator
step, an attribute lookup through ``environment.getattr`` and a ``str`` call per value. Each
function here renders one template from the same context objects: the hosts file one
f-string per line; dnsmasq's reservations and the exports from their columns
(:class:`dim.services.rows.Rows`), one ``join`` in C with no object per node. One whose
template has more than its per-node loop (ganesha.conf.j2) has Jinja2 render the rest, given
as ``jinja``.

A function stands for one exact template text, whose SHA-256 it is registered with
(:data:`TEMPLATES`). :meth:`dim.services.rendering.RenderContext.render` uses it only when the
template it would load (the package's own, or an administrator's override) has exactly that
text; any other text, such as an override that changes a line, goes through Jinja2. A change
to a package template without its function here is a slower render, not a different file
(and ``tests/unit/services/test_compiled.py`` fails until both agree again).

Each function returns the text and the number of lines the template gives when no value
holds a newline. A text with another count had a value that did (a value Jinja2 refuses):
the caller renders it again with Jinja2, which raises the error that names it::

    >>> hosts_file({"header": "h", "cluster": "c", "entries": [("10.0.0.1", "n1.x", "n1")]}, str)
    ('# h\\n# Hosts of cluster c.\\n10.0.0.1\\tn1.x n1\\n', 3)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from dim.services.rows import HostRows, joined

Jinja = Callable[[Mapping[str, object]], str]  # the same template rendered by Jinja2
Compiled = Callable[[Mapping[str, object], Jinja], tuple[str, int]]


def hosts_file(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
    """hosts.j2: one line per (address, fully qualified name, short name)."""
    entries = context["entries"]
    lines = [f"# {context['header']}\n# Hosts of cluster {context['cluster']}.\n"]
    if isinstance(entries, HostRows):  # dim.services.hosts's columns, joined in C
        return lines[0] + entries.text(), 2 + len(entries)
    lines += [
        f"{ip}\t{fqdn} {name}\n" if fqdn != name else f"{ip}\t{name}\n"
        for ip, fqdn, name in entries  # type: ignore[attr-defined]
    ]
    return "".join(lines), len(lines) + 1  # the first item holds two lines


def dnsmasq_hosts(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
    """dnsmasq.hosts.j2: one ``dhcp-host`` line per reservation, subnet after subnet."""
    texts, lines = [], 0
    for subnet in context["dhcp"].subnets:  # type: ignore[attr-defined]
        _, macs, ips, hostnames, secure, tags = subnet.hosts.columns
        if any(tags) or any(secure):  # a failover set's, or Secure Boot nodes
            texts += [
                f"{mac},{f'set:{tag},' if tag else ''}{'set:secureboot,' if secure_boot else ''}"
                f"{ip},{hostname}\n"
                for mac, ip, hostname, secure_boot, tag in zip(
                    macs, ips, hostnames, secure, tags, strict=True
                )
            ]
        else:
            texts.append(joined(macs, ",", ips, ",", hostnames, "\n"))
        lines += len(macs)
    return "".join(texts), lines


def kernel_exports(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
    """exports.j2: the image store to every node's block, each node's replicas to itself."""
    nfs = context["nfs"]
    lines = [
        f"# {context['header']}\n"
        f"# NFS exports for cluster {nfs.cluster}, image server {nfs.server_name}.\n"  # type: ignore[attr-defined]
        "# The image store: read-only to every node of the server, which may be switched to "
        "any image.\n"
    ]
    for export in nfs.images:  # type: ignore[attr-defined]
        clients = " ".join(f"{c}(ro,no_root_squash,no_subtree_check,async)" for c in export.clients)
        lines.append(f"{export.path} {clients}\n")
    lines.append("# Each node's replicas (one folder per image): read-write to that node only.\n")
    _, _, paths, clients, _ = nfs.replicas.columns  # type: ignore[attr-defined]
    lines.append(joined(paths, " ", clients, "(rw,no_root_squash,no_subtree_check,sync)\n"))
    return "".join(lines), len(lines) + 1 + len(paths)  # three lines in the first item


def ganesha_conf(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
    """ganesha.conf.j2: its settings and the image store's export by Jinja2, which checks
    their values; then one export per node, the template's last loop."""
    nfs = context["nfs"]
    head = jinja({**context, "nfs": dataclasses.replace(nfs, replicas=())})  # type: ignore[type-var]
    ids, _, _, clients, paths = nfs.replicas.columns  # type: ignore[attr-defined]
    text = joined(
        "EXPORT { Export_Id = ",
        list(map(str, ids)),
        "; Path = ",
        paths,
        "; Pseudo = ",
        paths,
        "; FSAL { Name = VFS; } CLIENT { Clients = ",
        clients,
        "; Access_Type = RW; } }\n",
    )
    return head + text, head.count("\n") + len(ids)


# template name -> (SHA-256 of the template text the function renders, the function)
TEMPLATES: dict[str, tuple[str, Compiled]] = {
    "hosts.j2": ("95fe0476e6aa7a0da46657b70b6ffe93639de72416db4084c1bc432da8a6249f", hosts_file),
    "dnsmasq.hosts.j2": (
        "d08e48c8a897ff19e9bc510f017b6b13ca059185ba68cb6a23814b6e1d3ac873",
        dnsmasq_hosts,
    ),
    "exports.j2": (
        "3f0a2c918280a7704e5dc0edcfa559a6ad442d0370b02cb3c9306a1519a8d41b",
        kernel_exports,
    ),
    "ganesha.conf.j2": (
        "eff0084c15b5e0a242dcbcc1e6425e2268b0eb905aff138f288a847cfa1edf88",
        ganesha_conf,
    ),
}
