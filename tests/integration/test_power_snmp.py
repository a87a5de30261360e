"""SNMP against snmpsim: an APC PDU's outlets and a BladeCenter management module's blades.

snmpsim refuses to run as root and drops to nobody, so it runs from a virtual environment
nobody can read (built once under /var/cache/dim-tests). Its ``writecache`` records accept
SET, so what dim switches is what the next GET reads.
"""

from __future__ import annotations

import pytest

from tests.integration.power_sims import Lab, snmpsim

pytestmark = pytest.mark.integration

APC = "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4"
BLADE_STATE = "1.3.6.1.4.1.2.3.51.2.22.1.5.1.1.4"
BLADE_POWER = "1.3.6.1.4.1.2.3.51.2.22.1.6.1.1.7"
BLADE_RESTART = "1.3.6.1.4.1.2.3.51.2.22.1.6.1.1.8"
RECORDS = f"""1.3.6.1.2.1.1.1.0|4|dim test device
{APC}.1|2:writecache|value=1
{APC}.2|2:writecache|value=2
{BLADE_STATE}.3|2|1
{BLADE_POWER}.3|2:writecache|value=1
{BLADE_RESTART}.3|2:writecache|value=0
"""


@pytest.fixture(scope="module")
def agent():
    with snmpsim(RECORDS, "pdu-community") as port:
        yield port


@pytest.fixture
def lab(tmp_path, capsys, agent) -> Lab:
    lab = Lab(tmp_path, capsys)
    lab.layout(
        {
            "o1": ("snmp", f"apc-pdu://127.0.0.1:{agent}/1", "pdu"),
            "o2": ("snmp", f"apc-pdu://127.0.0.1:{agent}/2", "pdu"),
            "o9": ("snmp", f"apc-pdu://127.0.0.1:{agent}/9", "pdu"),
            "wc": ("snmp", f"apc-pdu://localhost:{agent}/1", "wrong"),
            "b3": ("snmp", f"bladecenter://127.0.0.1:{agent}/3", "pdu"),
        }
    )
    lab.credentials('[pdu]\ncommunity = "pdu-community"\n[wrong]\ncommunity = "nope"\n')
    return lab


def test_outlets_switch_and_read_back(lab):
    status, out, err = lab.dim("power", "off", "o[1-2]")
    assert status == 0, err
    assert lab.dim("power", "status", "o[1-2]")[1].split() == ["off", "o[1-2]"]
    assert lab.dim("power", "on", "o2")[0] == 0
    status, out, _ = lab.dim("power", "status", "o[1-2]")
    assert out.splitlines() == ["off  o1", "on   o2"]
    assert lab.dim("power", "cycle", "o2")[0] == 0  # immediateReboot accepted


def test_blade_power_state_and_control(lab):
    assert lab.dim("power", "status", "b3")[1].split() == ["on", "b3"]
    status, out, err = lab.dim("power", "off", "b3")
    assert status == 0, err
    assert lab.dim("power", "reset", "b3")[0] == 0


def test_wrong_index_wrong_community_and_what_snmp_cannot_do(lab):
    status, out, err = lab.dim("power", "status", "o9,wc", "--timeout", "1.5")
    assert status == 1
    assert f"error (refused)  o9: the device has no {APC}.9 (wrong index?)" in out
    assert "error (timeout)  wc: no answer within 1.5 s" in out
    assert "pdu-community" not in out + err
    status, out, err = lab.dim("bootdev", "o1", "pxe")
    assert status == 1 and "error (unsupported)  o1: SNMP power control cannot set" in out
    status, out, err = lab.dim("power", "soft", "o1")
    assert status == 1 and "profile apc-pdu has no soft" in out
