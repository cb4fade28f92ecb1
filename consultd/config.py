"""Settings: one frozen dataclass, filled from the command line and ``CONSULTD_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"CONSULTD_{name.upper()}", default)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    #: ``sqlite:///…`` (default: ``<data_dir>/consultd.sqlite3``) or ``postgresql://…``.
    database_url: str = ""
    #: Reserved for scale-out (room affinity directory); unused by a single process.
    redis_url: str = ""
    #: The origin browsers use to reach the server (for the CSRF check); empty: the Host header.
    public_origin: str = ""
    #: Mark cookies ``Secure``; turn on whenever the server is behind HTTPS.
    secure_cookies: bool = False
    #: Seconds a disconnected participant stays ``reconnecting`` before ``left``.
    grace_s: float = 30.0
    #: Seconds a physician's login session lasts.
    session_ttl_s: int = 14 * 24 * 3600
    #: Largest socket.io message and largest HTTP JSON body, in bytes.
    max_message_bytes: int = 64 * 1024
    #: Packets a client may have queued before it is disconnected (it resyncs on reconnect).
    max_queued_packets: int = 1000
    #: Chat messages sent in one ``joined`` payload on a first join.
    history_limit: int = 200
    #: Annotation updates logged per document before the log is compacted to one snapshot.
    annotation_compact_every: int = 500
    #: argon2id cost; lower it only in tests.
    argon2_memory_kib: int = 64 * 1024
    argon2_time_cost: int = 3
    #: Worker processes that parse and decode uploaded images (each under memory and CPU
    #: limits: consultd/imaging/limits.py).
    imaging_workers: int = 2
    #: STUN/TURN servers given to clients and to the SFU's own peer connections, as JSON:
    #: ``[{"urls": ["turns:turn.example.org:443?transport=tcp"], "username": "u",
    #: "credential": "p"}]``. Empty by default: nothing outside is ever contacted.
    ice_servers: str = "[]"
    #: Addresses the SFU gathers ICE host candidates on, comma-separated (empty: aioice's
    #: choice, every interface but loopback).
    rtc_host_addresses: str = ""
    #: The public address written into the SFU's host candidates (1:1 NAT), as mediasoup's
    #: ``announcedIp``.
    rtc_announced_ip: str = ""
    #: UDP ports of the SFU's host candidates, ``MIN-MAX`` (empty: any free port).
    rtc_ports: str = ""
    #: Participants who may publish media at once in one room.
    max_publishers: int = 16
    #: Total publisher bitrate of a room, in bits/s (the SFU's REMB budget).
    room_max_bitrate: int = 20_000_000
    log_level: str = "INFO"
    secret_file: Path | None = field(default=None)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'consultd.sqlite3').resolve()}"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults, then ``CONSULTD_<FIELD>`` variables, then explicit overrides."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"CONSULTD_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _coerce(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _coerce(kind: object, raw: str) -> object:
    kind = str(kind)
    if "bool" in kind:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if "Path" in kind:
        return Path(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    return raw


ENV_HELP = """settings may also come from the environment: CONSULTD_HOST, CONSULTD_PORT,
CONSULTD_DATA_DIR, CONSULTD_DATABASE_URL, CONSULTD_REDIS_URL, CONSULTD_PUBLIC_ORIGIN,
CONSULTD_SECURE_COOKIES, CONSULTD_GRACE_S, CONSULTD_SESSION_TTL_S,
CONSULTD_MAX_MESSAGE_BYTES, CONSULTD_MAX_QUEUED_PACKETS, CONSULTD_HISTORY_LIMIT,
CONSULTD_ANNOTATION_COMPACT_EVERY, CONSULTD_IMAGING_WORKERS, CONSULTD_ICE_SERVERS,
CONSULTD_RTC_HOST_ADDRESSES, CONSULTD_RTC_ANNOUNCED_IP, CONSULTD_RTC_PORTS,
CONSULTD_MAX_PUBLISHERS, CONSULTD_ROOM_MAX_BITRATE,
CONSULTD_ARGON2_MEMORY_KIB, CONSULTD_ARGON2_TIME_COST, CONSULTD_LOG_LEVEL
(a command-line option wins over its variable); CONSULTD_EVENT_LOOP=asyncio runs on
asyncio's own loop instead of uvloop."""
