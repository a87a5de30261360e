"""Redfish over aiohttp: power, reset types the system advertises, boot override, NIC MACs.

A node's BMC address is ``[http[s]://]HOST[:PORT][/SYSTEM-ID]``; HTTPS is the default, and the
system id is needed only when one BMC manages several systems::

    <bmc driver="redfish" address="10.1.{n1}.{n2}" credentials="default"/>
    <bmc driver="redfish" address="http://127.0.0.1:8000/{uuid}"/>   (an emulator)

One conversation per node: log in (a Redfish session, ``X-Auth-Token``; HTTP Basic when the
BMC has no session service or the credentials entry says ``auth = "basic"``), find the system,
act, log out. Connections are kept alive within a node and closed after it, so that 10,000
nodes never hold 10,000 idle sockets. TLS certificates are checked unless the credentials
entry says ``verify = false``; ``ca = FILE`` checks them against a site CA.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from dim.errors import PowerError
from dim.names import normalize_mac
from dim.power.credentials import Credential
from dim.power.interface import Nic, Target

SESSIONS = "/redfish/v1/SessionService/Sessions"
SYSTEMS = "/redfish/v1/Systems"
STANDARD_RESETS = (
    "On",
    "ForceOff",
    "GracefulShutdown",
    "GracefulRestart",
    "ForceRestart",
    "Nmi",
    "ForceOn",
    "PushPowerButton",
    "PowerCycle",
)
# Reset types for each action, best first; the first one the system advertises is used.
RESET_CHOICES = {
    "on": ("On", "ForceOn"),
    "off": ("ForceOff",),
    "soft": ("GracefulShutdown",),
    "reset": ("ForceRestart", "PowerCycle"),
    "cycle": ("PowerCycle",),
}
BOOT_TARGETS = {"pxe": "Pxe", "disk": "Hdd"}
POWER_STATES = {
    "On": "on",
    "Off": "off",
    "PoweringOn": "powering on",
    "PoweringOff": "powering off",
    "Paused": "paused",
}
HEADERS = {"Accept": "application/json", "OData-Version": "4.0"}


@dataclass(frozen=True, slots=True)
class Address:
    base: str  # scheme://host:port
    system: str | None


def parse_address(text: str) -> Address:
    """``10.1.0.5`` -> https://10.1.0.5; ``http://h:8000/abc`` -> system ``abc``."""
    raw = text if "://" in text else f"https://{text}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise PowerError("config", f"invalid Redfish address {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PowerError(
            "config",
            f"invalid Redfish address {text!r}",
            hint="use [https://]HOST[:PORT][/SYSTEM-ID]",
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    system = parts.path.strip("/") or None
    if system is not None and "/" in system:
        raise PowerError("config", f"invalid Redfish system id in {text!r}")
    return Address(base, system)


class RedfishDriver:
    """Redfish for many nodes at once: one short conversation per node."""

    name = "redfish"

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._contexts: dict[tuple[bool, str | None], ssl.SSLContext | bool] = {}

    async def close(self) -> None:
        pass

    async def status(self, target: Target) -> str:
        async with self._conversation(target) as talk:
            system = await talk.system()
            state = system.get("PowerState")
            if not isinstance(state, str):
                raise PowerError("protocol", "the system reports no PowerState")
            return POWER_STATES.get(state, state.lower())

    async def power(self, target: Target, action: str) -> str:
        async with self._conversation(target) as talk:
            system = await talk.system()
            uri, allowed = await talk.reset_action(system)
            reset = _choose_reset(action, allowed, system.get("PowerState"))
            await talk.send("POST", uri, {"ResetType": reset})
            return reset

    async def bootdev(self, target: Target, device: str, persistent: bool) -> str:
        async with self._conversation(target) as talk:
            system = await talk.system()
            wanted = BOOT_TARGETS[device]
            boot = system.get("Boot") if isinstance(system.get("Boot"), dict) else {}
            allowed = boot.get("BootSourceOverrideTarget@Redfish.AllowableValues")
            if isinstance(allowed, list) and wanted not in allowed:
                raise PowerError(
                    "unsupported",
                    f"the system does not offer boot override {wanted} "
                    f"(it offers {', '.join(map(str, allowed))})",
                )
            enabled = "Continuous" if persistent else "Once"
            body = {
                "Boot": {"BootSourceOverrideTarget": wanted, "BootSourceOverrideEnabled": enabled}
            }
            await talk.send("PATCH", talk.system_uri, body, etag=talk.etag)
            return f"{wanted} {enabled}"

    async def macs(self, target: Target) -> list[Nic]:
        async with self._conversation(target) as talk:
            system = await talk.system()
            link = _odata_id(system.get("EthernetInterfaces"))
            if link is None:
                raise PowerError("unsupported", "the system lists no EthernetInterfaces")
            members = await talk.members(link)
            bodies = await asyncio.gather(*(talk.get(uri) for uri in members))
            nics = [_nic(body) for body in bodies]
            return [nic for nic in nics if nic is not None]

    def _conversation(self, target: Target) -> _Conversation:
        address = parse_address(target.address)
        credential = _require(target.credential)
        return _Conversation(address, credential, self._ssl(credential, address))

    def _ssl(self, credential: Credential, address: Address) -> ssl.SSLContext | bool:
        if address.base.startswith("http://"):
            return True
        key = (credential.verify, credential.ca)
        if key not in self._contexts:
            if not credential.verify:
                self._contexts[key] = False
            else:
                try:
                    self._contexts[key] = ssl.create_default_context(cafile=credential.ca)
                except (OSError, ssl.SSLError) as exc:
                    raise PowerError(
                        "config",
                        f"cannot load the CA bundle {credential.ca} of credentials entry "
                        f"{credential.name!r}: {exc}",
                    ) from None
        return self._contexts[key]


def _require(credential: Credential | None) -> Credential:
    if credential is None or credential.username is None or credential.password is None:
        name = credential.name if credential else None
        raise PowerError(
            "config",
            f"no username and password in credentials entry {name or 'default'!r}",
            hint="add them to the credentials file (docs/power.md)",
        )
    return credential


class _Conversation:
    """One node: log in, ask, log out; every failure a PowerError with a plain message."""

    def __init__(self, address: Address, credential: Credential, tls: ssl.SSLContext | bool):
        self.address = address
        self.credential = credential
        self.tls = tls
        self.headers = dict(HEADERS)
        self.session_uri: str | None = None
        self.system_uri = ""
        self.etag: str | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> _Conversation:
        connector = aiohttp.TCPConnector(limit=2, ssl=self.tls, use_dns_cache=False)
        self.http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), skip_auto_headers=()
        )
        try:
            await self._login()
        except BaseException:
            await self.http.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self.session_uri is not None and exc_info[0] is not asyncio.CancelledError:
                with contextlib.suppress(PowerError):  # else the session expires on its own
                    await self._request("DELETE", self.session_uri)
        finally:
            await self.http.close()

    async def _login(self) -> None:
        user = self.credential.username or ""
        password = self.credential.password.reveal() if self.credential.password else ""
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.credential.auth == "basic":
            self.headers["Authorization"] = basic
            return
        status, _body, headers = await self._request(
            "POST", SESSIONS, {"UserName": user, "Password": password}, expect=None
        )
        challenge = headers.get("WWW-Authenticate", "").lower()
        if status in (404, 405, 501) or (status == 401 and challenge.startswith("basic")):
            # No session service (or one behind Basic itself): Basic on every request; a
            # wrong password then shows as a 401 on the first of them.
            self.headers["Authorization"] = basic
            return
        if status in (400, 401, 403):
            raise _auth_error(self.credential, status)
        if status not in (200, 201, 204) or "X-Auth-Token" not in headers:
            raise PowerError("protocol", f"session login answered HTTP {status} without a token")
        self.headers["X-Auth-Token"] = headers["X-Auth-Token"]
        location = headers.get("Location")
        self.session_uri = urlsplit(location).path if location else None

    async def system(self) -> dict:
        if self.address.system is not None:
            self.system_uri = f"{SYSTEMS}/{self.address.system}"
        else:
            members = await self.members(SYSTEMS)
            if len(members) != 1:
                raise PowerError(
                    "config" if members else "protocol",
                    f"the BMC manages {len(members)} systems: name one in the address (…/SYSTEM-ID)"
                    if members
                    else "the BMC lists no systems",
                )
            self.system_uri = members[0]
        status, body, headers = await self._request("GET", self.system_uri)
        self.etag = headers.get("ETag")
        return body

    async def members(self, uri: str) -> list[str]:
        body = await self.get(uri)
        members = body.get("Members")
        if not isinstance(members, list):
            raise PowerError("protocol", f"{uri} is not a collection (no Members)")
        found = [_odata_id(m) for m in members]
        if any(m is None for m in found):
            raise PowerError("protocol", f"{uri} has a member without @odata.id")
        return found  # type: ignore[return-value]

    async def get(self, uri: str) -> dict:
        return (await self._request("GET", uri))[1]

    async def reset_action(self, system: dict) -> tuple[str, list[str]]:
        actions = system.get("Actions")
        action = actions.get("#ComputerSystem.Reset") if isinstance(actions, dict) else None
        if not isinstance(action, dict) or not isinstance(action.get("target"), str):
            raise PowerError("unsupported", "the system offers no ComputerSystem.Reset action")
        allowed = action.get("ResetType@Redfish.AllowableValues")
        info = action.get("@Redfish.ActionInfo")
        if allowed is None and isinstance(info, str):
            allowed = _allowable(await self.get(urlsplit(info).path))
        if not isinstance(allowed, list):
            allowed = list(STANDARD_RESETS)
        return urlsplit(action["target"]).path, [str(a) for a in allowed]

    async def send(self, method: str, uri: str, body: dict, etag: str | None = None) -> None:
        await self._request(method, uri, body, etag=etag, parse=False)

    async def _request(
        self,
        method: str,
        uri: str,
        body: dict | None = None,
        *,
        expect: tuple[int, ...] | None = (200, 201, 202, 204),
        etag: str | None = None,
        parse: bool = True,
    ) -> tuple[int, Any, dict[str, str]]:
        headers = dict(self.headers)
        if etag:
            headers["If-Match"] = etag
        url = self.address.base + uri
        try:
            async with self.http.request(
                method, url, json=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                status, answer_headers = response.status, dict(response.headers)
        except aiohttp.ClientConnectorCertificateError:
            raise PowerError(
                "tls",
                "the BMC's TLS certificate is not trusted",
                hint=f"set ca = FILE (or verify = false) in credentials entry "
                f"{self.credential.name!r}",
            ) from None
        except aiohttp.ClientSSLError:
            raise PowerError("tls", "the TLS handshake with the BMC failed") from None
        except aiohttp.ClientConnectorError as exc:
            raise PowerError(
                "unreachable", f"cannot connect: {_reason(exc.os_error)}", retryable=True
            ) from None
        except aiohttp.ClientPayloadError:
            raise PowerError(
                "protocol", f"{method} {uri}: the BMC sent half an answer", retryable=True
            ) from None
        except aiohttp.ServerDisconnectedError:
            raise PowerError(
                "protocol", f"{method} {uri}: the BMC closed the connection", retryable=True
            ) from None
        except (aiohttp.ClientError, ValueError):
            raise PowerError("protocol", f"{method} {uri}: the answer is not HTTP") from None
        if expect is None:
            return status, None, answer_headers
        if status in (401, 403):
            raise _auth_error(self.credential, status)
        if status not in expect:
            raise PowerError(
                "refused" if status < 500 else "bmc",
                f"{method} {uri}: HTTP {status}{_message(raw)}",
                retryable=status >= 500,
            )
        if not parse or status == 204:
            return status, {}, answer_headers
        try:
            document = json.loads(raw)
        except ValueError:
            raise PowerError("protocol", f"{method} {uri}: the answer is not JSON") from None
        if not isinstance(document, dict):
            raise PowerError("protocol", f"{method} {uri}: the answer is not a JSON object")
        return status, document, answer_headers


def _reason(error: OSError | None) -> str:
    """``connection refused``, ``no route to host``: the OS's words, lower case."""
    if error is None:
        return "unknown error"
    # asyncio's strerror names the address ("Connect call failed (…)"); errno's words do not.
    text = os.strerror(error.errno) if error.errno else (error.strerror or str(error))
    return text[:1].lower() + text[1:]


def _auth_error(credential: Credential, status: int) -> PowerError:
    return PowerError(
        "auth",
        f"login refused (HTTP {status})",
        hint=f"check the username and password of credentials entry {credential.name!r}",
    )


def _message(raw: bytes) -> str:
    """The BMC's own error message from a Redfish error body, if it sent one."""
    try:
        error = json.loads(raw).get("error", {})
        extended = error.get("@Message.ExtendedInfo") or [{}]
        text = extended[0].get("Message") or error.get("message")
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
    return f": {str(text)[:200]}" if text else ""


def _odata_id(link: object) -> str | None:
    if isinstance(link, dict) and isinstance(link.get("@odata.id"), str):
        return urlsplit(link["@odata.id"]).path
    return None


def _allowable(info: dict) -> list[str] | None:
    for parameter in info.get("Parameters") or []:
        if isinstance(parameter, dict) and parameter.get("Name") == "ResetType":
            values = parameter.get("AllowableValues")
            return values if isinstance(values, list) else None
    return None


def _choose_reset(action: str, allowed: list[str], state: object) -> str:
    """The reset type for ``action`` among those the system advertises."""
    if action == "cycle" and "PowerCycle" not in allowed:
        # Without PowerCycle: a node that is off is switched on, one that is on is restarted.
        choices = ("On", "ForceOn") if state == "Off" else ("ForceRestart",)
    else:
        choices = RESET_CHOICES[action]
    for choice in choices:
        if choice in allowed:
            return choice
    raise PowerError(
        "unsupported",
        f"the system offers no reset type for {action} ({' or '.join(choices)}); "
        f"it offers {', '.join(allowed) or 'none'}",
    )


def _nic(body: dict) -> Nic | None:
    for key in ("MACAddress", "PermanentMACAddress"):
        value = body.get(key)
        if isinstance(value, str):
            try:
                return Nic(str(body.get("Id", "")), normalize_mac(value))
            except ValueError:
                continue
    return None
