"""SNMP v2c through pysnmp: PDU outlets and blade-chassis slots, with OIDs kept as data.

A node's address names a device profile, the device and the node's index on it (an outlet,
a blade slot)::

    <bmc driver="snmp" address="apc-pdu://10.1.0.5/{n1}" credentials="pdu"/>
    <bmc driver="snmp" address="bladecenter://10.1.0.9:161/{n2}" credentials="amm"/>

Profiles live in ``snmp_profiles.toml`` next to this module (APC switched PDUs, IBM BladeCenter
management modules); ``$DIM_SNMP_PROFILES`` names a site file of the same form that adds or
replaces profiles. The credentials entry gives the ``community``. A wrong community gets no
answer at all from most agents, so it shows as a timeout. SNMP offers neither a boot device
nor MAC addresses.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from dim.errors import PowerError
from dim.power.interface import Nic, Target

DEFAULT_PORT = 161


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    status: str  # OID template with {index}
    states: dict[int, str]
    actions: dict[str, tuple[str, int]]  # action -> (OID template, integer value)


@dataclass(frozen=True, slots=True)
class Address:
    profile: Profile
    host: str
    port: int
    index: str


@cache
def profiles(site_file: str | None = None) -> dict[str, Profile]:
    """The package's profiles, updated with those of ``site_file``."""
    text = resources.files("dim.power").joinpath("snmp_profiles.toml").read_text()
    tables = tomllib.loads(text)
    if site_file:
        try:
            tables.update(tomllib.loads(Path(site_file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PowerError("config", f"cannot read SNMP profiles {site_file}: {exc}") from None
    return {name: _profile(name, table) for name, table in tables.items()}


def _profile(name: str, table: dict) -> Profile:
    try:
        return Profile(
            name=name,
            status=str(table["status"]),
            states={int(k): str(v) for k, v in table["states"].items()},
            actions={k: (str(v[0]), int(v[1])) for k, v in table.get("actions", {}).items()},
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PowerError("config", f"SNMP profile {name!r} is malformed ({exc!r})") from None


def parse_address(text: str) -> Address:
    """``apc-pdu://10.1.0.5/12`` -> profile apc-pdu, host 10.1.0.5, port 161, index 12."""
    known = profiles(os.environ.get("DIM_SNMP_PROFILES"))
    scheme, sep, rest = text.partition("://")
    where, _, index = rest.partition("/")
    host, _, port = where.partition(":")
    if not sep or not host or not index.isdigit() or (port and not port.isdigit()):
        raise PowerError(
            "config",
            f"invalid SNMP address {text!r}",
            hint=f"use PROFILE://HOST[:PORT]/INDEX with a profile among {', '.join(known)}",
        )
    if scheme not in known:
        raise PowerError(
            "config",
            f"unknown SNMP profile {scheme!r} in {text!r}",
            hint=f"profiles: {', '.join(known)} (more in $DIM_SNMP_PROFILES)",
        )
    return Address(known[scheme], host, int(port or DEFAULT_PORT), index)


class SnmpDriver:
    name = "snmp"

    def __init__(self) -> None:
        self._engine = None

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()

    async def status(self, target: Target) -> str:
        address = parse_address(target.address)
        oid = address.profile.status.format(index=address.index)
        value = await self._request(target, address, oid, None)
        state = address.profile.states.get(value)
        if state is None:
            raise PowerError(
                "protocol",
                f"the device answered {value}, a state profile {address.profile.name} "
                "does not know",
            )
        return state

    async def power(self, target: Target, action: str) -> str:
        address = parse_address(target.address)
        if action not in address.profile.actions:
            raise PowerError(
                "unsupported",
                f"profile {address.profile.name} has no {action} "
                f"(it has {', '.join(address.profile.actions)})",
            )
        template, value = address.profile.actions[action]
        await self._request(target, address, template.format(index=address.index), value)
        return action

    async def bootdev(self, target: Target, device: str, persistent: bool) -> str:
        raise PowerError("unsupported", "SNMP power control cannot set a boot device")

    async def macs(self, target: Target) -> list[Nic]:
        raise PowerError("unsupported", "SNMP power control reports no MAC addresses")

    async def _request(self, target: Target, address: Address, oid: str, value: int | None):
        from pysnmp.hlapi.v3arch import asyncio as hlapi
        from pysnmp.proto.rfc1902 import Integer

        credential = target.credential
        if credential is None or credential.community is None:
            name = credential.name if credential else "default"
            raise PowerError(
                "config",
                f"no community in credentials entry {name!r}",
                hint='add community = "…" to it (docs/power.md)',
            )
        if self._engine is None:
            self._engine = hlapi.SnmpEngine()
        try:
            transport = await hlapi.UdpTransportTarget.create(
                (address.host, address.port), timeout=0.5, retries=20
            )
        except Exception as exc:  # noqa: BLE001 - pysnmp raises its own error for bad hosts
            raise PowerError("unreachable", f"cannot reach the device: {exc}") from None
        community = hlapi.CommunityData(credential.community.reveal(), mpModel=1)
        if value is None:
            varbind = hlapi.ObjectType(hlapi.ObjectIdentity(oid))
            command = hlapi.get_cmd
        else:
            varbind = hlapi.ObjectType(hlapi.ObjectIdentity(oid), Integer(value))
            command = hlapi.set_cmd
        indication, status, _index, varbinds = await command(
            self._engine, community, transport, hlapi.ContextData(), varbind
        )
        return _value(indication, status, varbinds, oid)


def _value(indication, status, varbinds, oid: str) -> int:
    if indication is not None:
        text = str(indication)
        if "timeout" in text.lower() or "timed out" in text.lower():
            raise PowerError("timeout", "no SNMP answer (a wrong community gets no answer either)")
        raise PowerError("protocol", f"SNMP error: {text}")
    if status:
        raise PowerError("refused", f"the device refused: {status.prettyPrint()} ({oid})")
    if len(varbinds) != 1:
        raise PowerError("protocol", f"the device answered {len(varbinds)} values for one OID")
    answer = varbinds[0][1]
    kind = type(answer).__name__
    if kind in ("NoSuchInstance", "NoSuchObject", "EndOfMibView"):
        raise PowerError("refused", f"the device has no {oid} (wrong index?)")
    try:
        return int(answer)
    except (TypeError, ValueError):
        raise PowerError("protocol", f"the device answered a {kind}, not an integer") from None
