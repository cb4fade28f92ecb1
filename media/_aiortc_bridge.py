"""The only module that touches aiortc's (and aioice's) private names. Pinned: aiortc 1.16.0.

aiortc has no public API for forwarding RTP without decoding (aiortc#449, #627). The reach
used here, installed right after ``setRemoteDescription``:

* ``RTCDtlsTransport._rtp_router`` is replaced by a ``RtpRouter`` subclass. aiortc still
  registers its receivers and senders in it as usual; RTCP routed to a *claimed* receiver (a
  sender report) goes to our ``Producer``, RTCP routed to a claimed sender (PLI, FIR, NACK,
  REMB) to our ``Consumer``. It also routes by the MID header extension, which aiortc's own
  router records but never reads, for publishers that do not signal their SSRCs.
* ``RTCDtlsTransport._handle_rtp_data`` is shadowed on the instance. aiortc's version builds
  an ``RtpPacket`` (extension objects, payload copy) per packet; ours looks the SSRC up in a
  dict and hands the *bytes* of a claimed stream to its ``Producer``, which parses the header
  once. Only the first packet of an unknown SSRC takes aiortc's parse + route path. Claimed
  receivers thus never see a packet: their decoder threads stay idle and no decoder is made.
* Consumers send through what ``RTCDtlsTransport._send_rtp`` does (SRTP protect + ICE send),
  done synchronously: the SRTP session ``_tx_srtp`` and the nominated aioice pair
  (``Connection._nominated``) give the protection and the datagram transport's ``sendto``.
  The transport's write buffer is the receiver's own queue; past ``max_backlog`` bytes its
  packets are dropped, so a slow receiver never holds up the room. Protection calls libsrtp
  through pylibsrtp's cffi binding on the session's own buffer (``Session._srtp``,
  ``_cdata``, ``_buffer``; pylibsrtp 1.0.0), as ``Session.protect`` does, minus a per-call
  ``ffi.new``, type checks and a ``bytes`` copy: about 1.5 µs per forwarded packet.
* Each consumer's ``RTCRtpSender`` gets a ``ForwardTrack`` whose ``recv`` never returns, so
  aiortc never creates an encoder; its stream id (``_stream_id``) names the publisher, and
  its sender-report counters (name-mangled) are set from the producer's reports, translated
  (RFC 3550 §7.2), so aiortc's own RTCP loop sends correct SRs.
* ``aioice.ice.get_host_addresses`` is wrapped to return the configured ICE host addresses
  (aioice skips 127.0.0.1 otherwise).
* ``aioice.ice.asyncio`` is swapped for a view of ``asyncio`` whose running loop binds the
  host candidates' UDP sockets within the configured port range (aioice binds port 0).

``tests/media/test_bridge_pin.py`` fails loudly if aiortc is not 1.16.0 or a name is gone.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import aioice.ice
import aiortc
import pylibsrtp
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter, State
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
)
from aiortc.sdp import SessionDescription
from av.frame import Frame
from pylibsrtp import _binding as _srtp_binding

from .rtp import PSFB_AFB, Codec, parse_remb

AIORTC_VERSION = "1.16.0"
PYLIBSRTP_VERSION = "1.0.0"

logger = logging.getLogger(__name__)

_SSRC = struct.Struct("!I")
_srtp_ffi = _srtp_binding.ffi
_srtp_protect = _srtp_binding.lib.srtp_protect
#: Largest RTP packet protectable in pylibsrtp's 1500-byte session buffer.
_MAX_RTP = 1500 - pylibsrtp.SRTP_MAX_TRAILER_LEN
#: Most SSRCs one claimed receiver may have learnt (media, RTX, a restart or two).
_MAX_LEARNT_SSRCS = 8
#: Default bound of a receiver's outbound datagram backlog, in bytes.
DEFAULT_MAX_BACKLOG = 256 * 1024

_SR_FIELDS = (
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
)

#: Every private name used here, by owner, for the pin test.
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "RTCDtlsTransport": (
        "_rtp_router",
        "_handle_rtp_data",
        "_rtp_header_extensions_map",
        "_send_rtp",
        "_tx_srtp",
        "_state",
        "transport",
    ),
    "RtpRouter": ("route_rtp", "route_rtcp", "receivers", "senders", "mid_table", "ssrc_table"),
    "RTCRtpSender": ("_ssrc", "_stream_id", *_SR_FIELDS),
    "RTCRtpTransceiver": ("_codecs", "_headerExtensions"),
    "MediaStreamTrack": ("_id",),
    "RTCIceTransport": ("_connection",),
    "aioice.Connection": ("_nominated",),
    "aioice.ice": ("get_host_addresses", "asyncio"),
    "pylibsrtp.Session": ("_srtp", "_cdata", "_buffer"),
    "pylibsrtp._binding.lib": ("srtp_protect", "srtp_protect_rtcp"),
}


class RtpSink(Protocol):
    """What a claimed receiver's traffic goes to: the ``Producer``."""

    def receive_rtp(self, data: bytes) -> None: ...

    def receive_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None: ...


