"""Token buckets keyed by string (IP, e-mail, room, participant)."""

from __future__ import annotations

import time

from consultd.errors import RateLimited


class RateLimiter:
    """Allows ``burst`` events at once and ``rate`` per second on average, per key."""

    __slots__ = ("_buckets", "_max_keys", "burst", "name", "rate")

    def __init__(self, name: str, *, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.name = name
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def hit(self, key: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens for ``key`` or raise ``RateLimited``."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            raise RateLimited(
                f"too many requests ({self.name})", retry_after_s=(cost - tokens) / self.rate
            )
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self.prune(now)
        self._buckets[key] = (tokens - cost, now)

    def prune(self, now: float | None = None) -> None:
        """Forget keys whose bucket has refilled: they carry no information."""
        now = time.monotonic() if now is None else now
        full = [
            k
            for k, (t, last) in self._buckets.items()
            if t + (now - last) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:  # still full: under attack, drop the oldest
            for k in sorted(self._buckets, key=lambda k: self._buckets[k][1])[
                : self._max_keys // 10
            ]:
                del self._buckets[k]
