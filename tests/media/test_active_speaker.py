"""Active speaker: the detector alone (activespeaker.py), then synthetic RTP carrying the
ssrc-audio-level extension through producers (producer.py) and the router's round."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Mapping

import pytest

from media.activespeaker import ActiveSpeakerDetector
from media.producer import Producer
from media.router import Router
from media.rtp import URI_AUDIO_LEVEL, URI_MID, Codec

TALK = -25.0  # dBov of someone speaking
LOUD = -15.0
MURMUR = -65.0  # below the threshold: background


def _run(detector: ActiveSpeakerDetector, *rounds: Mapping[str, float | None]) -> list[str | None]:
    """The speaker after each round."""
    out = []
    for levels in rounds:
        detector.update(levels)
        out.append(detector.speaker)
    return out


def test_silence_means_nobody() -> None:
    detector = ActiveSpeakerDetector()
    assert _run(detector, *[{"a": None, "b": -127.0}] * 5) == [None] * 5
    assert _run(detector, *[{"a": MURMUR, "b": MURMUR}] * 5) == [None] * 5


def test_one_voice_takes_the_floor_and_a_cough_does_not() -> None:
    detector = ActiveSpeakerDetector()
    assert _run(detector, {"a": -20.0, "b": None}, {"a": None, "b": None}) == [None, None]
    speakers = _run(detector, *[{"a": None, "b": TALK}] * 3)
    assert speakers[-1] == "b" and speakers.count("b") >= 2, "within about 600 ms"


def test_two_people_talking_do_not_flap() -> None:
    detector = ActiveSpeakerDetector()
    _run(detector, *[{"a": TALK, "b": None}] * 3)
    assert detector.speaker == "a"
    # b joins in, as loud or a little louder, one interval each way: a keeps the floor
    rounds = [{"a": TALK, "b": TALK - 3 + 6 * (i % 2)} for i in range(12)]
    assert set(_run(detector, *rounds)) == {"a"}
    # one interval of b much louder is not enough either
    assert _run(detector, {"a": TALK, "b": LOUD}, {"a": TALK, "b": TALK}) == ["a", "a"]


def test_a_clearly_louder_voice_takes_over_after_two_intervals() -> None:
    detector = ActiveSpeakerDetector()
    _run(detector, *[{"a": -35.0, "b": None}] * 4)
    # b's smoothed level needs two intervals to lead by 6 dB, then two more to take over
    assert _run(detector, *[{"a": -35.0, "b": LOUD}] * 5) == ["a", "a", "a", "b", "b"]


def test_when_the_speaker_stops_the_next_one_takes_over_at_once() -> None:
    detector = ActiveSpeakerDetector()
    _run(detector, *[{"a": TALK, "b": MURMUR}] * 3)
    # a stops; b talks: b takes over as soon as a falls under the threshold
    speakers = _run(detector, *[{"a": None, "b": TALK}] * 6)
    assert speakers[0] == "a", "a breath is not the end of a sentence"
    assert speakers[-1] == "b"


def test_the_speaker_falls_silent_then_nobody() -> None:
    detector = ActiveSpeakerDetector()
    _run(detector, *[{"a": TALK}] * 3)
    speakers = _run(detector, *[{"a": None}] * 10)
    assert speakers[0] == "a" and speakers[-1] is None
    assert speakers.index(None) >= 2, "held through a pause of a few hundred ms"


def test_a_participant_who_leaves_drops_out() -> None:
    detector = ActiveSpeakerDetector()
    _run(detector, *[{"a": LOUD, "b": TALK}] * 3)
    assert detector.speaker == "a"
    assert detector.update({"b": TALK}) and detector.speaker == "b"
    assert "a" not in detector.levels
    assert detector.update({}) and detector.speaker is None


# --- through producers and the router -------------------------------------------------------

LEVEL_ID = 3


class Owner:
    def _producer_closed(self, producer: Producer) -> None:
        self.router._producer_closed(producer)

    def __init__(self, router: Router) -> None:
        self.router = router


def audio_rtp(seq: int, level: int, *, voice: bool = False, ssrc: int = 0x42) -> bytes:
    """Opus RTP with a MID and an ssrc-audio-level element (RFC 6464 §3: V bit, -dBov)."""
    block = bytes([0x10]) + b"0" + bytes([(LEVEL_ID << 4) | 0, (0x80 if voice else 0) | level])
    block += bytes(-len(block) % 4)
    header = struct.pack("!BBHII", 0x90, 111, seq, seq * 960, ssrc)
    return header + struct.pack("!HH", 0xBEDE, len(block) // 4) + block + b"opus"


def microphone(router: Router, participant: str, source: str = "microphone") -> Producer:
    producer = Producer(
        producer_id=f"{participant}-{source}",
        participant_id=participant,
        kind="audio",
        mid="0",
        source=source,
        codecs=[Codec("audio/opus", 48000, 111, 2)],
        extensions={1: URI_MID, LEVEL_ID: URI_AUDIO_LEVEL},
        send_rtcp=lambda data: True,
        rtcp_ssrc=1,
        owner=Owner(router),
    )
    router._publish(producer)
    return producer


@pytest.fixture
async def room() -> AsyncIterator[tuple[Router, list[str | None]]]:
    events: list[str | None] = []
    router = Router("room-speak", on_active_speaker=events.append)
    yield router, events
    await router.close()


def talk(producer: Producer, level: int, packets: int = 15, voice: bool = False) -> None:
    """One 300 ms interval of 20 ms packets at ``level`` (-dBov)."""
    for i in range(packets):
        producer.receive_rtp(audio_rtp(i, level, voice=voice))


async def test_the_producer_reads_the_level_byte_and_its_mean(
    room: tuple[Router, list[str | None]],
) -> None:
    producer = microphone(room[0], "alice")
    assert producer.take_audio_level() is None, "no packet, no level"
    producer.receive_rtp(audio_rtp(1, 20, voice=True))  # the V bit is not part of the level
    producer.receive_rtp(audio_rtp(2, 40))
    assert producer.take_audio_level() == -30.0
    assert producer.take_audio_level() is None, "taken: the next interval starts empty"


async def test_the_router_reports_the_speaker_on_change_only(
    room: tuple[Router, list[str | None]],
) -> None:
    router, events = room
    alice, bob = microphone(router, "alice"), microphone(router, "bob")
    screen_sound = microphone(router, "carol", source="screen")
    for _ in range(4):
        talk(alice, 127)
        talk(bob, 25, voice=True)
        talk(screen_sound, 5)  # a loud video played in a shared screen is no one speaking
        router._update_speaker()
    assert events == ["bob"] and router.active_speaker == "bob"
    for _ in range(4):  # alice says a word or two, not clearly louder: no flapping
        talk(alice, 22)
        talk(bob, 25)
        router._update_speaker()
    assert events == ["bob"]
    for _ in range(15):  # bob is muted (no packets), alice goes on
        talk(alice, 25)
        router._update_speaker()
    assert events == ["bob", "alice"]
    for _ in range(15):  # everyone silent
        talk(alice, 127)
        router._update_speaker()
    assert events == ["bob", "alice", None] and router.active_speaker is None


async def test_a_closed_producer_drops_out(room: tuple[Router, list[str | None]]) -> None:
    router, events = room
    alice = microphone(router, "alice")
    for _ in range(3):
        talk(alice, 20)
        router._update_speaker()
    assert events == ["alice"]
    alice.close()
    assert events == ["alice", None], "the last audio gone: nobody, at once"
    assert router._timer is None, "no producers, no timer"
