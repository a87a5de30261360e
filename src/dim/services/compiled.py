"""The package's per-node templates, compiled by hand into Python: the same bytes, faster.

At 100,000 nodes the hosts file has 300,000 lines, dnsmasq's hosts file and the kernel's
exports (or ganesha's) 100,000 each, and Jinja2 spends most of rendering on them: a generator
step, an attribute lookup through ``environment.getattr`` and a ``str`` call per value. Each
function here renders one template from the same context objects: the hosts file one
f-string per line; dnsmasq's reservations and the exports from their columns
(:class:`dim.services.rows.Rows`), one ``join`` in C with no object per node. One whose
template has more than its per-node loop (ganesha.conf.j2) has Jinja2 render the rest, given
as ``jinja``. The small files of a dnsmasq server (dnsmasq.conf, the DNS dnsmasq's, the
kernel settings) and the loaders' templates, which hold nothing but ``{{ value }}`` fields
(:func:`substituted`), have functions too: with them, rendering a dnsmasq server's files
imports no Jinja2 (some 50 ms of a full render at 100,000 nodes).

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
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

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
    _, _, paths, clients, _, _ = nfs.replicas.columns  # type: ignore[attr-defined]
    lines.append(joined(paths, " ", clients, "(rw,no_root_squash,no_subtree_check,sync)\n"))
    return "".join(lines), len(lines) + 1 + len(paths)  # three lines in the first item


def ganesha_conf(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
    """ganesha.conf.j2: its settings and the image store's export by Jinja2, which checks
    their values; then one export per node, the template's last loop."""
    nfs = context["nfs"]
    head = jinja({**context, "nfs": dataclasses.replace(nfs, replicas=())})  # type: ignore[type-var]
    ids, _, _, clients, paths, fs_paths = nfs.replicas.columns  # type: ignore[attr-defined]
    text = joined(
        "EXPORT { Export_Id = ",
        list(map(str, ids)),
        "; Path = ",
        fs_paths,
        "; Pseudo = ",
        paths,
        f"; FSAL {{ {nfs.fsal} }} CLIENT {{ Clients = ",
        clients,
        "; Access_Type = RW; } }\n",
    )
    return head + text, head.count("\n") + len(ids)


def _interface_lines(dhcp: Any, verb: str) -> list[str]:
    """A dnsmasq's interface and how it binds to it (both dnsmasq templates: ``verb`` is
    their one differing word)."""
    if not dhcp.interface:
        return []
    if dhcp.dynamic_bind:
        return [
            f"interface={dhcp.interface}\n",
            f"# a failover set's server: also {verb} on its peers' service addresses when they "
            "move here\n",
            "bind-dynamic\n",
        ]
    return [f"interface={dhcp.interface}\n", "bind-interfaces\n"]


