"""Share codes: 25 Crockford base32 characters shown as five groups of five.

The first group (25 bits) names the code within its room and is not secret; the other
twenty characters are 100 bits of secret. Only an HMAC of the secret is stored, so a
database dump does not reveal working codes. Wrong secrets against a named code count
towards locking it (``MAX_FAILURES``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_NORMALISE = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})
GROUP = 5
GROUPS = 5
MAX_FAILURES = 10


@dataclass(frozen=True, slots=True)
class ParsedCode:
    lookup: str
    secret: str


def generate() -> tuple[str, ParsedCode]:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(GROUP * GROUPS))
    return format_code(raw), ParsedCode(raw[:GROUP], raw[GROUP:])


def format_code(raw: str) -> str:
    return "-".join(raw[i : i + GROUP] for i in range(0, len(raw), GROUP))


def parse(text: str) -> ParsedCode | None:
    """Normalise what a person typed; ``None`` when it cannot be a code."""
    raw = text.upper().translate(_NORMALISE)
    if len(raw) != GROUP * GROUPS or any(c not in ALPHABET for c in raw):
        return None
    return ParsedCode(raw[:GROUP], raw[GROUP:])


def secret_hash(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(key: bytes, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(key, secret), stored_hash)
