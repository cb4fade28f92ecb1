"""``Consumer``: one producer's track delivered to one receiving participant.

The SFU acts as an RTP translator (RFC 3550 §7.2) per consumer: in a copy of the producer's
bytes it rewrites SSRC, sequence number, timestamp and payload type in the fixed header
(``struct.pack_into`` on a ``bytearray``) and the header extensions in place
(``rtp.ExtensionRewriter``); the payload is never touched. Sequence numbers and timestamps
are shifted by constant offsets chosen when the consumer starts (at a keyframe), so NACKs
map back to the producer's cache by subtraction.

Sending is synchronous and never waits: the receiver's transport drops its own packets when
its backlog is full (see ``_aiortc_bridge.DtlsBridge.send_rtp``), counted in ``dropped``.
RTCP from the receiver: PLI/FIR go to the producer (throttled there), NACKs are answered
from the producer's cache, and cache misses are NACKed upstream. A REMB (the receiver's
bandwidth estimate, draft-alvestrand-rmcat-remb-03) is kept with its arrival time; the
``Router`` reads it when it sets the publisher's target (``bitrate.py``), never per packet.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from .producer import Producer
from .rtp import (
    FIXED_PATCH,
    Codec,
    ExtensionRewriter,
    RtpHeader,
    abs_send_time_now,
    map_payload_types,
    marker_pt_table,
)

logger = logging.getLogger(__name__)

_pack_into = FIXED_PATCH.pack_into


class ConsumerOwner(Protocol):
    """The receiving participant's ``Transport``."""

    def _consumer_closed(self, consumer: Consumer) -> None: ...


#: (ntp, rtp timestamp, packets, octets) -> the sender report aiortc sends next.
SenderReportSetter = Callable[[int, int, int, int], None]


