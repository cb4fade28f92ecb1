"""The media settings, checked once at start-up: a bad value stops the server with a
message that names the setting, never a failure at the first call."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from consultd.config import Settings

#: ICE server URL schemes aiortc understands (RFC 7064, RFC 7065).
_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
_PORTS = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")


@dataclass(frozen=True, slots=True)
class IceServer:
    """One ``RTCIceServer``, as ``media_join`` hands it to clients."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True, slots=True)
class MediaConfig:
    ice_servers: tuple[IceServer, ...] = ()
    #: None: aioice's own choice of addresses.
    host_addresses: tuple[str, ...] | None = None
    announced_ip: str | None = None
    port_range: tuple[int, int] | None = None
    max_publishers: int = 16
    max_bitrate: int = 20_000_000

    @classmethod
    def from_settings(cls, s: Settings) -> MediaConfig:
        """``ValueError`` naming the setting if one is wrong."""
        if s.max_publishers < 0:
            raise ValueError("max_publishers (CONSULTD_MAX_PUBLISHERS) must be 0 or more")
        if s.room_max_bitrate < 10_000:
            raise ValueError(
                "room_max_bitrate (CONSULTD_ROOM_MAX_BITRATE) is in bits/s: at least 10000"
            )
        return cls(
            ice_servers=parse_ice_servers(s.ice_servers),
            host_addresses=parse_host_addresses(s.rtc_host_addresses),
            announced_ip=parse_announced_ip(s.rtc_announced_ip),
            port_range=parse_port_range(s.rtc_ports),
            max_publishers=s.max_publishers,
            max_bitrate=s.room_max_bitrate,
        )


def parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    where = "ice_servers (CONSULTD_ICE_SERVERS)"
    if not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError(
            f"{where} must be JSON: a list of {{urls, username?, credential?}}"
        ) from None
    if not isinstance(raw, list):
        raise ValueError(f"{where} must be a JSON list of {{urls, username?, credential?}}")
    servers = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or set(entry) - {"urls", "username", "credential"}:
            raise ValueError(f"{where}[{i}]: an object with urls, username?, credential?")
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls:
            raise ValueError(f"{where}[{i}].urls: a URL or a non-empty list of URLs")
        for url in urls:
            if not isinstance(url, str) or not url.startswith(_SCHEMES) or len(url) > 512:
                raise ValueError(
                    f"{where}[{i}].urls: each starts with stun:, stuns:, turn: or turns:"
                )
        username, credential = entry.get("username"), entry.get("credential")
        for name, value in (("username", username), ("credential", credential)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}[{i}].{name}: a string")
        if any(u.startswith(("turn:", "turns:")) for u in urls) and (
            username is None or credential is None
        ):
            raise ValueError(f"{where}[{i}]: a TURN server needs a username and a credential")
        servers.append(IceServer(tuple(urls), username, credential))
    return tuple(servers)


def parse_host_addresses(text: str) -> tuple[str, ...] | None:
    items = [a.strip() for a in text.split(",") if a.strip()]
    if not items:
        return None
    for a in items:
        try:
            ipaddress.ip_address(a)
        except ValueError:
            raise ValueError(
                f"rtc_host_addresses (CONSULTD_RTC_HOST_ADDRESSES): {a!r} is not an IP address"
            ) from None
    return tuple(items)


def parse_announced_ip(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(
            f"rtc_announced_ip (CONSULTD_RTC_ANNOUNCED_IP): {text!r} is not an IP address"
        ) from None


def parse_port_range(text: str) -> tuple[int, int] | None:
    if not text.strip():
        return None
    m = _PORTS.match(text)
    low, high = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not m or not 1024 <= low <= high <= 65535:
        raise ValueError(
            "rtc_ports (CONSULTD_RTC_PORTS): MIN-MAX, two UDP ports with 1024 <= MIN <= MAX "
            "<= 65535, e.g. 40000-49999"
        )
    return low, high
