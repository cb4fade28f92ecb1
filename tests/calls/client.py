"""A participant's browser in the calls tests: socket.io signalling (docs/protocol.md,
"Media") and an aiortc peer connection that publishes a synthetic camera and microphone and
decodes what it receives. The media side is ``tests/media/peers.py``'s, the signalling the
server's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy

from tests.media.peers import ColourTrack, Received, read_frames, spawn, wait_for
from tests.utils import Peer

MEDIA_EVENTS = ("media_negotiate", "media_tracks", "media_speaker", "media_closed")
_SOURCE = {"audio": "microphone", "video": "camera"}


class MediaClient:
    """One participant: their room socket (``peer``) and their peer connection."""

    def __init__(self, peer: Peer, participant_id: str) -> None:
        self.peer = peer
        self.pid = participant_id
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.received: dict[str, Received] = {}
        self.answers: list[str] = []
        self.errors: list[BaseException] = []
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pc.on("track", self._on_track)
        for name in MEDIA_EVENTS:
            peer.sio.on(name, (lambda n: lambda d=None: peer._record(n, d))(name))
        peer.sio.on("media_negotiate", self._on_negotiate)

    # -- signalling --------------------------------------------------------------------------

    async def join(self) -> dict[str, Any]:
        ack: dict[str, Any] = await self.peer.call("media_join")
        return ack

    async def publish(self, seed: int = 0) -> dict[str, Any]:
        self.pc.addTrack(ColourTrack(seed))
        self.pc.addTrack(AudioStreamTrack())
        return await self.negotiate()

    async def negotiate(self, audio: int = 0, video: int = 0) -> dict[str, Any]:
        """Add ``recvonly`` transceivers, offer, apply the answer; return the ack."""
        async with self._lock:
            for _ in range(audio):
                self.pc.addTransceiver("audio", direction="recvonly")
            for _ in range(video):
                self.pc.addTransceiver("video", direction="recvonly")
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            sources = {
                t.mid: _SOURCE[t.kind]
                for t in self.pc.getTransceivers()
                if t.mid is not None and t.direction in ("sendonly", "sendrecv")
            }
            ack: dict[str, Any] = await self.peer.call(
                "media_offer", {"sdp": self.pc.localDescription.sdp, "sources": sources}
            )
            if not ack["ok"]:
                return ack
            self.answers.append(ack["sdp"])
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
            # aiortc as a client must let ICE settle before it applies the next answer
            # (tests/media/peers.py says why); a browser need not.
            try:
                await wait_for(lambda: self.pc.connectionState == "connected", 10, "connected")
            except AssertionError:
                raise AssertionError(self.diagnosis()) from None
            return ack

    def diagnosis(self) -> str:
        """Why the connection is not up (for a failing test's message)."""
        local = self.pc.localDescription.sdp if self.pc.localDescription else ""
        remote = self.pc.remoteDescription.sdp if self.pc.remoteDescription else ""
        return (
            f"not connected: {self.pc.connectionState}, ICE {self.pc.iceConnectionState}, "
            f"signalling {self.pc.signalingState}; offered "
            f"{[x for x in local.splitlines() if 'candidate' in x or 'ufrag' in x]}; answered "
            f"{[x for x in remote.splitlines() if 'candidate' in x or 'ufrag' in x]}"
        )

    def _on_negotiate(self, data: dict[str, int]) -> None:
        self.peer._record("media_negotiate", data)
        self._spawn(self.negotiate(data["audio"], data["video"]))

    # -- what arrives ------------------------------------------------------------------------

    def tracks(self) -> list[dict[str, Any]]:
        """The latest ``media_tracks`` list."""
        lists = self.peer.of("media_tracks")
        return list(lists[-1]["tracks"]) if lists else []

    def frames_from(self, participant_id: str, kind: str) -> int:
        owners = {t["producer_id"]: t["participant_id"] for t in self.tracks()}
        return sum(
            r.frames
            for r in self.received.values()
            if owners.get(r.track_id) == participant_id and r.kind == kind
        )

    def sizes_from(self, participant_id: str) -> set[tuple[int, int]]:
        owners = {t["producer_id"]: t["participant_id"] for t in self.tracks()}
        return {
            s
            for r in self.received.values()
            if owners.get(r.track_id) == participant_id
            for s in r.sizes
        }

    def _on_track(self, track: MediaStreamTrack) -> None:
        received = Received(track.id, track.kind, None)
        self.received[track.id] = received
        self._spawn(read_frames(track, received))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        spawn(coro, self._tasks, self.errors)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
