"""``LoopLoad``: the event loop thread's busy share, and the stretch derived from it."""

from __future__ import annotations

import asyncio

import pytest

from consultd import loopload
from consultd.loopload import CALM, FULL, MAX_STRETCH, LoopLoad


def test_stretch_is_one_while_calm_then_grows_to_its_cap() -> None:
    load = LoopLoad()
    for busy, want in ((0.0, 1.0), (CALM, 1.0), ((CALM + FULL) / 2, (1 + MAX_STRETCH) / 2)):
        load.busy = busy
        assert load.stretch == pytest.approx(want)
    load.busy = 1.0
    assert load.stretch == MAX_STRETCH


async def test_busy_follows_the_thread_cpu_share(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"cpu": 0.0, "wall": 100.0}
    monkeypatch.setattr(loopload.time, "thread_time", lambda: clock["cpu"])
    monkeypatch.setattr(loopload.time, "monotonic", lambda: clock["wall"])
    load = LoopLoad()
    load.start()
    try:
        for _ in range(12):  # a full core for 3 s
            clock["cpu"] += 0.25
            clock["wall"] += 0.25
            load._sample()
        assert load.busy > 0.99 and load.stretch == MAX_STRETCH
        for _ in range(12):  # then idle
            clock["wall"] += 0.25
            load._sample()
        assert load.busy < 0.01 and load.stretch == 1.0
    finally:
        load.close()
    assert load._timer is None
    await asyncio.sleep(0)
