"""bench/media_forwarding.py: the prototype's forwarding it compares against sends the same
packet as ``Consumer.forward`` (all but the abs-send-time stamp), so the CPU ratio compares
two ways of writing one packet, not two different packets."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from bench.media_forwarding import PrototypeForwarding
from media.consumer import Consumer
from media.producer import Producer
from media.rtp import URI_ABS_SEND_TIME, URI_MID, parse_header
from tests.media.test_consumer import KEY, Owner, bind, rtp
from tests.media.test_consumer import producer as producer  # a fixture
from tests.media.test_consumer import rtcp as rtcp  # a fixture

EXTENSIONS = {1: URI_MID, 3: URI_ABS_SEND_TIME}


async def test_prototype_writes_the_packet_consumer_forward_writes(producer: Producer) -> None:
    consumer = Consumer(producer, Owner(), "c1")
    sent: list[bytes] = []
    bind(consumer, sent, [])
    consumer._activate()
    data = rtp(12, 6900, KEY)
    producer.receive_rtp(data)
    assert len(sent) == 1

    PrototypeForwarding(aiortc_send=False).forward(consumer, data, parse_header(data))
    assert len(sent) == 2 and consumer.packets_sent == 2
    ours, theirs = (RtpPacket.parse(p, PrototypeForwarding()._map(EXTENSIONS)) for p in sent)
    fields = ("payload_type", "marker", "sequence_number", "timestamp", "ssrc", "payload")
    assert [getattr(theirs, f) for f in fields] == [getattr(ours, f) for f in fields]
    assert (ours.ssrc, ours.payload_type, ours.payload) == (0xC0FFEE, 100, KEY)
    assert ours.extensions.mid == theirs.extensions.mid == "4"
    assert theirs.extensions.abs_send_time is not None


async def test_install_swaps_consumer_forward_and_back() -> None:
    ours = Consumer.forward
    forwarding = PrototypeForwarding()
    forwarding.install(True)
    try:
        assert Consumer.forward is not ours
    finally:
        forwarding.install(False)
    assert Consumer.forward is ours
