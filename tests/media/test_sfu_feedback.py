"""REMB and the active speaker end to end: aiortc clients on loopback, one Router.

aiortc 1.16's sender puts the ssrc-audio-level extension on every audio packet (computed
from the frame, RFC 6465 App. A, V bit never set) and its video sender obeys a REMB by
setting its VP8 encoder's target bitrate (clamped to 250 kbit/s..1.5 Mbit/s).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any, cast

import av
import numpy as np
import pytest
from aiortc import AudioStreamTrack, RTCRtpSender
from aiortc.rtp import RtcpPsfbPacket, unpack_remb_fci

from media import Router, bitrate

from .peers import ClientPeer, ColourTrack, wait_for

ROOM_MAX = 1_000_000


class ToneTrack(AudioStreamTrack):
    """A 440 Hz tone at about -13 dBov: someone speaking up."""

    async def recv(self) -> av.AudioFrame:
        frame = cast(av.AudioFrame, await super().recv())
        n = frame.samples
        t = ((frame.pts or 0) + np.arange(n)) / frame.sample_rate
        tone = (0.3 * 32767 * np.sin(2 * math.pi * 440 * t)).astype("<i2")
        frame.planes[0].update(tone.tobytes().ljust(frame.planes[0].buffer_size, b"\0"))
        return frame


@pytest.fixture
async def room() -> AsyncIterator[tuple[Router, list[str | None]]]:
    events: list[str | None] = []
    router = Router("room-feedback", max_bitrate=ROOM_MAX, on_active_speaker=events.append)
    yield router, events
    await router.close()


def _spy_rembs(sender: RTCRtpSender) -> list[tuple[int, list[int]]]:
    """REMBs arriving at a client's sender, before aiortc applies them."""
    seen: list[tuple[int, list[int]]] = []
    handle = sender._handle_rtcp_packet

    async def spy(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == 15:
            seen.append(unpack_remb_fci(packet.fci))
        await handle(packet)

    sender._handle_rtcp_packet = spy  # type: ignore[method-assign]
    return seen


async def test_publishers_get_remb_and_the_speaker_is_detected(
    room: tuple[Router, list[str | None]],
) -> None:
    router, events = room
    alice, bob = ClientPeer("alice", router), ClientPeer("bob", router)
    alice.pc.addTrack(ColourTrack(0))
    alice.pc.addTrack(ToneTrack())
    await alice.negotiate()
    await bob.publish(1)  # camera and a silent microphone
    video_sender = next(s for s in alice.pc.getSenders() if s.track and s.track.kind == "video")
    rembs = _spy_rembs(video_sender)

    await wait_for(lambda: len(rembs) >= 2, 10, "two REMBs at alice's video sender")
    (cam,) = [
        p for p in router.producers.values() if p.participant_id == "alice" and p.kind == "video"
    ]
    share = (ROOM_MAX - 2 * bitrate.AUDIO_BITRATE) // 2
    for rate, ssrcs in rembs:
        assert ssrcs == [video_sender._ssrc]
        assert bitrate.MIN_VIDEO_BITRATE <= rate <= share, "the room's cap, shared"
    assert cam.remb_bitrate == rembs[-1][0]
    encoder = video_sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
    assert encoder.target_bitrate == max(250_000, rembs[-1][0]), "the publisher obeys"
    assert all(p.rembs_sent == 0 for p in router.producers.values() if p.kind == "audio")

    # bob's aiortc receiver estimates what reaches it (abs-send-time, stamped by the SFU) and
    # sends REMB to the SFU; aiortc caps its estimate at 1.5x the incoming rate, and these
    # solid-colour frames stay far below the room share, so alice is asked for less.
    await wait_for(lambda: all(c.remb_bitrate for c in cam.consumers), 15, "bob's REMB")
    await wait_for(lambda: rembs[-1][0] < share, 5, "alice's target lowered by bob's REMB")
    assert rembs[-1][0] >= bitrate.MIN_VIDEO_BITRATE

    await wait_for(lambda: router.active_speaker == "alice", 10, "alice to be the speaker")
    await asyncio.sleep(1.0)
    assert events == ["alice"], "bob's silence never takes the floor; no flapping"

    await alice.close()
    await router.close_transport("alice")
    await wait_for(lambda: router.active_speaker is None, 5, "nobody to speak")
    assert events[-1] is None
    await bob.close()
