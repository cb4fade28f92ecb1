"""media/producer.py + media/consumer.py without a network: keyframe gating, rewriting,
NACK from the cache and upstream, PLI throttling, sender-report translation, close cascade."""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRtpfbPacket

from media import producer as producer_module
from media.consumer import Consumer
from media.producer import Producer
from media.rtp import URI_ABS_SEND_TIME, URI_MID, Codec, parse_header

PUB_SSRC = 0x1234
KEY = b"\x10\x00\x9d\x01\x2a" + b"k" * 50  # VP8: S=1, PID=0, P=0
DELTA = b"\x10\x01" + b"d" * 50  # VP8: P=1


class Owner:
    def __init__(self) -> None:
        self.closed: list[object] = []

    def _producer_closed(self, producer: Producer) -> None:
        self.closed.append(producer)

    def _consumer_closed(self, consumer: Consumer) -> None:
        self.closed.append(consumer)


def rtp(seq: int, ts: int, payload: bytes, pt: int = 96, marker: bool = True) -> bytes:
    ext = bytes([0x10 | 0]) + b"0" + bytes([0x32]) + b"\x00\x00\x01" + b"\x00\x00"  # mid, abs
    header = struct.pack("!BBHII", 0x90, (0x80 if marker else 0) | pt, seq, ts, PUB_SSRC)
    return header + b"\xbe\xde\x00\x02" + ext + payload


@pytest.fixture
def rtcp() -> list[bytes]:
    return []


@pytest.fixture
def producer(rtcp: list[bytes]) -> Producer:
    def send_rtcp(data: bytes) -> bool:
        rtcp.append(data)
        return True

    return Producer(
        producer_id="alice-v1",
        participant_id="alice",
        kind="video",
        mid="0",
        codecs=[
            Codec("video/VP8", 90000, 96),
            Codec("video/rtx", 90000, 97, parameters={"apt": 96}),
        ],
        extensions={1: URI_MID, 3: URI_ABS_SEND_TIME},
        send_rtcp=send_rtcp,
        rtcp_ssrc=0x5555,
        owner=Owner(),
    )


def bind(consumer: Consumer, sent: list[bytes], reports: list[tuple[int, ...]]) -> None:
    def send(data: bytes) -> bool:
        sent.append(data)
        return True

    consumer._bind(
        mid="4",
        ssrc=0xC0FFEE,
        codecs=[Codec("video/VP8", 90000, 100)],
        extensions={1: URI_MID, 3: URI_ABS_SEND_TIME},
        send=send,
        set_report=lambda *a: reports.append(a),
        start_at=(1000, 50000),
    )


def plis(rtcp: list[bytes]) -> int:
    return sum(
        isinstance(p, RtcpPsfbPacket) and p.fmt == 1 for d in rtcp for p in RtcpPacket.parse(d)
    )


async def test_consumer_starts_on_a_keyframe_and_rewrites_headers(
    producer: Producer, rtcp: list[bytes]
) -> None:
    owner = Owner()
    consumer = Consumer(producer, owner, "c1")
    sent: list[bytes] = []
    bind(consumer, sent, [])
    producer.receive_rtp(rtp(10, 900, DELTA))  # the publisher's SSRC is now known
    consumer._activate()
    assert plis(rtcp) == 1, "a new consumer asks for a keyframe at once"

    producer.receive_rtp(rtp(11, 3900, DELTA))
    assert sent == [], "no delta frame before the keyframe"
    producer.receive_rtp(rtp(12, 6900, KEY))
    producer.receive_rtp(rtp(13, 9900, DELTA))
    assert len(sent) == 2 and consumer.packets_sent == 2
    first, second = (parse_header(p) for p in sent)
    assert (first.ssrc, first.seq, first.timestamp, first.payload_type) == (
        0xC0FFEE,
        1000,
        50000,
        100,
    )
    assert (second.seq, second.timestamp) == (1001, 53000)
    assert sent[0][first.payload_offset :] == KEY, "payload untouched"
    assert sent[0][first.extensions[0][2]] == ord("4"), "MID rewritten to the consumer's"
    assert producer.packets_received == 4


async def test_nacks_are_answered_from_the_cache_and_misses_go_upstream(
    producer: Producer, rtcp: list[bytes]
) -> None:
    consumer = Consumer(producer, Owner(), "c1")
    sent: list[bytes] = []
    bind(consumer, sent, [])
    consumer._activate()
    for i in range(5):
        producer.receive_rtp(rtp(100 + i, 3000 * i, KEY if i == 0 else DELTA))
    assert len(sent) == 5
    consumer.receive_nack([1002, 1003, 999])  # 999 is producer seq 99: never cached
    assert consumer.retransmitted == 2 and consumer.nack_misses == 1
    assert [parse_header(p).seq for p in sent[5:]] == [1002, 1003]
    # same packet but for the abs-send-time value (bytes 19-21): a resend is stamped anew
    assert sent[5][:19] == sent[2][:19] and sent[5][22:] == sent[2][22:]
    nacks = [p for d in rtcp for p in RtcpPacket.parse(d) if isinstance(p, RtcpRtpfbPacket)]
    assert len(nacks) == 1 and nacks[0].lost == [99] and nacks[0].media_ssrc == PUB_SSRC
    consumer.receive_nack([999])
    assert len(rtcp) - plis(rtcp) == 1, "the same loss is not NACKed upstream twice at once"
    assert consumer.packets_sent == 5, "a resend is not counted as a new packet"


async def test_keyframe_requests_are_throttled_not_lost(
    producer: Producer, rtcp: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer_module, "KEYFRAME_MIN_INTERVAL", 0.2)
    consumer = Consumer(producer, Owner(), "c1")
    bind(consumer, [], [])
    producer.receive_rtp(rtp(1, 0, KEY))
    for _ in range(5):
        consumer.receive_keyframe_request()
    assert plis(rtcp) == 1 and consumer.keyframe_requests_received == 5
    await asyncio.sleep(0.3)
    assert plis(rtcp) == 2, "the requests inside the window become one PLI at its end"


async def test_sender_reports_are_translated_to_the_consumer_timeline(producer: Producer) -> None:
    consumer = Consumer(producer, Owner(), "c1")
    reports: list[tuple[int, ...]] = []
    bind(consumer, [], reports)
    consumer._activate()
    producer.receive_rtp(rtp(7, 1000, KEY))
    producer.receive_sender_report(PUB_SSRC, 0xAAAA_0000_0000_0000, 4000)
    producer.receive_sender_report(0x999, 1, 1)  # not this producer's stream
    assert reports == [(0xAAAA_0000_0000_0000, 50000 + 3000, 1, len(KEY))]


async def test_a_refused_send_is_counted_as_a_drop(producer: Producer) -> None:
    consumer = Consumer(producer, Owner(), "c1")
    bind(consumer, [], [])
    consumer._send = lambda data: False
    consumer._activate()
    producer.receive_rtp(rtp(1, 0, KEY))
    assert consumer.dropped == 1 and consumer.packets_sent == 0


async def test_closing_the_producer_closes_its_consumers(producer: Producer) -> None:
    owners = [Owner(), Owner()]
    consumers = [Consumer(producer, owner, f"c{i}") for i, owner in enumerate(owners)]
    for consumer in consumers:
        bind(consumer, [], [])
        consumer._activate()
    producer.close()
    producer.close()
    assert all(c.closed for c in consumers)
    assert [o.closed for o in owners] == [[consumers[0]], [consumers[1]]]
    assert producer.consumers == ()