def dnsmasq_conf(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
    """dnsmasq.conf.j2: DHCP of the DHCP-only dnsmasq, one item of ``out`` per line."""
    dhcp: Any = context["dhcp"]
    out = [
        f"# {context['header']}\n",
        f"# DHCP for cluster {dhcp.cluster}, image server {dhcp.server_name}.\n",
    ]
    out += _interface_lines(dhcp, "listen")
    out += [
        "# DHCP only: the names are served by a DNS-only dnsmasq of their own "
        "(/etc/dim/dnsmasq-dns.conf,\n",
        "# from the hosts file). Serving DNS here, dnsmasq rebuilt the DNS records of every lease "
        "after\n",
        "# each lease change: a quarter of its CPU at 2,500 nodes booting at once "
        "(docs/benchmarks.md).\n",
        "port=0\n",
        f"dhcp-hostsfile={dhcp.dnsmasq_hosts_file}\n",
        "dhcp-authoritative\n",
        "# Every address is a reservation (dhcp-host), so a lease file holds nothing a restart "
        "needs,\n",
        "# and dnsmasq rewrites all of it (and fsyncs) after every lease change: at 2,500 nodes\n",
        "# booting at once that rewrite was its main cost (bench/storm.py, docs/benchmarks.md).\n",
        "leasefile-ro\n",
    ]
    if dhcp.lease_max:
        out += [
            "# a reserved address takes a lease all the same: past the default 1,000, nodes would "
            "get none\n",
            f"dhcp-lease-max={dhcp.lease_max}\n",
        ]
    for s in dhcp.subnets:
        out.append(f"dhcp-range=set:{s.name},{s.address},static,{s.netmask},12h\n")
        if s.gateway:
            out.append(f"dhcp-option=tag:{s.name},option:router,{s.gateway}\n")
        if s.dns:
            out.append(f"dhcp-option=tag:{s.name},option:dns-server,{','.join(map(str, s.dns))}\n")
        else:
            out += [
                "# this server (0.0.0.0: its address on the node's network), where the DNS "
                "dnsmasq answers;\n",
                "# with port=0 dnsmasq would send no DNS server of its own accord\n",
                f"dhcp-option=tag:{s.name},option:dns-server,0.0.0.0\n",
            ]
        if s.ntp:
            out.append(f"dhcp-option=tag:{s.name},option:ntp-server,{','.join(map(str, s.ntp))}\n")
        if s.domain:
            out.append(f"dhcp-option=tag:{s.name},option:domain-name,{s.domain}\n")
    out += [
        "\n",
        "# Boot-file choice by client kind, first match wins (dim.services.clients): iPXE gets "
        "the HTTP\n",
        "# script, UEFI HTTP boot the URL of its loader on dim serve (and option 60 = HTTPClient, "
        "without\n",
        "# which the firmware ignores the offer), UEFI and BIOS PXE a loader over TFTP. Nodes "
        "declared\n",
        "# Secure Boot (tag secureboot, set on their host line) get the Secure Boot loader over "
        "TFTP.\n",
        "dhcp-match=set:ipxe,175\n",
        "dhcp-userclass=set:ipxe,iPXE\n",
        f"dhcp-vendorclass=set:httpclient,{dhcp.http_vendor_class}\n",
    ]
    out += [f"dhcp-match=set:httparch,option:client-arch,{arch}\n" for arch in dhcp.http_arch]
    out.append("tag-if=set:efihttp,tag:httpclient,tag:httparch\n")
    out += [f"dhcp-match=set:efi64,option:client-arch,{arch}\n" for arch in dhcp.uefi_arch]
    for k in dhcp.other_kinds:
        arch_tag = f"{k.name}-arch" if k.http else k.name
        out += [f"dhcp-match=set:{arch_tag},option:client-arch,{arch}\n" for arch in k.arch]
        if k.http:
            out.append(f"tag-if=set:{k.name},tag:httpclient,tag:{arch_tag}\n")
    for b in dhcp.boot_servers:
        t = f"tag:{b.tag}," if b.tag else ""
        if b.tag:
            out.append(f"# the nodes of server {b.name} (tag {b.tag}, set on their host lines)\n")
        out += [
            f"dhcp-boot={t}tag:secureboot,{b.secure_boot_loader},{b.name},{b.address}\n",
            f"dhcp-boot={t}tag:ipxe,tag:!secureboot,{b.ipxe_url}\n",
            f"dhcp-boot={t}tag:!ipxe,tag:!secureboot,tag:efihttp,{b.uefi_http_url}\n",
            f"dhcp-option-force={t}tag:!ipxe,tag:!secureboot,tag:efihttp,option:vendor-class,"
            f"{dhcp.http_vendor_class}\n",
            f"dhcp-boot={t}tag:!ipxe,tag:!secureboot,tag:!efihttp,tag:efi64,{b.uefi_loader},"
            f"{b.name},{b.address}\n",
        ]
        for k, loader in zip(dhcp.other_kinds, b.other_loaders, strict=True):
            if k.http:
                out += [
                    f"dhcp-boot={t}tag:!ipxe,tag:!secureboot,tag:{k.name},{loader}\n",
                    f"dhcp-option-force={t}tag:!ipxe,tag:!secureboot,tag:{k.name},"
                    f"option:vendor-class,{dhcp.http_vendor_class}\n",
                ]
            else:
                out.append(
                    f"dhcp-boot={t}tag:!ipxe,tag:!secureboot,tag:{k.name},{loader},"
                    f"{b.name},{b.address}\n"
                )
        others = "".join(f"tag:!{k.name}," for k in dhcp.other_kinds)
        out.append(
            f"dhcp-boot={t}tag:!ipxe,tag:!secureboot,tag:!efihttp,tag:!efi64,{others}"
            f"{b.bios_loader},{b.name},{b.address}\n"
        )
    out += [
        "# iPXE: no-pxedhcp, so that it does not wait for a ProxyDHCP offer.\n",
        "dhcp-option=encap:175,176,1b\n",
        "enable-tftp\n",
        f"tftp-root={dhcp.tftp_root}\n",
    ]
    if dhcp.tftp_max:
        out += [
            "# transfers at once (default 50); dnsmasq lowers it to what its open-file limit "
            "allows, and logs it\n",
            f"tftp-max={dhcp.tftp_max}\n",
        ]
    return "".join(out), len(out)


def dnsmasq_dns_conf(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
    """dnsmasq-dns.conf.j2: the DNS-only dnsmasq, one item of ``out`` per line."""
    dhcp: Any = context["dhcp"]
    out = [
        f"# {context['header']}\n",
        f"# DNS for cluster {dhcp.cluster}, image server {dhcp.server_name}.\n",
        "# dnsmasq serving DNS only (no dhcp-range: no DHCP; no TFTP): every name of the hosts "
        "file, other\n",
        "# names forwarded to the servers of /etc/resolv.conf. Run by dim-dns.service (contrib/) "
        "beside\n",
        "# the DHCP dnsmasq, which has port=0: in one process, dnsmasq rebuilt the DNS records of "
        "every\n",
        "# lease after each lease change, quadratic over a boot storm (docs/benchmarks.md).\n",
    ]
    out += _interface_lines(dhcp, "answer")
    out.append(f"addn-hosts={dhcp.hosts_file}\n")
    return "".join(out), len(out)


def sysctl_server_conf(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
    """sysctl-server.conf.j2: the kernel settings, one item of ``out`` per line."""
    needs: Any = context["needs"]
    neighbours: Any = context["neighbours"]
    buffers: Any = context["buffers"]
    out = [
        f"# {context['header']}\n",
        f"# The kernel settings image server {needs.server} needs for its {needs.nodes} nodes.\n",
    ]
    if neighbours:
        out += [
            "# The neighbour (ARP) table. Node addresses the server may talk to (interfaces and "
            f"BMCs): {needs.neighbours}.\n",
            '# Past gc_thresh3 the kernel drops packets to a new neighbour ("neighbour table '
            'overflow");\n',
            "# below gc_thresh1 it collects no entry, so a boot storm does not resolve addresses "
            "twice.\n",
        ]
        out += [f"{key} = {value}\n" for key, value in neighbours]
    if buffers:
        out += [
            "# The receive buffer of datagram sockets that size none (DHCP servers'): in a boot "
            "storm every node sends its DHCP DISCOVER at\n",
            "# once, about 2 KiB of buffer each; past the kernel's 208 KiB it drops them, and each "
            "node\n",
            "# so dropped waits 4 s or more before it tries again.\n",
        ]
        out += [f"{key} = {value}\n" for key, value in buffers]
    return "".join(out), len(out)


# Templates whose only Jinja2 syntax is ``{{ name }}`` and ``{{ name.attribute }}``: rendered
# from their own text (the package's, whose digest the caller checked), each value ``str``.
_SUBSTITUTION = re.compile(r"\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\}\}")
_PACKAGE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@cache
def _pieces(template: str) -> tuple[list[str], list[list[str]]] | None:
    """The literals of a substitution-only template and the dotted names between them; None
    when it holds any other Jinja2 syntax (then Jinja2 renders it)."""
    text = (_PACKAGE_TEMPLATES / template).read_text()
    parts = _SUBSTITUTION.split(text)
    literals, names = parts[0::2], [name.split(".") for name in parts[1::2]]
    if any(mark in literal for literal in literals for mark in ("{{", "{%", "{#", "#}", "%}")):
        return None
    return literals, names


def substituted(template: str) -> Compiled:
    """The compiled function of a substitution-only package template."""

    def render(context: Mapping[str, object], jinja: Jinja) -> tuple[str, int]:
        pieces = _pieces(template)
        if pieces is None:
            return jinja(context), -1  # not substitution-only: Jinja2's text, line count unmet
        literals, names = pieces
        out = [literals[0]]
        for path, literal in zip(names, literals[1:], strict=True):
            value: Any = context[path[0]]
            for attribute in path[1:]:
                value = getattr(value, attribute)
            out += [str(value), literal]
        return "".join(out), sum(literal.count("\n") for literal in literals)

    return render


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
        "79459c502acb1dd37e8be29559840a70db7fdb750775374a29cbecbabe616a1f",
        ganesha_conf,
    ),
    "dnsmasq.conf.j2": (
        "264d0643bc70317439148c923ea56f73bba2c3e57c26c24276e9428d5556bc78",
        dnsmasq_conf,
    ),
    "dnsmasq-dns.conf.j2": (
        "9790c9bbfbe81e0dc32db87a3a3fbeed2bc709767c4f4632c58ff839aca94063",
        dnsmasq_dns_conf,
    ),
    "sysctl-server.conf.j2": (
        "3ac8bb0cc44a0b27530f39b94fbbdd47380702a82cd5afe56d10578250cfbe10",
        sysctl_server_conf,
    ),
    **{
        name: (digest, substituted(name))
        for name, digest in (
            ("boot.ipxe.j2", "39f1da9086a24e920ea73b689b1312d57eb3399f8226f812969c038695a4010b"),
            (
                "pxelinux-default.j2",
                "480ebd2aef00348f517424c76322ea8627fabe67e7008f1e8995b719ad02fac3",
            ),
            ("grub.cfg.j2", "fb132f5c3408cb4e3212e82f989a09a56348519904badb92bf04b1d468ccfc69"),
            ("image.ipxe.j2", "4d03c4175f1ba334645ccee05d06e1b675cab520d8c896264b44cdb997bf7bf8"),
            (
                "pxelinux-image.j2",
                "0e0c864c59bdb87c54298aafc458da8243861dafd24db89bee552e09198b7a22",
            ),
            (
                "grub-image.cfg.j2",
                "f2bac59b5d11c24a3663a1773c113e917d1c387686dd7bfa14e724e468d8f7a6",
            ),
        )
    },
}