class FeedbackSink(Protocol):
    """What RTCP aimed at a claimed sender goes to: the ``Consumer``."""

    def receive_keyframe_request(self) -> None: ...

    def receive_nack(self, lost: Sequence[int]) -> None: ...

    def receive_remb(self, bitrate: int, ssrc_count: int) -> None: ...


# --- ICE host addresses ---------------------------------------------------------------------

_original_get_host_addresses = aioice.ice.get_host_addresses
_host_addresses: tuple[str, ...] | None = None


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _host_addresses is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [a for a in _host_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def set_ice_host_addresses(addresses: Iterable[str] | None) -> None:
    """Gather ICE host candidates on exactly these addresses (process-wide); None: aioice's."""
    global _host_addresses
    _host_addresses = None if addresses is None else tuple(addresses)
    aioice.ice.get_host_addresses = _get_host_addresses


# --- ICE host ports --------------------------------------------------------------------------

_port_range: tuple[int, int] | None = None


class _PortRangeLoop:
    """The running loop as aioice.ice sees it: a host candidate's socket (``local_addr``
    with port 0) is bound to a free port of the range instead; all else is the loop's."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, protocol_factory: Callable[[], Any], local_addr: Any = None, **kwargs: Any
    ) -> Any:
        window = _port_range
        if window is None or local_addr is None or local_addr[1] != 0 or kwargs:
            return await self._loop.create_datagram_endpoint(
                protocol_factory, local_addr=local_addr, **kwargs
            )
        low, high = window
        family, _, _, _, address = socket.getaddrinfo(
            local_addr[0], 0, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
        )[0]
        span = high - low + 1
        first = random.randrange(span)  # spread transports over the range
        for i in range(span):
            # Bound here, not by the loop: uvloop's bind error carries no errno, and only
            # "in use" means "try the next port".
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address[0], low + (first + i) % span, *address[2:]))
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            sock.setblocking(False)
            return await self._loop.create_datagram_endpoint(protocol_factory, sock=sock)
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {low}-{high}")


class _AsyncioInRange:
    """``asyncio`` for aioice.ice, but ``get_running_loop`` gives the ``_PortRangeLoop``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def get_running_loop() -> Any:
        loop = asyncio.get_running_loop()
        return loop if _port_range is None else _PortRangeLoop(loop)


def set_ice_port_range(ports: tuple[int, int] | None) -> None:
    """Bind ICE host candidates to UDP ports ``low..high`` (process-wide); None: any port."""
    global _port_range
    if ports is not None and not 1 <= ports[0] <= ports[1] <= 65535:
        raise ValueError(f"invalid UDP port range {ports[0]}-{ports[1]}")
    _port_range = ports
    aioice.ice.asyncio = _AsyncioInRange()  # type: ignore[attr-defined,assignment]


# --- the placeholder track of a consumer's sender -------------------------------------------


class ForwardTrack(MediaStreamTrack):
    """The track of a consumer's ``RTCRtpSender``: never yields, so aiortc never encodes.

    Its id is the producer's id, so the receiving browser's ``msid`` names the track.
    """

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id

    async def recv(self) -> Frame:
        await asyncio.get_running_loop().create_future()  # the SFU writes RTP itself
        raise MediaStreamError  # pragma: no cover - never reached


def set_sender_stream(sender: RTCRtpSender, stream_id: str, track: ForwardTrack) -> None:
    """Name the stream and track a consumer's sender announces (``a=msid``)."""
    sender.replaceTrack(track)
    sender._stream_id = stream_id


def sender_ssrc(sender: RTCRtpSender) -> int:
    return sender._ssrc


def set_sender_report(
    sender: RTCRtpSender, ntp_timestamp: int, rtp_timestamp: int, packets: int, octets: int
) -> None:
    """Make aiortc's next sender report carry this NTP/RTP pair and these counts."""
    for name, value in zip(
        _SR_FIELDS, (ntp_timestamp, rtp_timestamp, packets, octets), strict=True
    ):
        setattr(sender, name, value)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Codec]:
    return [
        Codec(
            mime_type=c.mimeType,
            clock_rate=c.clockRate,
            payload_type=c.payloadType if c.payloadType is not None else -1,
            channels=c.channels,
            parameters=dict(c.parameters),
        )
        for c in transceiver._codecs
    ]


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[int, str]:
    return {e.id: e.uri for e in transceiver._headerExtensions}


