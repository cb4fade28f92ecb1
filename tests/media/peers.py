"""aiortc client peers for the SFU tests, in the test process, on loopback.

Each client publishes a synthetic camera (320x240 frames of a solid colour that changes) and
microphone, answers the server's negotiation requests by adding ``recvonly`` transceivers and
offering again (the signalling the lead wires over socket.io), and decodes what it receives.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import av
import numpy as np
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy

from media import NegotiationRequest, Router, Transport

WIDTH, HEIGHT = 320, 240


class ColourTrack(VideoStreamTrack):
    """320x240 frames of one solid colour, a different colour every frame."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._frames = [
            np.full((HEIGHT, WIDTH, 3), ((seed * 70 + i * 8) % 256, i * 16 % 256, 128), np.uint8)
            for i in range(16)
        ]
        self._n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self._frames[self._n % 16], format="rgb24")
        self._n += 1
        frame.pts = pts
        frame.time_base = time_base
        return frame


@dataclass
class Received:
    """What one client decoded from one remote track."""

    track_id: str
    kind: str
    participant: str | None
    frames: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    first_frame_at: float | None = None


def spawn(coro: Awaitable[Any], tasks: set[asyncio.Task[Any]], errors: list[BaseException]) -> None:
    """Run ``coro`` as a task kept in ``tasks`` until done; its exception goes to ``errors``
    (a test then fails on it instead of the loop logging it)."""
    task = asyncio.ensure_future(coro)
    tasks.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            errors.append(t.exception())  # type: ignore[arg-type]

    task.add_done_callback(done)


async def read_frames(track: MediaStreamTrack, received: Received) -> None:
    """Decode ``track`` until it ends, counting frames and video sizes into ``received``."""
    try:
        while True:
            frame = await track.recv()
            if received.first_frame_at is None:
                received.first_frame_at = time.monotonic()
            received.frames += 1
            if isinstance(frame, av.VideoFrame):
                received.sizes.add((frame.width, frame.height))
    except MediaStreamError:
        pass


class ClientPeer:
    """One participant's browser, played by aiortc."""

    def __init__(self, name: str, router: Router, *, can_publish: bool = True) -> None:
        self.name = name
        self.router = router
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.transport: Transport = router.create_transport(
            name, can_publish=can_publish, on_negotiation_needed=self._negotiation_needed
        )
        self.received: dict[str, Received] = {}
        self.negotiations = 0
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.errors: list[BaseException] = []
        self.pc.on("track", self._on_track)

    async def publish(self, seed: int = 0) -> None:
        self.pc.addTrack(ColourTrack(seed))
        self.pc.addTrack(AudioStreamTrack())
        await self.negotiate()

    async def negotiate(self, request: NegotiationRequest | None = None) -> None:
        """Add the transceivers asked for, offer, apply the SFU's answer."""
        async with self._lock:
            if request is not None:
                for _ in range(request.audio):
                    self.pc.addTransceiver("audio", direction="recvonly")
                for _ in range(request.video):
                    self.pc.addTransceiver("video", direction="recvonly")
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            answer = await self.transport.apply_offer(self.pc.localDescription.sdp)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            self.negotiations += 1
            # aiortc (as a client) races when an answer lands while its connect task still
            # waits for ICE from the previous one (IndexError in __remoteRtp): a browser
            # does not, but this client lets its first connection settle before the next.
            await wait_for(lambda: self.pc.connectionState == "connected", 10, "connected")

    def _negotiation_needed(self, request: NegotiationRequest) -> None:
        self._spawn(self.negotiate(request))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        spawn(coro, self._tasks, self.errors)

    def _on_track(self, track: MediaStreamTrack) -> None:
        producer = self.router.producers.get(track.id)  # the msid track id is the producer id
        received = Received(track.id, track.kind, producer.participant_id if producer else None)
        self.received[track.id] = received
        self._spawn(read_frames(track, received))

    def frames_from(self, participant: str, kind: str) -> int:
        """Frames decoded from ``participant``'s track of ``kind``."""
        return sum(
            r.frames
            for r in self.received.values()
            if r.participant == participant and r.kind == kind
        )

    def sizes_from(self, participant: str) -> set[tuple[int, int]]:
        return {
            size for r in self.received.values() if r.participant == participant for size in r.sizes
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


async def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll until ``predicate()``; return the seconds it took; fail with ``what``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - start


@dataclass
class CodecCounter:
    """Every decoder and encoder aiortc creates while installed, with who created it."""

    decoders: list[Any] = field(default_factory=list)  # the decoder thread's output queue
    encoders: list[Any] = field(default_factory=list)  # the RTCRtpSender


@contextmanager
def count_codecs() -> Iterator[CodecCounter]:
    counter = CodecCounter()
    get_decoder = aiortc.rtcrtpreceiver.get_decoder
    get_encoder = aiortc.rtcrtpsender.get_encoder

    def counting_decoder(codec: Any) -> Any:
        counter.decoders.append(sys._getframe(1).f_locals.get("output_q"))
        return get_decoder(codec)

    def counting_encoder(codec: Any) -> Any:
        counter.encoders.append(sys._getframe(1).f_locals.get("self"))
        return get_encoder(codec)

    aiortc.rtcrtpreceiver.get_decoder = counting_decoder  # type: ignore[assignment]
    aiortc.rtcrtpsender.get_encoder = counting_encoder  # type: ignore[assignment]
    try:
        yield counter
    finally:
        aiortc.rtcrtpreceiver.get_decoder = get_decoder
        aiortc.rtcrtpsender.get_encoder = get_encoder


def client_receiver_queues(clients: list[ClientPeer]) -> set[int]:
    """ids of the frame queues of the clients' receiving tracks (a decoder's output_q)."""
    return {
        id(t.receiver.track._queue)  # type: ignore[attr-defined]
        for c in clients
        for t in c.pc.getTransceivers()
        if t.receiver.track is not None
    }


async def client_packet_counts(client: ClientPeer) -> tuple[int, int]:
    """(RTP packets the client sent, RTP packets it received).

    Received packets are summed per SSRC from each receiver's statistics: aiortc's
    ``getStats`` keys inbound-rtp by receiver, so a receiver that once saw a second SSRC
    (early media routed by payload type) would report only one of them.
    """
    stats = await client.pc.getStats()
    sent = sum(getattr(s, "packetsSent", 0) for s in stats.values() if s.type == "outbound-rtp")
    received = sum(
        stream.packets_received
        for t in client.pc.getTransceivers()
        for stream in t.receiver._RTCRtpReceiver__remote_streams.values()  # type: ignore[attr-defined]
    )
    return sent, received
