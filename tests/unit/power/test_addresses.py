"""BMC addresses of each driver: what cluster.xml may say, and clear errors for the rest."""

from __future__ import annotations

import pytest

from dim.errors import PowerError
from dim.power import ipmi, redfish, snmp


def test_redfish_addresses_default_to_https_and_may_name_a_system():
    assert redfish.parse_address("10.1.0.5") == redfish.Address("https://10.1.0.5", None)
    assert redfish.parse_address("http://127.0.0.1:8000/abc") == redfish.Address(
        "http://127.0.0.1:8000", "abc"
    )
    assert redfish.parse_address("bmc7.example:8443").base == "https://bmc7.example:8443"


@pytest.mark.parametrize("bad", ["ftp://x", "http://", "https://h:99999", "h/a/b"])
def test_bad_redfish_addresses_are_config_errors(bad):
    with pytest.raises(PowerError) as caught:
        redfish.parse_address(bad)
    assert caught.value.kind == "config"


def test_ipmi_addresses_take_an_optional_port():
    assert ipmi.parse_address("10.1.0.5") == ("10.1.0.5", 623)
    assert ipmi.parse_address("127.0.0.1:9001") == ("127.0.0.1", 9001)


@pytest.mark.parametrize("bad", ["", "h:x", "h:0", "h:70000", "http://h"])
def test_bad_ipmi_addresses_are_config_errors(bad):
    with pytest.raises(PowerError) as caught:
        ipmi.parse_address(bad)
    assert caught.value.kind == "config"


def test_snmp_addresses_name_a_profile_a_device_and_an_index():
    address = snmp.parse_address("apc-pdu://10.1.0.5/12")
    assert (address.profile.name, address.host, address.port, address.index) == (
        "apc-pdu",
        "10.1.0.5",
        161,
        "12",
    )
    blade = snmp.parse_address("bladecenter://127.0.0.1:16100/3")
    assert blade.port == 16100
    assert blade.profile.status.format(index=3) == "1.3.6.1.4.1.2.3.51.2.22.1.5.1.1.4.3"


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("10.1.0.5/3", "invalid SNMP address"),
        ("nope://h/1", "unknown SNMP profile"),
        ("apc-pdu://h/x", "invalid SNMP address"),
    ],
)
def test_bad_snmp_addresses_are_config_errors(bad, words):
    with pytest.raises(PowerError) as caught:
        snmp.parse_address(bad)
    assert caught.value.kind == "config" and words in caught.value.message


def test_redfish_reset_types_follow_what_the_system_advertises():
    choose = redfish._choose_reset
    assert choose("on", ["ForceOn"], "Off") == "ForceOn"
    assert choose("cycle", ["PowerCycle", "On"], "On") == "PowerCycle"
    assert choose("cycle", ["On", "ForceRestart"], "Off") == "On"
    assert choose("cycle", ["On", "ForceRestart"], "On") == "ForceRestart"
    with pytest.raises(PowerError) as caught:
        choose("soft", ["On", "ForceOff"], "On")
    assert caught.value.kind == "unsupported" and "GracefulShutdown" in caught.value.message
