"""Every value of cluster.xml has a kind and a check (dim.names), run by the parser."""

import pytest
from lxml import etree

from dim.errors import LayoutError
from dim.layout.parser import ATTRIBUTES, _schema, parse
from dim.names import (
    check_boot_file,
    check_hostname,
    check_keepout,
    check_kernel_args,
    check_nfs_options,
    check_path,
)
from tests.unit.conftest import SMALL

RNG = "{http://relaxng.org/ns/structure/1.0}"


def schema_attributes() -> set[tuple[str, str]]:
    """(element, attribute) for every attribute the schema declares."""
    from importlib import resources

    root = etree.fromstring(resources.files("dim.layout").joinpath("cluster.rng").read_bytes())
    _schema()  # the schema itself is valid
    defines = {d.get("name"): d for d in root.iter(f"{RNG}define")}
    found = set()

    def walk(node, element):
        for child in node:
            if child.tag == f"{RNG}define":
                continue  # reached through its <ref>, inside an element
            if child.tag == f"{RNG}element":
                walk(child, child.get("name"))
            elif child.tag == f"{RNG}attribute":
                found.add((element, child.get("name")))
            elif child.tag == f"{RNG}ref":
                walk(defines[child.get("name")], element)
            else:
                walk(child, element)

    walk(root, None)
    return found


def test_every_attribute_of_the_schema_has_a_kind():
    assert schema_attributes() == set(ATTRIBUTES)


@pytest.mark.parametrize(
    "value",
    ["s01c1b01", "s01c1b01-ib", "bc.example", "a" * 63, ".".join(["a" * 63] * 3) + ".bbbbbbbbb"],
)
def test_host_names_of_rfc_1123_are_accepted(value):
    assert check_hostname("host name", value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty label"),
        ("a..b", "empty label"),
        ("a.", "empty label"),
        ("-a", "starts or ends with '-'"),
        ("a-", "starts or ends with '-'"),
        ("a_b", "character '_'"),
        ("a b", "character ' '"),
        ("a/b", "character '/'"),
        ("a\nb", "character '\\n'"),
        ("\u0430b", "character '\u0430'"),  # Cyrillic a
        ("a" * 64, "longer than 63"),
        ("a." * 127, "longer than 253"),
    ],
)
def test_host_names_outside_rfc_1123_are_refused_with_the_reason(value, reason):
    with pytest.raises(ValueError, match="invalid host name") as info:
        check_hostname("host name", value)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    "value", ["", "quiet", "console=ttyS0,115200n8 quiet rd.break", "systemd.unit=getty@tty1"]
)
def test_kernel_arguments_of_words_are_accepted(value):
    assert check_kernel_args("kernel-args", value) == value


@pytest.mark.parametrize(
    "value",
    [
        "quiet\nchain http://x/evil.ipxe",
        "quiet || chain http://x/evil.ipxe",
        "quiet; insmod evil",
        "a=${net0/ip}",
        "a='b c'",
        'a="b c"',
        "a\tb",
        "quiet # comment",
        "x" * 1025,
    ],
)
def test_kernel_arguments_that_could_chain_a_command_are_refused(value):
    with pytest.raises(ValueError, match="invalid kernel-args"):
        check_kernel_args("kernel-args", value)


@pytest.mark.parametrize("value", ["", "actimeo=1", "vers=4.2,proto=tcp,nolock,sec=krb5:krb5i"])
def test_nfs_options_as_keys_and_values_are_accepted(value):
    assert check_nfs_options("nfs-options", value) == value


@pytest.mark.parametrize("value", ["a,", ",a", "a b", "a=", "a=b=c", "a=b/c", "a\n", "a;b"])
def test_malformed_nfs_options_are_refused(value):
    with pytest.raises(ValueError, match="invalid nfs-options"):
        check_nfs_options("nfs-options", value)