@dataclass(frozen=True)
class OfferedMedia:
    """One m-line of a remote offer: its MID, kind, and direction from the offerer's side."""

    mid: str
    kind: str
    direction: str


def parse_offer(sdp: str) -> list[OfferedMedia]:
    """The m-lines of an offer; ``ValueError`` if aiortc cannot parse it or it is not
    entirely BUNDLEd (checked before anything is applied: aiortc cannot roll back)."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever the bad line provokes
        raise ValueError(f"unparseable SDP: {type(exc).__name__}") from exc
    media = []
    for m in description.media:
        if m.rtp.muxId is None:
            raise ValueError(f"m-line {len(media)} has no a=mid")
        media.append(OfferedMedia(m.rtp.muxId, m.kind, m.direction or "sendrecv"))
    bundled: set[str] = set()
    for group in description.group:
        if group.semantic == "BUNDLE":
            bundled.update(str(item) for item in group.items)
    if any(m.mid not in bundled for m in media):
        raise ValueError("every m-line must be in one BUNDLE group")
    return media


# --- the per-DTLS-transport reach -----------------------------------------------------------


class _ReceiverTap:
    """Stands in for a claimed receiver in RTCP routing: sender reports go to the producer."""

    def __init__(self, receiver: RTCRtpReceiver, sink: RtpSink) -> None:
        self.receiver = receiver
        self.sink = sink

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            self.sink.receive_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)


class _SenderTap:
    """Stands in for a claimed sender in RTCP routing: feedback goes to the consumer."""

    def __init__(self, sender: RTCRtpSender, sink: FeedbackSink) -> None:
        self.sender = sender
        self.sink = sink
        self._ssrc = sender._ssrc

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.sink.receive_keyframe_request()
            elif packet.fmt == PSFB_AFB:  # routed here by an SSRC in the REMB's list
                try:
                    bitrate, ssrcs = parse_remb(packet.fci)
                except ValueError:
                    return  # other application feedback
                self.sink.receive_remb(bitrate, len(ssrcs))
        elif isinstance(packet, RtcpRtpfbPacket):
            if packet.fmt == RTCP_RTPFB_NACK:
                self.sink.receive_nack([seq & 0xFFFF for seq in packet.lost])
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            await self.sender._handle_rtcp_packet(packet)  # aiortc keeps RTT statistics


class _SfuRtpRouter(RtpRouter):
    def __init__(self, previous: RtpRouter, bridge: DtlsBridge) -> None:
        super().__init__()
        self._bridge = bridge
        self.receivers = set(previous.receivers)
        self.senders = dict(previous.senders)
        self.mid_table = dict(previous.mid_table)
        self.ssrc_table = dict(previous.ssrc_table)
        self.payload_type_table = {k: set(v) for k, v in previous.payload_type_table.items()}
        self.taps: dict[object, Any] = {}

    def register_receiver(
        self,
        receiver: Any,
        ssrcs: list[int],
        payload_types: list[int],
        mid: str | None = None,
    ) -> None:
        super().register_receiver(receiver, ssrcs, payload_types, mid)
        self._bridge._registered(receiver, ssrcs)

    def route_rtp(self, packet: RtpPacket) -> Any:
        receiver = super().route_rtp(packet)
        mid = packet.extensions.mid
        if receiver is None and mid is not None:
            receiver = self.mid_table.get(mid)
            if receiver is not None:
                self.ssrc_table[packet.ssrc] = receiver
        return receiver

    def route_rtcp(self, packet: AnyRtcpPacket) -> Any:
        recipients = super().route_rtcp(packet)
        taps = self.taps
        return {taps.get(r, r) for r in recipients}


class DtlsBridge:
    """The SFU's hold on one ``RTCDtlsTransport`` (one per participant with BUNDLE)."""

    def __init__(self, dtls: RTCDtlsTransport, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        self._dtls = dtls
        self._router = _SfuRtpRouter(dtls._rtp_router, self)
        self._fast: dict[int, Callable[[bytes], None]] = {}
        self._receiver_sinks: dict[object, RtpSink] = {}
        self._learnt: dict[object, list[int]] = {}
        self._released: dict[object, set[int]] = {}  # SSRCs of unclaimed receivers: dropped
        self._out: tuple[Any, ...] | None = None
        self._on_connected: list[Callable[[], None]] = []
        self.max_backlog = max_backlog
        # counters (read by stats; never logged per packet)
        self.malformed = 0
        self.unroutable = 0
        self.unclaimed = 0
        self.dropped_not_connected = 0
        self.dropped_backlog = 0
        dtls._rtp_router = self._router
        dtls._handle_rtp_data = self._handle_rtp_data  # type: ignore[method-assign]
        dtls.on("statechange", self._statechange)

    @classmethod
    def of(cls, dtls: RTCDtlsTransport) -> DtlsBridge:
        """The bridge of ``dtls``, installed on first use (idempotent)."""
        bridge = getattr(dtls, "_consultd_bridge", None)
        if bridge is None:
            bridge = cls(dtls)
            dtls._consultd_bridge = bridge  # type: ignore[attr-defined]
        return cast(DtlsBridge, bridge)

    # inbound ---------------------------------------------------------------------------------

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        if len(data) >= 12:
            receive = self._fast.get(_SSRC.unpack_from(data, 8)[0])
            if receive is not None:
                receive(data)
                return
        await self._route_unknown(data, arrival_time_ms)

    async def _route_unknown(self, data: bytes, arrival_time_ms: int) -> None:
        # First packet of an SSRC: aiortc's parse and routing (SSRC, payload type, MID).
        try:
            packet = RtpPacket.parse(data, self._dtls._rtp_header_extensions_map)
        except ValueError:
            self.malformed += 1
            return
        receiver = self._router.route_rtp(packet)
        if receiver is None:
            self.unroutable += 1
            return
        sink = self._receiver_sinks.get(receiver)
        if sink is None:
            # Not (or no longer) claimed: a closed producer, a demoted participant. Never
            # aiortc's path (it would decode); remember the SSRC so it costs a dict lookup.
            self.unclaimed += 1
            self._fast[packet.ssrc] = self._drop
            self._released.setdefault(receiver, set()).add(packet.ssrc)
            return
        self._learn(receiver, packet.ssrc, sink)
        sink.receive_rtp(data)

    def _drop(self, data: bytes) -> None:
        self.unclaimed += 1

    def _learn(self, receiver: object, ssrc: int, sink: RtpSink) -> None:
        for other in self._learnt.values():
            if ssrc in other:
                other.remove(ssrc)
        for released in self._released.values():
            released.discard(ssrc)
        learnt = self._learnt.setdefault(receiver, [])
        if len(learnt) < _MAX_LEARNT_SSRCS:
            learnt.append(ssrc)
            self._fast[ssrc] = sink.receive_rtp
        else:
            self._fast.pop(ssrc, None)

    def _registered(self, receiver: object, ssrcs: list[int]) -> None:
        # aiortc registered a receiver with its signalled SSRCs (a=ssrc): they override any
        # SSRC learnt earlier by payload type, which may have been a guess before the
        # receiver existed.
        sink = self._receiver_sinks.get(receiver)
        for ssrc in ssrcs:
            if sink is not None:
                self._learn(receiver, ssrc, sink)
            else:
                self._fast[ssrc] = self._drop
                self._released.setdefault(receiver, set()).add(ssrc)

    def claim_receiver(self, receiver: RTCRtpReceiver, sink: RtpSink) -> None:
        """Hand this receiver's RTP and sender reports to ``sink`` instead of aiortc."""
        self.release_receiver(receiver)
        for ssrc in self._released.pop(receiver, ()):
            self._fast.pop(ssrc, None)  # routed afresh, to the new sink
        self._receiver_sinks[receiver] = sink
        self._router.taps[receiver] = _ReceiverTap(receiver, sink)

    def release_receiver(self, receiver: RTCRtpReceiver) -> None:
        """Stop forwarding this receiver's RTP; its packets are dropped from now on."""
        self._receiver_sinks.pop(receiver, None)
        self._router.taps.pop(receiver, None)
        learnt = self._learnt.pop(receiver, ())
        if learnt:
            self._released.setdefault(receiver, set()).update(learnt)
            for ssrc in learnt:
                self._fast[ssrc] = self._drop

    def claim_sender(self, sender: RTCRtpSender, sink: FeedbackSink) -> None:
        """Hand RTCP feedback aimed at this sender's SSRC to ``sink``."""
        self._router.senders[sender._ssrc] = sender
        self._router.taps[sender] = _SenderTap(sender, sink)

    def release_sender(self, sender: RTCRtpSender) -> None:
        self._router.taps.pop(sender, None)

    # outbound --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._dtls._state == State.CONNECTED

    def when_connected(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once DTLS is connected (now, if it already is)."""
        if self.connected:
            callback()
        else:
            self._on_connected.append(callback)

    def _statechange(self) -> None:
        self._out = None
        if self.connected:
            callbacks, self._on_connected = self._on_connected, []
            for callback in callbacks:
                callback()
        elif self._dtls._state in (State.CLOSED, State.FAILED):
            self._on_connected.clear()

    def _resolve(self) -> bool:
        dtls = self._dtls
        session = dtls._tx_srtp
        if dtls._state != State.CONNECTED or session is None:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return False
        transport = pair.protocol.transport
        backlog: Any = getattr(transport, "get_write_buffer_size", None)
        try:
            backlog()
        except Exception:  # TURN's transport has no buffer size: aioice bounds it itself
            backlog = None
        self._out = (
            transport.sendto,
            pair.remote_addr,
            session._buffer,
            session._cdata,
            session._srtp[0],
            _srtp_ffi.new("int *"),
            backlog,
            session,  # keeps the buffers above alive
        )
        return True

    def send_rtp(self, data: bytes | bytearray) -> bool:
        """SRTP-protect and send one RTP packet now; False (and counted) if dropped."""
        out = self._out
        if out is None:
            if not self._resolve():
                self.dropped_not_connected += 1
                return False
            out = self._out
        sendto, addr, buffer, cdata, srtp, length, backlog, _ = out  # type: ignore[misc]
        if backlog is not None and backlog() > self.max_backlog:
            self.dropped_backlog += 1
            return False
        n = len(data)
        if n > _MAX_RTP:
            self.malformed += 1
            return False
        buffer[0:n] = data
        length[0] = n
        if _srtp_protect(srtp, cdata, length):
            self.malformed += 1
            return False
        sendto(buffer[0 : length[0]], addr)
        return True

    def send_rtcp(self, data: bytes) -> bool:
        """SRTCP-protect and send one compound RTCP packet now."""
        if self._out is None and not self._resolve():
            self.dropped_not_connected += 1
            return False
        sendto, addr, _, _, _, _, _, session = cast(tuple[Any, ...], self._out)
        try:
            sendto(session.protect_rtcp(data), addr)
        except (pylibsrtp.Error, ValueError):
            return False
        return True


def dtls_transports(transceivers: Iterable[RTCRtpTransceiver]) -> list[RTCDtlsTransport]:
    """The distinct DTLS transports under these transceivers (one with BUNDLE)."""
    seen: dict[int, RTCDtlsTransport] = {}
    for t in transceivers:
        dtls = t.receiver.transport
        seen.setdefault(id(dtls), dtls)
    return list(seen.values())


def aiortc_version() -> str:
    return str(getattr(aiortc, "__version__", "unknown"))
