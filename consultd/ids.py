"""Identifiers and tokens. Ids are random and unguessable: a room id is a capability to
find the room, never to enter it."""

from __future__ import annotations

import hashlib
import secrets
import time


def new_id() -> str:
    """128 random bits as 26 lowercase base32 characters."""
    return secrets.token_bytes(16).hex()[:32]


def new_token() -> str:
    """256 random bits, URL-safe: session and participant tokens."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps of a token (a lookup key, not a password: tokens have full
    entropy, so a fast hash is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def now() -> float:
    return time.time()


def now_ms() -> int:
    return time.time_ns() // 1_000_000