def test_paths_are_absolute_plain_and_normalised():
    assert check_path("p", "/srv/dim/tftp/") == "/srv/dim/tftp"
    assert check_keepout("p", "/etc/ssh/ssh_host_*") == "/etc/ssh/ssh_host_*"
    assert check_boot_file("b", "efi/grubx64.efi") == "efi/grubx64.efi"
    for bad in ("srv", "/a/../b", "/a/./b", "/a//b", "/a b", "/a,b", "/a\nb", "/a*"):
        with pytest.raises(ValueError):
            check_path("p", bad)
    for bad in ("", "a/../b", "a,b", "a b", "x" * 128):
        with pytest.raises(ValueError):
            check_boot_file("b", bad)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('domain="t.example"', 'domain="t_x.example"', "invalid domain 't_x.example'"),
        ('name="srv"', 'name="srv_1"', "invalid server name 'srv_1'"),
        ('nodes="g[1-2]"', 'nodes="g_[1-2]"', "cluster.xml:13: invalid node name 'g_1'"),
        (
            'ip="10.10.0.{100+i}"/>',
            'ip="10.10.0.{100+i}" hostname="{name} x"/>',
            "node g1: invalid hostname 'g1 x'",
        ),
        (
            'ip="10.10.0.{100+i}"/>',
            'ip="10.10.0.{100+i}" hostname="{name}&#10;chain"/>',
            "node g1: invalid hostname 'g1\\nchain'",
        ),
        (
            '<image name="beta">',
            '<image name="beta" kernel-args="quiet&#10;chain http://x/e.ipxe">',
            "invalid kernel-args 'quiet\\nchain http://x/e.ipxe'",
        ),
        (
            'address="10.11.0.{10+n1}"',
            'address="10.11.0.{10+n1} x"',
            "node c01: invalid BMC address '10.11.0.11 x'",
        ),
        ('dhcp="dnsmasq"', 'dhcp="dnsmasq" http-port="0"', "http-port must be a port"),
        ('dhcp="dnsmasq"', 'dhcp="dnsmasq" interface="eth 0"', "invalid interface 'eth 0'"),
    ],
)
def test_a_bad_value_is_one_line_naming_file_line_and_value(old, new, message):
    data = SMALL.decode().replace(old, new, 1).encode()
    assert data != SMALL
    with pytest.raises(LayoutError) as info:
        parse(data, "cluster.xml")
    text = str(info.value)
    assert message in text
    assert text.startswith("cluster.xml:") and "\n" not in text
    assert info.value.exit_status == 2


def test_a_host_name_with_the_domain_fits_in_253_characters():
    domain = ".".join(["d" * 60] * 3)  # 182 characters: 70 left for a host name
    data = SMALL.replace(b'domain="t.example"', f'domain="{domain}"'.encode())
    data = data.replace(b'ip="10.10.0.{100+i}"/>', b'ip="10.10.0.{100+i}" hostname="h.{name}"/>')
    assert parse(data, "x.xml").node("g1").boot.hostname == "h.g1"
    long = ("h" * 60 + ".") * 2
    data = data.replace(b'hostname="h.{name}"', f'hostname="{long}{{name}}"'.encode())
    with pytest.raises(LayoutError, match="node g1: hostname is longer than 70 characters"):
        parse(data, "x.xml")


def test_a_bmc_host_name_is_a_host_name_too():
    name = "c" * 59
    data = SMALL.replace(b'nodes="c[01-04]"', f'nodes="{name}[1-4]"'.encode())
    data = data.replace(b'<node name="c04" image="beta"/>', b"")
    with pytest.raises(LayoutError, match="invalid BMC host name 'cccc.*c1-bmc'.* longer than 63"):
        parse(data, "x.xml")


def test_a_very_long_value_is_cut_in_the_message():
    data = SMALL.replace(
        b'<image name="beta">', b'<image name="beta" kernel-args="' + b"x" * 5000 + b'">'
    )
    with pytest.raises(LayoutError, match="longer than 1024") as info:
        parse(data, "cluster.xml")
    assert len(str(info.value)) < 200
