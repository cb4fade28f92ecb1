"""``LoopLoad``: how busy the event loop's thread is, for work that may wait when it is.

Every ``PERIOD_S`` the loop samples its own thread's CPU time; ``busy`` is the share of
wall time it spent running (0-1), smoothed over about a second. One process serves every
room from this one thread, so when it nears a full core each message waits in line behind
the others and latency grows without bound.

``stretch`` is what work that can wait does with it: pointers (awareness in
``consultd.annotate``) coalesce on a tick ``stretch`` times longer. A pointer is newest-
state-wins, so a longer tick drops only intermediate positions, and a busy room's frames
per member fall by the same factor: CPU that goes to annotation updates, which must all
arrive, and soon. 1 up to ``CALM`` busy, then linearly up to ``MAX_STRETCH`` at ``FULL``.

>>> load = LoopLoad()
>>> load.busy = 0.3; load.stretch
1.0
>>> load.busy = 0.95; load.stretch
3.0
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

#: Seconds between samples of the thread's CPU time.
PERIOD_S: Final = 0.25
#: Weight of the newest sample in ``busy`` (about a second of memory at ``PERIOD_S``).
SMOOTHING: Final = 0.4
CALM: Final = 0.6
FULL: Final = 0.9
MAX_STRETCH: Final = 3.0


class LoopLoad:
    def __init__(self) -> None:
        self.busy = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._cpu = 0.0
        self._wall = 0.0

    @property
    def stretch(self) -> float:
        """How many times longer deferrable work may wait (module docstring)."""
        if self.busy <= CALM:
            return 1.0
        return 1.0 + (MAX_STRETCH - 1.0) * (min(self.busy, FULL) - CALM) / (FULL - CALM)

    def start(self) -> None:
        """Sample on the running loop, from its thread, until ``close``."""
        self._cpu, self._wall = time.thread_time(), time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(PERIOD_S, self._sample)

    def _sample(self) -> None:
        cpu, wall = time.thread_time(), time.monotonic()
        if wall > self._wall:
            share = min(1.0, (cpu - self._cpu) / (wall - self._wall))
            self.busy += SMOOTHING * (share - self.busy)
        self._cpu, self._wall = cpu, wall
        self._timer = asyncio.get_running_loop().call_later(PERIOD_S, self._sample)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
