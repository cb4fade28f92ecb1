"""Light aiortc peers of the media bench, and the logs that give latency and delivery.

A ``MediaPeer`` publishes the replayed clip (``bench.media_clip``) and/or receives, over
any signalling that takes an offer and gives an answer (the consultd SFU over socket.io,
or the ``MediaRelay`` baseline over HTTP). It never decodes: each receiving transceiver is
claimed through the SFU's own bridge (``media._aiortc_bridge.DtlsBridge``), so its
decrypted RTP goes straight to a ``RecvLog`` and aiortc's jitter buffer and decoder stay
idle, as in ``bench/media_forwarding.py``.

Latency without a shared packet id: the SFU rewrites the RTP header (SSRC, sequence
number, timestamp, extensions) but never the payload. The publisher's ``SendLog`` records
a 64-bit hash of each packet's payload and the time it handed it to SRTP; each receiver's
``RecvLog`` records the same hash and the kernel's receive stamp of its datagram. ``match``
joins them after the run (one machine: every process and the kernel share
``CLOCK_REALTIME``). A payload repeats when
the clip loops (Opus; VP8 carries an incrementing picture id), so a receipt matches the
latest send of its hash before it: the loop (seconds) is far longer than any latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import struct
import time
from array import array
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from bench.media_clip import Clip, ReplayTrack
from media import _aiortc_bridge as bridge

#: (offer SDP, source of each sending m-line by MID) -> answer SDP
Signal = Callable[[str, Mapping[str, str]], Awaitable[str]]
IntArray = npt.NDArray[np.int64]

CONNECT_TIMEOUT_S = 20.0
_MAX_ARRIVALS = 4096
_SIOCGSTAMPNS = 0x8907  # linux/sockios.h
_TIMESPEC = struct.Struct("@qq")
_TIMESPEC_BUF = bytes(_TIMESPEC.size)
_SSRC = struct.Struct("!I")
_TIME_BITS = 40  # ns since the run's first event: 18 minutes


def _socket_fd(connection: Any) -> int:
    """The UDP socket of an aioice connection with one local candidate (loopback), or -1."""
    protocols = getattr(connection, "_protocols", [])
    if len(protocols) != 1:
        return -1
    sock = protocols[0].transport.get_extra_info("socket")
    return int(sock.fileno()) if sock is not None else -1


def kernel_stamp_ns(fd: int) -> int:
    """When the kernel received the last datagram read from ``fd`` (``CLOCK_REALTIME``);
    now if it cannot say (the first call only turns stamping on)."""
    if fd >= 0:
        try:
            sec, nsec = _TIMESPEC.unpack(fcntl.ioctl(fd, _SIOCGSTAMPNS, _TIMESPEC_BUF))
        except OSError:
            return time.time_ns()
        return int(sec) * 1_000_000_000 + int(nsec)
    return time.time_ns()


def as_int64(values: array[int]) -> IntArray:
    """A copy of an ``array('q')`` as numpy (a view would stop the array from growing)."""
    return np.frombuffer(values.tobytes(), dtype=np.int64)


class SignalError(Exception):
    """The other side refused an offer (``code`` as in docs/protocol.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def payload_key(data: bytes) -> int:
    """A signed 64-bit hash of an RTP packet's payload (RFC 3550 §5.1: after the CSRCs
    and the header extension, before any padding); 0 for a truncated packet."""
    if len(data) < 12:
        return 0
    b0 = data[0]
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < start + 4:
            return 0
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    end = len(data) - (data[-1] if b0 & 0x20 else 0)
    if end <= start:
        return 0
    digest = hashlib.blake2b(data[start:end], digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


class RecvLog:
    """What one receiving peer got: (payload hash, arrival ns) per RTP packet.

    It is the ``RtpSink`` of the peer's claimed receivers (``receive_rtp`` gets the
    decrypted packet bytes). The arrival time is when the datagram left the socket
    (``tap``), not when aiortc's receive path (ICE queue, SRTP) reached the sink: that path
    is the load generator's, and in a key frame's burst its queue would be counted as the
    server's latency. ``stack_ns`` keeps that client-side delay apart.
    """

    __slots__ = ("_arrivals", "_new_stream", "keys", "packets", "ssrcs", "stack_ns", "times")

    def __init__(self) -> None:
        self.keys = array("q")
        self.times = array("q")
        self.stack_ns = array("q")  # socket -> sink, in this client
        self.packets = 0
        self.ssrcs: set[int] = set()  # one per stream received
        self._arrivals: dict[bytes, int] = {}  # SSRC + sequence number -> socket read ns
        self._new_stream = asyncio.Event()

    def tap(self, transceiver: RTCRtpTransceiver) -> None:
        """Note when each RTP datagram of this transceiver's ICE connection arrived.

        SRTP leaves the header in clear (RFC 3711 §3.1), so SSRC and sequence number tie
        the datagram to the packet the sink gets. The time is the kernel's receive stamp
        of the datagram just read (``SIOCGSTAMPNS``, socket(7)): a stalled client loop
        reads late but does not make the server look slow. A reach into aiortc/aioice
        (pinned): ``RTCIceTransport._connection``, whose ``data_received`` every datagram
        that is not STUN passes through as the socket is read, and its ``_protocols``.
        """
        connection = transceiver.receiver.transport.transport._connection
        if getattr(connection, "_bench_tapped", False):
            return
        connection._bench_tapped = True  # type: ignore[attr-defined]
        arrivals = self._arrivals
        received = connection.data_received
        fds: list[int] = []

        def data_received(data: bytes, component: int) -> None:
            # RTP, not RTCP (RFC 5761 §4: RTCP packet types 192..223 in the second byte)
            if len(data) >= 12 and not 192 <= data[1] <= 223:
                if not fds:
                    fds.append(_socket_fd(connection))
                if len(arrivals) > _MAX_ARRIVALS:
                    arrivals.clear()  # packets the sink never got (unclaimed, not decrypted)
                arrivals[data[8:12] + data[2:4]] = kernel_stamp_ns(fds[0])
            received(data, component)

        connection.data_received = data_received  # type: ignore[method-assign]

    def receive_rtp(self, data: bytes) -> None:
        now = time.time_ns()
        arrived = self._arrivals.pop(data[8:12] + data[2:4], now)
        self.times.append(arrived)
        self.stack_ns.append(now - arrived)
        self.keys.append(payload_key(data))
        self.packets += 1
        if len(data) >= 12:
            ssrc = _SSRC.unpack_from(data, 8)[0]
            if ssrc not in self.ssrcs:
                self.ssrcs.add(ssrc)
                self._new_stream.set()

    def receive_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        pass

    async def wait_streams(self, n: int) -> None:
        """Return once packets of ``n`` streams (SSRCs) have come."""
        while len(self.ssrcs) < n:
            self._new_stream.clear()
            await self._new_stream.wait()

    def count_between(self, t0_ns: int, t1_ns: int) -> int:
        times = as_int64(self.times)
        return int(np.count_nonzero((times >= t0_ns) & (times < t1_ns)))


class SendLog:
    """What one publishing peer sent: (payload hash, send ns) per RTP packet of its media
    SSRCs (retransmissions have other SSRCs and are left out)."""

    __slots__ = ("keys", "ssrcs", "times")

    def __init__(self) -> None:
        self.keys = array("q")
        self.times = array("q")
        self.ssrcs: set[int] = set()

    def record(self, data: bytes) -> None:
        if len(data) >= 12 and int.from_bytes(data[8:12], "big") in self.ssrcs:
            self.times.append(time.time_ns())
            self.keys.append(payload_key(data))

    def tap(self, pc: RTCPeerConnection) -> None:
        """Record every RTP packet ``pc``'s senders hand to SRTP.

        The load generator's one reach into aiortc beyond the SFU's bridge: the sender
        awaits ``RTCDtlsTransport._send_rtp(bytes)`` per packet (aiortc 1.16.0, pinned).
        """
        seen: set[int] = set()
        for t in pc.getTransceivers():
            self.ssrcs.add(bridge.sender_ssrc(t.sender))
            dtls = t.sender.transport
            if id(dtls) in seen:
                continue
            seen.add(id(dtls))
            send = dtls._send_rtp
            record = self.record

            async def tapped(data: bytes, send: Any = send, record: Any = record) -> None:
                record(data)
                await send(data)

            dtls._send_rtp = tapped  # type: ignore[method-assign]


def new_peer_connection() -> RTCPeerConnection:
    """No ICE servers (aiortc would use a public STUN server otherwise), one BUNDLE."""
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


class MediaPeer:
    """One participant's peer connection: publishes the clip if given one, receives what
    it is offered, counts without decoding. The client always offers."""

    def __init__(self, signal: Signal, clip: Clip | None = None) -> None:
        self.signal = signal
        self.pc = new_peer_connection()
        self.clip = clip
        self.recv = RecvLog()
        self.sent = SendLog() if clip is not None else None
        self.negotiations = 0
        self.errors: list[str] = []
        self._sources: dict[int, str] = {}  # transceiver id -> source
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def connect(self, audio: int = 0, video: int = 0) -> None:
        """First offer: the clip's tracks (``sendonly``) and ``audio`` + ``video``
        receiving transceivers; returns once ICE and DTLS are connected."""
        async with self._lock:
            if self.clip is not None:
                camera = ReplayTrack.video(self.clip)
                vt = self.pc.addTransceiver(camera, direction="sendonly")
                at = self.pc.addTransceiver(ReplayTrack.audio(self.clip), direction="sendonly")
                self._sources = {id(vt): "camera", id(at): "microphone"}
                # aiortc answers PLI/FIR by flagging its encoder, which a pre-encoded track
                # has not: the replay jumps to its key frame instead (aiortc 1.16.0).
                vt.sender._send_keyframe = camera.request_keyframe  # type: ignore[method-assign]
            self._add_receivers(audio, video)
            await self._offer()
            if self.sent is not None:
                self.sent.tap(self.pc)

    def negotiation_needed(self, audio: int, video: int) -> None:
        """The other side asks for a new offer with this many more receiving m-lines."""
        if self._closed:
            return
        task = asyncio.ensure_future(self._renegotiate(audio, video))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renegotiate(self, audio: int, video: int) -> None:
        try:
            async with self._lock:
                if self._closed:
                    return
                self._add_receivers(audio, video)
                await self._offer()
        except (SignalError, ConnectionError, TimeoutError) as exc:
            self.errors.append(f"renegotiate_{getattr(exc, 'code', type(exc).__name__)}")

    def _add_receivers(self, audio: int, video: int) -> None:
        for kind, n in (("audio", audio), ("video", video)):
            for _ in range(max(0, n)):
                t = self.pc.addTransceiver(kind, direction="recvonly")
                self._claim(t)

    def _claim(self, t: RTCRtpTransceiver) -> None:
        bridge.DtlsBridge.of(t.receiver.transport).claim_receiver(t.receiver, self.recv)
        self.recv.tap(t)

    async def _offer(self) -> None:
        pc = self.pc
        await pc.setLocalDescription(await pc.createOffer())
        sources = {
            t.mid: self._sources[id(t)]
            for t in pc.getTransceivers()
            if t.mid is not None and id(t) in self._sources
        }
        answer = await self.signal(pc.localDescription.sdp, sources)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self.negotiations += 1
        # aiortc as a client races when an answer lands while its connect task still waits
        # for ICE from the previous one: let each connection settle before the next offer.
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise ConnectionError(f"peer connection {pc.connectionState}")
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)


# --- after the run: join sends and receipts ----------------------------------------------


@dataclass
class Matched:
    """Receipts joined to sends: latency per matched receipt, which send it matched."""

    latency_ns: IntArray
    send_ns: IntArray  # the matched send's time, per matched receipt
    send_index: IntArray  # index into the sends, per matched receipt
    receiver: IntArray  # which receiver, per matched receipt
    unmatched: int  # receipts whose payload no publisher sent (e.g. retransmissions)


def match(
    send_keys: IntArray,
    send_ns: IntArray,
    recv_keys: IntArray,
    recv_ns: IntArray,
    recv_owner: IntArray,
) -> Matched:
    """Match each receipt to the latest send of the same payload hash at or before it."""
    empty = np.zeros(0, dtype=np.int64)
    if send_keys.size == 0 or recv_keys.size == 0:
        return Matched(empty, empty, empty, empty, int(recv_keys.size))
    unique = np.unique(send_keys)
    s_rank = np.searchsorted(unique, send_keys)
    r_rank = np.searchsorted(unique, recv_keys)
    known = (r_rank < unique.size) & (unique[np.minimum(r_rank, unique.size - 1)] == recv_keys)
    t0 = int(min(send_ns.min(), recv_ns.min()))
    mask = (1 << _TIME_BITS) - 1
    s_comb = (s_rank.astype(np.int64) << _TIME_BITS) | ((send_ns - t0) & mask)
    r_comb = (r_rank.astype(np.int64) << _TIME_BITS) | ((recv_ns - t0) & mask)
    order = np.argsort(s_comb, kind="stable")
    s_sorted = s_comb[order]
    pos = np.searchsorted(s_sorted, r_comb, side="right") - 1
    ok = known & (pos >= 0)
    pos_ok = np.where(ok, pos, 0)
    ok &= (s_sorted[pos_ok] >> _TIME_BITS) == r_rank
    index = order[pos_ok[ok]]
    return Matched(
        latency_ns=recv_ns[ok] - send_ns[index],
        send_ns=send_ns[index],
        send_index=index.astype(np.int64),
        receiver=recv_owner[ok].astype(np.int64),
        unmatched=int(recv_keys.size - np.count_nonzero(ok)),
    )


def first_receipts(m: Matched) -> npt.NDArray[np.bool_]:
    """Mask of each (receiver, send) pair's first receipt (a retransmission repeats one)."""
    if m.send_index.size == 0:
        return np.zeros(0, dtype=bool)
    pair = m.receiver * (int(m.send_index.max()) + 1) + m.send_index
    _, first = np.unique(pair, return_index=True)
    mask = np.zeros(pair.size, dtype=bool)
    mask[first] = True
    return mask
