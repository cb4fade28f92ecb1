"""REMB to publishers: packing (rtp.py), the allocation (bitrate.py), receivers' estimates
(consumer.py via the bridge's sender tap), and the router's timer sending it (router.py)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, pack_remb_fci, unpack_remb_fci

from media import _aiortc_bridge as bridge
from media import bitrate
from media.bitrate import MIN_VIDEO_BITRATE, allocate, remb_due, target_bitrate
from media.consumer import Consumer
from media.producer import Producer
from media.router import Router
from media.rtp import Codec, pack_remb, parse_remb

CAMERA = bitrate.SOURCE_MAX_BITRATE["camera"]
SCREEN = bitrate.SOURCE_MAX_BITRATE["screen"]


# --- packing --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, 1, 262_143, 262_144, 372_000, 1_500_000, 4_000_000, 10**12])
def test_remb_parses_back_with_aiortc(rate: int) -> None:
    (packet,) = RtcpPacket.parse(pack_remb(0xAAAA, rate, [0x1234, 0x5678]))
    assert isinstance(packet, RtcpPsfbPacket)
    assert (packet.fmt, packet.ssrc, packet.media_ssrc) == (15, 0xAAAA, 0)
    parsed, ssrcs = unpack_remb_fci(packet.fci)
    assert ssrcs == [0x1234, 0x5678]
    # 18 significant bits: exact below 2^18, rounded down (never more than asked) above
    assert parsed <= rate and rate - parsed < max(1, rate >> 17)
    assert parse_remb(packet.fci) == (parsed, (0x1234, 0x5678))


def test_aiortc_remb_parses_with_ours() -> None:
    fci = pack_remb_fci(1_234_567, [1, 2, 3])
    assert parse_remb(fci) == (unpack_remb_fci(fci)[0], (1, 2, 3))


@pytest.mark.parametrize(
    "fci",
    [b"", b"REMB\x01", b"ABCD\x00\x00\x00\x00", b"REMB\x02\x00\x10\x00" + struct.pack("!I", 7)],
)
def test_malformed_remb_raises_value_error(fci: bytes) -> None:
    with pytest.raises(ValueError):
        parse_remb(fci)


def test_remb_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError):
        pack_remb(1, -1, [2])
    with pytest.raises(ValueError):
        pack_remb(1, 1000, list(range(256)))


# --- allocation -----------------------------------------------------------------------------


def test_without_a_room_cap_each_source_gets_its_cap() -> None:
    assert allocate([("c", "camera"), ("s", "screen")], 2, None) == {"c": CAMERA, "s": SCREEN}
    assert SCREEN > CAMERA, "a screen share gets a high cap: sharp text"


def test_the_room_cap_is_shared_after_audio() -> None:
    targets = allocate([("a", "camera"), ("b", "camera")], 2, 2_000_000)
    share = (2_000_000 - 2 * bitrate.AUDIO_BITRATE) // 2
    assert targets == {"a": share, "b": share}
    assert allocate([("a", "camera")], 1, 100_000_000) == {"a": CAMERA}, "still capped"


def test_a_screen_share_is_served_first() -> None:
    room = 5_000_000
    targets = allocate([("cam1", "camera"), ("screen", "screen"), ("cam2", "camera")], 3, room)
    assert targets["screen"] == SCREEN
    rest = room - 3 * bitrate.AUDIO_BITRATE - SCREEN
    assert targets["cam1"] == targets["cam2"] == rest // 2
    # a tight room: the screen takes what the cameras' floors leave
    tight = allocate([("cam1", "camera"), ("screen", "screen")], 0, 1_000_000)
    assert tight == {"screen": 1_000_000 - MIN_VIDEO_BITRATE, "cam1": MIN_VIDEO_BITRATE}


def test_every_video_keeps_its_floor() -> None:
    targets = allocate([(str(i), "camera") for i in range(10)], 10, 500_000)
    assert set(targets.values()) == {MIN_VIDEO_BITRATE}


def test_the_slowest_receiver_lowers_the_target_never_below_the_floor() -> None:
    assert target_bitrate(1_000_000, None) == 1_000_000
    assert target_bitrate(1_000_000, 2_000_000) == 1_000_000
    assert target_bitrate(1_000_000, 400_000) == 400_000
    assert target_bitrate(1_000_000, 10) == MIN_VIDEO_BITRATE


def test_remb_is_due_every_interval_or_on_a_change_over_ten_percent() -> None:
    assert remb_due(1_000_000, 0, -10.0, 0.0), "the first one"
    assert not remb_due(1_050_000, 1_000_000, 10.0, 10.5)
    assert remb_due(1_150_000, 1_000_000, 10.0, 10.5)
    assert remb_due(850_000, 1_000_000, 10.0, 10.5)
    assert remb_due(1_000_000, 1_000_000, 10.0, 11.0)


# --- receivers' estimates and the router's REMB ---------------------------------------------


class Owner:
    def _producer_closed(self, producer: Producer) -> None:
        pass

    def _consumer_closed(self, consumer: Consumer) -> None:
        pass


def _producer(pid: str, kind: str, source: str, rtcp: list[bytes], ssrc: int) -> Producer:
    def send_rtcp(data: bytes) -> bool:
        rtcp.append(data)
        return True

    codec = Codec("video/VP8", 90000, 96) if kind == "video" else Codec("audio/opus", 48000, 111)
    producer = Producer(
        producer_id=pid,
        participant_id=pid.split("-")[0],
        kind=kind,
        mid="0",
        source=source,
        codecs=[codec],
        extensions={},
        send_rtcp=send_rtcp,
        rtcp_ssrc=0x5555,
        owner=Owner(),
    )
    producer.receive_rtp(struct.pack("!BBHII", 0x80, codec.payload_type, 1, 0, ssrc) + b"x")
    return producer


def _consumer(producer: Producer, name: str) -> Consumer:
    consumer = Consumer(producer, Owner(), name)
    consumer._bind(
        mid="1",
        ssrc=0xC0FFEE,
        codecs=list(producer.codecs),
        extensions={},
        send=lambda data: True,
        set_report=lambda *a: None,
        start_at=None,
    )
    consumer._activate()
    return consumer


def _rembs(rtcp: list[bytes]) -> list[tuple[int, list[int]]]:
    return [
        unpack_remb_fci(p.fci)
        for data in rtcp
        for p in RtcpPacket.parse(data)
        if isinstance(p, RtcpPsfbPacket) and p.fmt == 15
    ]


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    r = Router("room-remb", max_bitrate=3_000_000)
    yield r
    await r.close()


async def test_the_router_sends_each_video_publisher_its_target(router: Router) -> None:
    rtcp: dict[str, list[bytes]] = {"cam": [], "screen": [], "mic": []}
    cam = _producer("alice-v", "video", "camera", rtcp["cam"], 0x111)
    screen = _producer("bob-v", "video", "screen", rtcp["screen"], 0x222)
    mic = _producer("bob-a", "audio", "microphone", rtcp["mic"], 0x333)
    for producer in (cam, screen, mic):
        router._publish(producer)

    router._update_bitrates(100.0)
    left = 3_000_000 - bitrate.AUDIO_BITRATE
    assert _rembs(rtcp["screen"]) == [(left - MIN_VIDEO_BITRATE, [0x222])]
    assert _rembs(rtcp["cam"]) == [(MIN_VIDEO_BITRATE, [0x111])]
    assert rtcp["mic"] == [], "no REMB for audio"

    router._update_bitrates(100.3)
    assert len(_rembs(rtcp["cam"])) == 1, "nothing new to say inside the interval"
    router._update_bitrates(101.0)
    assert len(_rembs(rtcp["cam"])) == 2, "but once a second"

    router.max_bitrate = None  # the cap lifted: a change well over 10 % goes out at once
    router._update_bitrates(101.3)
    assert _rembs(rtcp["cam"])[-1] == (CAMERA, [0x111])
    assert _rembs(rtcp["screen"])[-1] == (SCREEN, [0x222])
    assert cam.remb_bitrate == CAMERA and cam.stats()["rembs_sent"] == 3


async def test_receivers_estimates_lower_the_target_until_they_go_stale(router: Router) -> None:
    router.max_bitrate = None
    rtcp: list[bytes] = []
    cam = _producer("alice-v", "video", "camera", rtcp, 0x111)
    router._publish(cam)
    fast, slow = _consumer(cam, "to-bob"), _consumer(cam, "to-carol")
    fast.receive_remb(3_000_000, 1)
    slow.receive_remb(1_200_000, 2)  # a REMB for two streams: half each
    now = slow.remb_at
    assert cam.receiver_estimate(now) == 600_000
    router._update_bitrates(now)
    assert _rembs(rtcp)[-1][0] == 600_000

    slow.remb_at = now - bitrate.REMB_MAX_AGE - 0.1  # carol stopped reporting
    assert cam.receiver_estimate(now) == 3_000_000
    router._update_bitrates(now + 0.3)
    assert _rembs(rtcp)[-1][0] == CAMERA, "back to the cap once the slow report is stale"
    slow.close()
    fast.close()
    assert cam.receiver_estimate(now) is None


class _Sink:
    def __init__(self) -> None:
        self.rembs: list[tuple[int, int]] = []
        self.keyframes = 0

    def receive_keyframe_request(self) -> None:
        self.keyframes += 1

    def receive_nack(self, lost: list[int]) -> None:
        pass

    def receive_remb(self, bitrate: int, ssrc_count: int) -> None:
        self.rembs.append((bitrate, ssrc_count))


class _Sender:
    _ssrc = 0xC0FFEE


async def test_the_bridge_hands_a_receivers_remb_to_the_consumer() -> None:
    sink = _Sink()
    tap = bridge._SenderTap(_Sender(), sink)  # type: ignore[arg-type]
    remb = RtcpPsfbPacket(fmt=15, ssrc=9, media_ssrc=0, fci=pack_remb_fci(800_000, [0xC0FFEE]))
    await tap._handle_rtcp_packet(remb)
    other_app = RtcpPsfbPacket(fmt=15, ssrc=9, media_ssrc=0, fci=b"GOOG\x00\x00\x00\x00")
    await tap._handle_rtcp_packet(other_app)
    await tap._handle_rtcp_packet(RtcpPsfbPacket(fmt=1, ssrc=9, media_ssrc=0xC0FFEE))
    assert sink.rembs == [(800_000, 1)] and sink.keyframes == 1
