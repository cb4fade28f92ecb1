"""``Transport``: one participant's RTCPeerConnection with the server (BUNDLE, unified plan).

Signalling shape: **the client always offers, the server always answers.** aiortc as an
answerer keeps the offerer's payload types and header-extension ids, so one BUNDLE keeps one
numbering even with a browser on the other side, and there is no glare to resolve.

* To publish, the client adds its tracks and offers; each m-line the client sends on becomes
  a ``Producer`` (refused with ``PublishNotAllowedError`` for observers or past the room's
  publisher cap, before anything is applied).
* Every m-line the client *receives* on (``recvonly`` / ``sendrecv``) is a slot for a
  ``Consumer``. When the router gives this transport a consumer and no slot is free, the
  transport calls ``on_negotiation_needed(NegotiationRequest(audio=a, video=v))``: the client
  adds that many ``recvonly`` transceivers and offers again; the answer binds consumers to
  slots (``sendonly``), announces ``a=msid:<publisher participant id> <producer id>`` and the
  consumer's SSRC. A slot whose consumer closed goes ``inactive`` in the next answer and is
  reused by the next consumer of its kind (the callback fires with zero counts for that).

The server's ``RTCConfiguration`` always carries the configured ICE servers (empty by
default), so aiortc never falls back to a public STUN server.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InternalError, InvalidAccessError, OperationError
from aiortc.exceptions import InvalidStateError as AiortcInvalidStateError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import candidate_from_sdp

from . import _aiortc_bridge as bridge
from .consumer import Consumer
from .errors import InvalidStateError, NegotiationError, PublishNotAllowedError
from .producer import Producer

if TYPE_CHECKING:
    from .router import Router

logger = logging.getLogger(__name__)

MEDIA_KINDS = ("audio", "video")
#: What a producer carries; the default of a kind is its first.
SOURCES = ("microphone", "camera", "screen")
_DEFAULT_SOURCE = {"audio": "microphone", "video": "camera"}
_SDP_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`{|}~]{1,64}$")
_ids = itertools.count(1)


@dataclass(frozen=True)
class NegotiationRequest:
    """Ask the client to offer again, first adding this many ``recvonly`` transceivers."""

    audio: int = 0
    video: int = 0


class _Slot:
    """An m-line the client receives on, and the consumer bound to it, if any."""

    __slots__ = ("consumer", "kind", "mid", "start_at", "transceiver")

    def __init__(self, mid: str, kind: str, transceiver: RTCRtpTransceiver) -> None:
        self.mid = mid
        self.kind = kind
        self.transceiver = transceiver
        self.consumer: Consumer | None = None
        self.start_at: tuple[int, int] | None = None  # keeps the SSRC's numbering going


def _sends(direction: str) -> bool:
    return direction in ("sendonly", "sendrecv")


def _receives(direction: str) -> bool:
    return direction in ("recvonly", "sendrecv")


class Transport:
    """One participant's peer connection with the room's SFU; create with ``Router``."""

    def __init__(
        self,
        router: Router,
        participant_id: str,
        *,
        ice_servers: Sequence[RTCIceServer] = (),
        can_publish: bool = True,
        on_negotiation_needed: Callable[[NegotiationRequest], None] | None = None,
        max_backlog: int = bridge.DEFAULT_MAX_BACKLOG,
    ) -> None:
        self.router = router
        self.participant_id = participant_id
        #: The msid stream id this participant's tracks carry to the others.
        self.stream_id = participant_id if _SDP_TOKEN.match(participant_id) else f"p{next(_ids)}"
        self.can_publish = can_publish
        self.on_negotiation_needed = on_negotiation_needed
        self.closed = False
        self._max_backlog = max_backlog
        self._pc = RTCPeerConnection(
            RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self._lock = asyncio.Lock()
        self._bridge: bridge.DtlsBridge | None = None
        self._producers: dict[str, Producer] = {}  # by MID
        self._slots: dict[str, _Slot] = {}  # by MID, in m-line order
        self._pending: list[Consumer] = []  # consumers waiting for a slot
        self._sections: list[tuple[str, str]] = []  # (mid, kind) of the negotiated m-lines
        self._sources: dict[str, str] = {}  # by MID, as the client named them
        self._dirty = False  # an answer would differ from the last one
        self._check_scheduled = False

    # --- what the signalling layer calls ---------------------------------------------------

    @property
    def producers(self) -> list[Producer]:
        return list(self._producers.values())

    @property
    def consumers(self) -> list[Consumer]:
        """Consumers bound to an m-line, then those waiting for one."""
        bound = [s.consumer for s in self._slots.values() if s.consumer is not None]
        return bound + list(self._pending)

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState

    async def apply_offer(self, sdp: str, sources: Mapping[str, str] | None = None) -> str:
        """Apply the client's offer: producers, slots and consumers follow; return the answer.

        ``sources`` names what each sending m-line carries, by MID (``SOURCES``: camera,
        microphone, screen); a sending m-line not named gets its kind's default.
        """
        async with self._lock:
            if self.closed:
                raise InvalidStateError("transport is closed")
            if self._pc.signalingState != "stable":
                raise InvalidStateError("an offer is already being applied")
            try:
                offered = bridge.parse_offer(sdp)
            except ValueError as exc:
                raise NegotiationError(str(exc)) from exc
            sections = [(m.mid, m.kind) for m in offered]
            if not sections or sections[: len(self._sections)] != self._sections:
                # aiortc cannot roll back and breaks on a removed m-line: refuse up front
                raise NegotiationError("m-lines may be added, never removed or reordered")
            media = [m for m in offered if m.kind in MEDIA_KINDS]
            named = dict(sources or {})
            if any(v not in SOURCES for v in named.values()):
                raise NegotiationError(f"a source is one of {', '.join(SOURCES)}")
            self._sources.update(named)
            if any(_sends(m.direction) and m.mid not in self._producers for m in media):
                if not self.can_publish:
                    raise PublishNotAllowedError("this participant may not publish")
                self.router._check_publisher(self)
            try:
                await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except (
                ValueError,
                KeyError,
                IndexError,
                InternalError,
                InvalidAccessError,
                OperationError,
                AiortcInvalidStateError,
            ) as exc:
                raise NegotiationError(f"offer refused: {exc}") from exc
            self._install_bridge()
            started, stopped = self._reconcile(media)
            try:
                answer = await self._pc.createAnswer()
                await self._pc.setLocalDescription(answer)
            except (ValueError, InternalError, OperationError, AiortcInvalidStateError) as exc:
                raise NegotiationError(f"answer failed: {exc}") from exc
            self._dirty = False
            self._sections = sections
            local = self._pc.localDescription.sdp
        for producer in stopped:
            producer.close()
        for producer in started:
            self.router._publish(producer)
        self._schedule_check()
        return local

    async def add_ice_candidate(
        self, candidate: str, sdp_mid: str | None = None, sdp_mline_index: int | None = None
    ) -> None:
        """Add a trickled remote candidate (``candidate:...`` or ``a=candidate:...``)."""
        if self.closed:
            raise InvalidStateError("transport is closed")
        text = candidate.removeprefix("a=").removeprefix("candidate:")
        if not text:
            return  # end of candidates
        try:
            parsed = candidate_from_sdp(text)
        except Exception as exc:  # aiortc's parser asserts, indexes, converts: any of it
            raise NegotiationError("malformed ICE candidate") from exc
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        try:
            await self._pc.addIceCandidate(parsed)
        except (ValueError, AiortcInvalidStateError) as exc:
            raise NegotiationError(f"ICE candidate refused: {exc}") from exc

    async def close(self) -> None:
        """Close this participant's producers (and every consumer of them), its consumers and
        the peer connection (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for producer in list(self._producers.values()):
            producer.close()
        for consumer in self.consumers:
            consumer.close()
        self.router._transport_closed(self)
        await self._pc.close()

    def stats(self) -> dict[str, object]:
        b = self._bridge
        return {
            "participant_id": self.participant_id,
            "connection_state": self._pc.connectionState,
            "producers": [p.stats() for p in self._producers.values()],
            "consumers": [c.stats() for c in self.consumers],
            "dropped_backlog": b.dropped_backlog if b else 0,
            "dropped_not_connected": b.dropped_not_connected if b else 0,
            "malformed": b.malformed if b else 0,
        }

    # --- negotiation internals -------------------------------------------------------------

    def _install_bridge(self) -> None:
        transports = bridge.dtls_transports(self._pc.getTransceivers())
        if len(transports) != 1:
            raise NegotiationError("the offer must BUNDLE every m-line")
        if self._bridge is None:
            self._bridge = bridge.DtlsBridge.of(transports[0])
            self._bridge.max_backlog = self._max_backlog

    def _reconcile(self, media: list[bridge.OfferedMedia]) -> tuple[list[Producer], list[Producer]]:
        """Producers and slots from the offered directions; bind pending consumers."""
        assert self._bridge is not None
        transceivers = {t.mid: t for t in self._pc.getTransceivers()}
        started: list[Producer] = []
        stopped: list[Producer] = []
        for m in media:
            t = transceivers.get(m.mid)
            if t is None:
                continue
            producer = self._producers.get(m.mid)
            if _sends(m.direction):
                if producer is None:
                    producer = self._create_producer(m.mid, m.kind, t)
                    self._producers[m.mid] = producer
                    started.append(producer)
                else:
                    producer.update_codecs(
                        bridge.negotiated_codecs(t), bridge.negotiated_extensions(t)
                    )
            elif producer is not None:
                stopped.append(self._producers.pop(m.mid))
            slot = self._slots.get(m.mid)
            if _receives(m.direction):
                if slot is None:
                    self._slots[m.mid] = _Slot(m.mid, m.kind, t)
                elif slot.consumer is not None:
                    slot.consumer.update_negotiation(
                        bridge.negotiated_codecs(t), bridge.negotiated_extensions(t)
                    )
            elif slot is not None:
                del self._slots[m.mid]
                if slot.consumer is not None:
                    consumer = slot.consumer
                    self._unbind(slot)
                    self._pending.append(consumer)
        for consumer in list(self._pending):
            free = next(
                (s for s in self._slots.values() if s.consumer is None and s.kind == consumer.kind),
                None,
            )
            if free is not None:
                self._pending.remove(consumer)
                self._bind(free, consumer)
        for mid, t in transceivers.items():
            slot = self._slots.get(mid or "")
            send = slot is not None and slot.consumer is not None
            recv = mid in self._producers
            t.direction = ("inactive", "recvonly", "sendonly", "sendrecv")[2 * send + recv]
        return started, stopped

    def _create_producer(self, mid: str, kind: str, t: RTCRtpTransceiver) -> Producer:
        assert self._bridge is not None
        producer = Producer(
            producer_id=f"{self.stream_id}-{kind[0]}{next(_ids)}",
            participant_id=self.participant_id,
            kind=kind,
            source=self._sources.get(mid, _DEFAULT_SOURCE[kind]),
            mid=mid,
            codecs=bridge.negotiated_codecs(t),
            extensions=bridge.negotiated_extensions(t),
            send_rtcp=self._bridge.send_rtcp,
            rtcp_ssrc=bridge.sender_ssrc(t.sender),
            owner=self,
        )
        self._bridge.claim_receiver(t.receiver, producer)
        return producer

    def _bind(self, slot: _Slot, consumer: Consumer) -> None:
        assert self._bridge is not None
        t = slot.transceiver
        sender = t.sender
        slot.consumer = consumer
        producer = consumer.producer
        owner_stream = self.router._stream_id_of(producer)
        bridge.set_sender_stream(sender, owner_stream, bridge.ForwardTrack(slot.kind, producer.id))

        def set_report(ntp: int, rtp_ts: int, packets: int, octets: int) -> None:
            bridge.set_sender_report(sender, ntp, rtp_ts, packets, octets)

        consumer._bind(
            mid=slot.mid,
            ssrc=bridge.sender_ssrc(sender),
            codecs=bridge.negotiated_codecs(t),
            extensions=bridge.negotiated_extensions(t),
            send=self._bridge.send_rtp,
            set_report=set_report,
            start_at=slot.start_at,
        )
        self._bridge.claim_sender(sender, consumer)
        self._bridge.when_connected(consumer._activate)

    def _unbind(self, slot: _Slot) -> None:
        consumer = slot.consumer
        if consumer is None:
            return
        slot.consumer = None
        slot.start_at = consumer._unbind() or slot.start_at
        if self._bridge is not None:
            self._bridge.release_sender(slot.transceiver.sender)
        self._dirty = True

    def _schedule_check(self) -> None:
        if not self._check_scheduled and not self.closed:
            self._check_scheduled = True
            asyncio.get_running_loop().call_soon(self._negotiation_check)

    def _negotiation_check(self) -> None:
        self._check_scheduled = False
        if self.closed or self._lock.locked() or self.on_negotiation_needed is None:
            return  # apply_offer checks again when it is done
        if not self._pending and not self._dirty:
            return
        free = {k: 0 for k in MEDIA_KINDS}
        for slot in self._slots.values():
            if slot.consumer is None:
                free[slot.kind] += 1
        wanted = {k: 0 for k in MEDIA_KINDS}
        for consumer in self._pending:
            wanted[consumer.kind] += 1
        self._dirty = False
        self.on_negotiation_needed(
            NegotiationRequest(
                audio=max(0, wanted["audio"] - free["audio"]),
                video=max(0, wanted["video"] - free["video"]),
            )
        )

    # --- called by Router, Producer and Consumer --------------------------------------------

    def _add_consumer(self, producer: Producer) -> Consumer:
        """The router gives this participant a consumer of ``producer``."""
        consumer = Consumer(producer, self, f"{producer.id}>{self.stream_id}")
        self._pending.append(consumer)
        self._schedule_check()
        return consumer

    def _consumer_closed(self, consumer: Consumer) -> None:
        if consumer in self._pending:
            self._pending.remove(consumer)
            return
        for slot in self._slots.values():
            if slot.consumer is consumer:
                self._unbind(slot)
                self._schedule_check()
                return

    def _producer_closed(self, producer: Producer) -> None:
        if self._producers.get(producer.mid) is producer:
            del self._producers[producer.mid]
        t = next((t for t in self._pc.getTransceivers() if t.mid == producer.mid), None)
        if t is not None and self._bridge is not None:
            self._bridge.release_receiver(t.receiver)
        self.router._producer_closed(producer)
