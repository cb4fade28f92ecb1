"""What each video publisher is asked to send: per-source caps, the room's cap, receivers' REMB.

aiortc negotiates no transport-wide congestion control, so a publisher learns its budget only
from the REMB the SFU sends it (draft-alvestrand-rmcat-remb-03). Its target is the least of:

* its source's cap (``SOURCE_MAX_BITRATE``: a screen share gets enough for sharp text);
* its share of the room's cap (``allocate``): audio is reserved first, screen shares are
  served before cameras, cameras split the rest evenly;
* the lowest recent estimate its receivers reported (``Producer.receiver_estimate``): with
  no simulcast, one stream serves every receiver, so the slowest one sets the pace.

Pure functions and constants; the ``Router`` applies them on its timer, never per packet.
"""

from __future__ import annotations

from collections.abc import Sequence

# --- policy, in one block -------------------------------------------------------------------
#: Most a video of each source is asked to send, bits/s (unknown sources: the camera's).
SOURCE_MAX_BITRATE: dict[str, int] = {"camera": 1_500_000, "screen": 4_000_000}
#: Least any video is asked for: below this a camera freezes rather than degrades.
MIN_VIDEO_BITRATE = 100_000
#: Kept out of the room's cap per audio producer (Opus voice; REMB does not steer audio).
AUDIO_BITRATE = 64_000
#: A publisher hears from the SFU at least this often, in seconds...
REMB_INTERVAL = 1.0
#: ...and at once when its target moves by more than this fraction.
REMB_CHANGE = 0.10
#: A receiver's estimate older than this (seconds) is ignored: it stopped reporting.
REMB_MAX_AGE = 5.0


def source_cap(source: str) -> int:
    return SOURCE_MAX_BITRATE.get(source, SOURCE_MAX_BITRATE["camera"])


def allocate(
    video: Sequence[tuple[str, str]], audio_producers: int, room_max: int | None
) -> dict[str, int]:
    """Bits/s per video producer id, from ``(id, source)`` in publishing order.

    Without a room cap each gets its source's cap. With one, what is left after audio goes
    to screen shares first (each up to its cap, leaving every other video its floor), then
    is shared evenly among cameras (water-filling: a capped one leaves its rest to others).
    Every video gets at least ``MIN_VIDEO_BITRATE``, even if the cap is then exceeded.
    """
    if room_max is None:
        return {pid: source_cap(source) for pid, source in video}
    budget = room_max - AUDIO_BITRATE * audio_producers
    screens = [(pid, s) for pid, s in video if s == "screen"]
    others = sorted((v for v in video if v[1] != "screen"), key=lambda v: source_cap(v[1]))
    targets: dict[str, int] = {}
    left = len(video)
    for pid, source in screens:
        left -= 1
        share = min(source_cap(source), budget - MIN_VIDEO_BITRATE * left)
        targets[pid] = max(MIN_VIDEO_BITRATE, share)
        budget -= targets[pid]
    for pid, source in others:
        share = min(source_cap(source), budget // left)
        targets[pid] = max(MIN_VIDEO_BITRATE, share)
        budget -= targets[pid]
        left -= 1
    return targets


def target_bitrate(allocated: int, receiver_estimate: int | None) -> int:
    """The allocation, lowered to what the slowest receiver can take (never below the floor)."""
    if receiver_estimate is not None and receiver_estimate < allocated:
        return max(MIN_VIDEO_BITRATE, receiver_estimate)
    return allocated


def remb_due(target: int, last_sent: int, last_sent_at: float, now: float) -> bool:
    """Whether to send a REMB now: the interval has passed or the target moved > 10 %."""
    if now - last_sent_at >= REMB_INTERVAL:
        return True
    return abs(target - last_sent) > REMB_CHANGE * last_sent
