from __future__ import annotations

import pytest

from consultd import ratelimit
from consultd.errors import RateLimited


def test_burst_then_refill(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    lim = ratelimit.RateLimiter("t", rate=1.0, burst=3)
    for _ in range(3):
        lim.hit("a")
    with pytest.raises(RateLimited) as err:
        lim.hit("a")
    assert err.value.retry_after_s == pytest.approx(1.0)
    lim.hit("b")  # keys are independent
    now[0] += 1.0
    lim.hit("a")
    with pytest.raises(RateLimited):
        lim.hit("a")


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    lim = ratelimit.RateLimiter("t", rate=1.0, burst=1, max_keys=100)
    for i in range(1000):
        lim.hit(f"k{i}")
        now[0] += 0.001
    assert len(lim._buckets) <= 100


def test_a_tumour_board_of_fifty_can_redeem_one_rooms_code_at_once() -> None:
    from typing import Any, cast

    from consultd.rooms.service import RoomService

    none = cast(Any, None)
    rooms = RoomService(none, none, none, secret_key=b"k" * 32, grace_s=30, history_limit=50)
    for _ in range(50):
        rooms.redeem_per_room.hit("room-1")
