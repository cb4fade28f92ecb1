"""``Producer``: one track a participant sends; RTP in, parsed once, fanned out to consumers.

Per packet (the hot path): parse the header once (``rtp.parse_header``), unwrap RTX
(RFC 4588 §4), store the bytes in a packet cache for NACKs (RFC 4585 §6.2.1), start waiting
consumers on a keyframe, hand the same bytes and header to each consumer. Nothing here
logs, formats or copies per packet; counters are plain ints.

Keyframe requests (PLI, RFC 4585 §6.3.1) to the publisher are throttled to one per
``KEYFRAME_MIN_INTERVAL``; a request inside the window is deferred to its end, never lost.

An audio producer also reads the ssrc-audio-level byte (RFC 6464 §3) of each packet, at an
offset looked up once per extension layout, and sums it; the ``Router`` takes the mean every
interval for active-speaker detection (``activespeaker.py``). A video producer tells its
publisher what to send with REMB (``bitrate.py``), when the ``Router``'s timer says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from .bitrate import REMB_MAX_AGE, remb_due
from .rtp import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    Codec,
    LayoutTable,
    RtpHeader,
    abs_send_time_now,
    audio_level_offset,
    is_keyframe_start,
    pack_nack,
    pack_pli,
    pack_remb,
    parse_header,
    unwrap_rtx,
)

if TYPE_CHECKING:
    from .consumer import Consumer

logger = logging.getLogger(__name__)

#: Packets kept for retransmission: a power of two, indexed by sequence number.
CACHE_SIZE = 1024
_CACHE_MASK = CACHE_SIZE - 1
#: Least time between two PLIs sent to the publisher, in seconds.
KEYFRAME_MIN_INTERVAL = 0.5
#: While a consumer waits for a keyframe, ask again after this long.
KEYFRAME_RETRY = 1.0
#: Least time between two upstream NACKs for the same sequence number.
NACK_UPSTREAM_INTERVAL = 0.1


class ProducerOwner(Protocol):
    """The ``Transport`` a producer arrived on."""

    def _producer_closed(self, producer: Producer) -> None: ...


class Producer:
    """A track received from one participant, forwarded to every other participant."""

    def __init__(
        self,
        *,
        producer_id: str,
        participant_id: str,
        kind: str,
        mid: str,
        source: str = "",
        codecs: Sequence[Codec],
        extensions: Mapping[int, str],
        send_rtcp: Callable[[bytes], bool],
        rtcp_ssrc: int,
        owner: ProducerOwner,
    ) -> None:
        self.id = producer_id
        self.participant_id = participant_id
        self.kind = kind
        #: microphone, camera or screen (``transport.SOURCES``), as the publisher named it.
        self.source = source or ("microphone" if kind == "audio" else "camera")
        self.mid = mid
        self.closed = False
        self._owner = owner
        self._send_rtcp = send_rtcp
        self._rtcp_ssrc = rtcp_ssrc
        self.ssrc: int | None = None
        self._consumers: tuple[Consumer, ...] = ()  # forwarding; a tuple: iterated per packet
        self._waiting: list[Consumer] = []  # bound, waiting for a keyframe to start
        self._cache: list[tuple[bytes, RtpHeader] | None] = [None] * CACHE_SIZE
        self._layouts = LayoutTable()
        self._last_pli = -KEYFRAME_MIN_INTERVAL
        self._pli_timer: asyncio.TimerHandle | None = None
        self._nacked: dict[int, float] = {}
        self.last_sender_report: tuple[int, int] | None = None
        self._level_sum = 0  # of -dBov values since the last take_audio_level
        self._level_count = 0
        self._level_at: dict[int, int] = {}  # layout -> offset of the audio-level byte
        #: What the publisher was last told to send (REMB), bits/s; 0: nothing yet.
        self.remb_bitrate = 0
        self._remb_sent_at = -REMB_MAX_AGE
        # counters
        self.packets_received = 0
        self.bytes_received = 0
        self.malformed = 0
        self.rtx_received = 0
        self.keyframe_requests_sent = 0
        self.nacks_sent = 0
        self.rembs_sent = 0
        self.update_codecs(codecs, extensions)

    # negotiation -------------------------------------------------------------------------

    def update_codecs(self, codecs: Sequence[Codec], extensions: Mapping[int, str]) -> None:
        """Take the (re)negotiated codecs and extension ids; consumers rebuild their maps.

        Payload types seen before stay known unless reassigned: a publisher may keep the old
        numbering until it has applied the answer.
        """
        previous = getattr(self, "_codec_by_pt", {})
        self._codec_by_pt: dict[int, Codec] = {**previous, **{c.payload_type: c for c in codecs}}
        self.codecs: tuple[Codec, ...] = tuple(self._codec_by_pt.values())
        self._rtx_apt = [-1] * 128  # RTX payload type -> its media payload type
        for codec in self._codec_by_pt.values():
            apt = codec.parameters.get("apt") if codec.is_rtx else None
            if apt is not None and 0 <= codec.payload_type < 128:
                self._rtx_apt[codec.payload_type] = int(apt)
        self.extensions: dict[int, str] = dict(extensions)
        self._has_abs = URI_ABS_SEND_TIME in self.extensions.values()
        # 0: no audio level to read (video, or not negotiated); ids are 1..255.
        self._level_id = 0
        if self.kind == "audio":
            self._level_id = next((i for i, u in extensions.items() if u == URI_AUDIO_LEVEL), 0)
        self._level_at = {}
        for consumer in (*self._consumers, *self._waiting):
            consumer._producer_changed()

    # the hot path ------------------------------------------------------------------------

    def receive_rtp(self, data: bytes) -> None:
        """One RTP packet from the publisher (already SRTP-unprotected)."""
        try:
            header = parse_header(data)
        except ValueError:
            self.malformed += 1
            return
        apt = self._rtx_apt[header.b1 & 0x7F]
        if apt >= 0:
            if self.ssrc is None:
                return
            original = unwrap_rtx(data, header, apt, self.ssrc)
            if original is None:  # padding-only probe
                return
            data = original
            header = parse_header(data)
            self.rtx_received += 1
        elif header.ssrc != self.ssrc:
            self.ssrc = header.ssrc  # first packet, or the publisher restarted its stream
        self._layouts.number(header)
        self.packets_received += 1
        self.bytes_received += len(data)
        self._cache[header.seq & _CACHE_MASK] = (data, header)
        if self._level_id:
            at = self._level_at.get(header.layout)
            if at is None:
                at = audio_level_offset(header, self._level_id)
                if header.layout >= 0:
                    self._level_at[header.layout] = at
            if at >= 0:
                self._level_sum += data[at] & 0x7F  # the low 7 bits; the top one is V
                self._level_count += 1
        abs_send_time = abs_send_time_now() if self._has_abs else None
        if self._waiting:
            self._start_waiting(data, header)
        for consumer in self._consumers:
            consumer.forward(data, header, abs_send_time)

    def _start_waiting(self, data: bytes, header: RtpHeader) -> None:
        codec = self._codec_by_pt.get(header.b1 & 0x7F)
        if codec is not None and is_keyframe_start(codec.name, data, header):
            waiting, self._waiting = self._waiting, []
            for consumer in waiting:
                consumer._start(header)
            self._consumers += tuple(waiting)
        elif time.monotonic() - self._last_pli >= KEYFRAME_RETRY:
            self.request_keyframe()

    # consumers ---------------------------------------------------------------------------

    def _add_waiting(self, consumer: Consumer) -> None:
        """Start ``consumer`` at the next keyframe (audio: the next packet) and ask for one."""
        self._remove(consumer)
        if self.closed:
            return
        self._waiting.append(consumer)
        self.request_keyframe()

    def _remove(self, consumer: Consumer) -> None:
        if consumer in self._consumers:
            self._consumers = tuple(c for c in self._consumers if c is not consumer)
        if consumer in self._waiting:
            self._waiting.remove(consumer)

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """Consumers forwarding now and those waiting for a keyframe."""
        return (*self._consumers, *self._waiting)

    def cached(self, seq: int) -> tuple[bytes, RtpHeader] | None:
        """The cached packet with this sequence number, if still held."""
        entry = self._cache[seq & _CACHE_MASK]
        if entry is not None and entry[1].seq == seq:
            return entry
        return None

    # feedback to the publisher -----------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (PLI), at most once per ``KEYFRAME_MIN_INTERVAL``."""
        if self.kind != "video" or self.closed:
            return
        delay = self._last_pli + KEYFRAME_MIN_INTERVAL - time.monotonic()
        if delay <= 0:
            self._send_pli()
        elif self._pli_timer is None:
            self._pli_timer = asyncio.get_running_loop().call_later(delay, self._send_pli)

    def _send_pli(self) -> None:
        self._pli_timer = None
        if self.closed or self.ssrc is None:
            return
        self._last_pli = time.monotonic()
        if self._send_rtcp(pack_pli(self._rtcp_ssrc, self.ssrc)):
            self.keyframe_requests_sent += 1

    def request_retransmission(self, lost: Sequence[int]) -> None:
        """NACK upstream what a consumer asked for and the cache lacks (RFC 4585 §6.2.1)."""
        if self.ssrc is None or self.closed:
            return
        now = time.monotonic()
        fresh = [s for s in lost if now - self._nacked.get(s, -1.0) >= NACK_UPSTREAM_INTERVAL]
        if not fresh:
            return
        if len(self._nacked) > 4 * CACHE_SIZE:
            self._nacked.clear()
        for seq in fresh:
            self._nacked[seq] = now
        if self._send_rtcp(pack_nack(self._rtcp_ssrc, self.ssrc, sorted(fresh))):
            self.nacks_sent += 1

    def take_audio_level(self) -> float | None:
        """Mean audio level (dBov, -127..0) of the packets since the last call; None if none
        carried one."""
        count = self._level_count
        if not count:
            return None
        level = -self._level_sum / count
        self._level_sum = self._level_count = 0
        return level

    def receiver_estimate(self, now: float) -> int | None:
        """The lowest bitrate a consumer's receiver reported in the last ``REMB_MAX_AGE``."""
        estimates = [
            c.remb_bitrate
            for c in (*self._consumers, *self._waiting)
            if c.remb_bitrate and now - c.remb_at < REMB_MAX_AGE
        ]
        return min(estimates) if estimates else None

    def send_remb(self, bitrate: int, now: float) -> bool:
        """Tell the publisher to send at most ``bitrate`` bits/s (REMB), if due: once per
        ``REMB_INTERVAL``, or at once on a change of more than ``REMB_CHANGE``."""
        if self.closed or self.ssrc is None:
            return False
        if not remb_due(bitrate, self.remb_bitrate, self._remb_sent_at, now):
            return False
        if not self._send_rtcp(pack_remb(self._rtcp_ssrc, bitrate, [self.ssrc])):
            return False
        self.remb_bitrate = bitrate
        self._remb_sent_at = now
        self.rembs_sent += 1
        return True

    def receive_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """A sender report of the publisher (RFC 3550 §6.4.1): consumers translate it."""
        if ssrc != self.ssrc:
            return
        self.last_sender_report = (ntp_timestamp, rtp_timestamp)
        for consumer in self._consumers:
            consumer._producer_sender_report(ntp_timestamp, rtp_timestamp)

    # lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop forwarding and close every consumer of this producer (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        consumers = self.consumers
        self._consumers = ()
        self._waiting = []
        for consumer in consumers:
            consumer.close()
        self._cache = [None] * CACHE_SIZE
        self._owner._producer_closed(self)
        logger.debug("producer %s of %s closed", self.id, self.participant_id)

    def stats(self) -> dict[str, int | str | None]:
        return {
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "ssrc": self.ssrc,
            "packets_received": self.packets_received,
            "bytes_received": self.bytes_received,
            "malformed": self.malformed,
            "rtx_received": self.rtx_received,
            "keyframe_requests_sent": self.keyframe_requests_sent,
            "nacks_sent": self.nacks_sent,
            "rembs_sent": self.rembs_sent,
            "remb_bitrate": self.remb_bitrate,
            "consumers": len(self._consumers) + len(self._waiting),
        }