class Consumer:
    """A producer's track as sent to one participant, on one m-line of their transport."""

    __slots__ = (
        "_ext",
        "_last",
        "_owner",
        "_send",
        "_seq_off",
        "_set_report",
        "_ssrc",
        "_start_at",
        "_table",
        "_ts_off",
        "closed",
        "codecs",
        "dropped",
        "extensions",
        "id",
        "keyframe_requests_received",
        "mid",
        "nack_misses",
        "octets_sent",
        "packets_sent",
        "producer",
        "remb_at",
        "remb_bitrate",
        "retransmitted",
    )

    def __init__(self, producer: Producer, owner: ConsumerOwner, consumer_id: str) -> None:
        self.id = consumer_id
        self.producer = producer
        self._owner = owner
        self.closed = False
        self.mid: str | None = None  # set when bound to an m-line of the receiver's transport
        self.codecs: tuple[Codec, ...] = ()
        self.extensions: dict[int, str] = {}
        self._ssrc = 0
        self._send: Callable[[bytes | bytearray], bool] = _not_bound
        self._set_report: SenderReportSetter | None = None
        self._table = [-1] * 256
        self._ext = ExtensionRewriter({}, {}, None)
        self._seq_off = 0
        self._ts_off = 0
        self._last: RtpHeader | None = None
        # (first sequence number, first timestamp) to send; random for a fresh SSRC.
        self._start_at = (random.randrange(0x8000), random.randrange(0x80000000))
        self.packets_sent = 0
        self.octets_sent = 0
        self.dropped = 0
        self.retransmitted = 0
        self.nack_misses = 0
        self.keyframe_requests_received = 0
        #: This stream's share of the receiver's last REMB (bits/s; 0: none yet), and when.
        self.remb_bitrate = 0
        self.remb_at = 0.0

    @property
    def kind(self) -> str:
        return self.producer.kind

    @property
    def ssrc(self) -> int:
        return self._ssrc

    # binding to the receiver's m-line (Transport) ----------------------------------------

    def _bind(
        self,
        *,
        mid: str,
        ssrc: int,
        codecs: Sequence[Codec],
        extensions: Mapping[int, str],
        send: Callable[[bytes | bytearray], bool],
        set_report: SenderReportSetter,
        start_at: tuple[int, int] | None,
    ) -> None:
        """Attach to a negotiated m-line; forwarding starts with ``_activate``."""
        self.mid = mid
        self._ssrc = ssrc
        self._send = send
        self._set_report = set_report
        if start_at is not None:
            self._start_at = start_at
        self.update_negotiation(codecs, extensions)

    def update_negotiation(self, codecs: Sequence[Codec], extensions: Mapping[int, str]) -> None:
        self.codecs = tuple(codecs)
        self.extensions = dict(extensions)
        self._producer_changed()

    def _producer_changed(self) -> None:
        mapping = map_payload_types(self.producer.codecs, self.codecs)
        if self.codecs and not mapping:
            logger.info(
                "consumer %s: no codec in common with producer %s", self.id, self.producer.id
            )
        self._table = marker_pt_table(mapping)
        self._ext = ExtensionRewriter(self.producer.extensions, self.extensions, self.mid)

    def _activate(self) -> None:
        """The receiver's transport is connected: start at the producer's next keyframe."""
        if not self.closed and self.mid is not None:
            self.producer._add_waiting(self)

    def _unbind(self) -> tuple[int, int] | None:
        """Detach from the m-line; returns where the next stream on its SSRC should start."""
        self.producer._remove(self)
        self.mid = None
        self._send = _not_bound
        self._set_report = None
        return self.continuation()

    def continuation(self) -> tuple[int, int] | None:
        """(next sequence number, a later timestamp) after the last packet sent, if any."""
        last = self._last
        if last is None:
            return None
        return (
            (last.seq + self._seq_off + 1) & 0xFFFF,
            (last.timestamp + self._ts_off + 90000) & 0xFFFFFFFF,
        )

    def _start(self, header: RtpHeader) -> None:
        """Called by the producer on the packet this consumer starts with."""
        seq, timestamp = self._start_at
        self._seq_off = (seq - header.seq) & 0xFFFF
        self._ts_off = (timestamp - header.timestamp) & 0xFFFFFFFF
        report = self.producer.last_sender_report
        if report is not None:
            self._producer_sender_report(*report)

    # the hot path ------------------------------------------------------------------------

    def forward(self, data: bytes, header: RtpHeader, abs_send_time: bytes | None) -> None:
        """Rewrite a copy of one producer packet for this receiver and send it."""
        buf = self._rewritten(data, header, abs_send_time)
        if buf is None:
            self.dropped += 1
            return
        self._last = header
        if self._send(buf):
            self.packets_sent += 1
            self.octets_sent += header.payload_end - header.payload_offset
        else:
            self.dropped += 1

    def _resend(self, data: bytes, header: RtpHeader, abs_send_time: bytes) -> bool:
        # As ``forward``, for a cached packet: no change to counters or the last header.
        buf = self._rewritten(data, header, abs_send_time)
        return buf is not None and self._send(buf)

    def _rewritten(
        self, data: bytes, header: RtpHeader, abs_send_time: bytes | None
    ) -> bytearray | None:
        """A copy of the producer's packet with this consumer's header; None when the
        receiver negotiated no codec for its payload type."""
        b1 = self._table[header.b1]
        if b1 < 0:
            return None
        buf = bytearray(data)
        _pack_into(
            buf,
            1,
            b1,
            (header.seq + self._seq_off) & 0xFFFF,
            (header.timestamp + self._ts_off) & 0xFFFFFFFF,
            self._ssrc,
        )
        if header.ext_form:
            self._ext.rewrite(buf, header, abs_send_time)
        return buf

    # RTCP from the receiver (via the bridge's FeedbackSink) ------------------------------

    def receive_keyframe_request(self) -> None:
        """PLI or FIR from the receiver: relayed to the producer, which throttles."""
        self.keyframe_requests_received += 1
        self.producer.request_keyframe()

    def receive_nack(self, lost: Sequence[int]) -> None:
        """Resend what the producer's cache holds; NACK the rest upstream."""
        if self._last is None or self.closed:
            return
        producer = self.producer
        misses = []
        abs_send_time: bytes | None = None
        for seq in lost:
            source_seq = (seq - self._seq_off) & 0xFFFF
            entry = producer.cached(source_seq)
            if entry is None:
                misses.append(source_seq)
                continue
            if abs_send_time is None:
                abs_send_time = abs_send_time_now()
            if self._resend(entry[0], entry[1], abs_send_time):
                self.retransmitted += 1
        if misses:
            self.nack_misses += len(misses)
            producer.request_retransmission(misses)

    def receive_remb(self, bitrate: int, ssrc_count: int) -> None:
        """The receiver's estimate for the ``ssrc_count`` streams its REMB lists, ours among
        them: this stream is taken to get an even share (a browser sends one REMB for all)."""
        self.remb_bitrate = bitrate // max(1, ssrc_count)
        self.remb_at = time.monotonic()

    def _producer_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """Translate the publisher's NTP/RTP pair onto this consumer's timeline (§7.2)."""
        if self._set_report is not None and self._last is not None:
            self._set_report(
                ntp_timestamp,
                (rtp_timestamp + self._ts_off) & 0xFFFFFFFF,
                self.packets_sent,
                self.octets_sent,
            )

    # lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop and detach from producer and transport (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.producer._remove(self)
        self._owner._consumer_closed(self)

    def stats(self) -> dict[str, int | str | None]:
        return {
            "id": self.id,
            "producer_id": self.producer.id,
            "kind": self.kind,
            "mid": self.mid,
            "ssrc": self._ssrc,
            "packets_sent": self.packets_sent,
            "octets_sent": self.octets_sent,
            "dropped": self.dropped,
            "retransmitted": self.retransmitted,
            "nack_misses": self.nack_misses,
            "keyframe_requests_received": self.keyframe_requests_received,
            "remb_bitrate": self.remb_bitrate,
        }


def _not_bound(data: bytes | bytearray) -> bool:
    return False
