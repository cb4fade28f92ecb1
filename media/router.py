"""``Router``: one per room; its transports, their producers, and the consumers fanned out.

Lifecycle (idempotent ``close()`` everywhere, parents cascade to children):
``Router.close`` -> every ``Transport.close`` -> its producers' ``Producer.close`` -> every
``Consumer.close`` of them (on the other transports, which then renegotiate the freed slots
to ``inactive``) -> its own consumers -> ``RTCPeerConnection.close`` (UDP ports released).

While the room has producers, a timer (``TICK``, 300 ms; never per packet) does the room-wide
work: the active speaker from the microphones' audio levels (``activespeaker.py``), and each
video publisher's target bitrate, sent to it as REMB (``bitrate.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from aiortc import RTCIceServer

from ._aiortc_bridge import DEFAULT_MAX_BACKLOG
from .activespeaker import ActiveSpeakerDetector
from .bitrate import allocate, target_bitrate
from .errors import InvalidStateError, PublishNotAllowedError
from .producer import Producer
from .transport import NegotiationRequest, Transport

logger = logging.getLogger(__name__)

#: Seconds between two rounds of active-speaker detection and bitrate targets.
TICK = 0.3


class Router:
    """The SFU of one room: every participant's producers go to every other participant."""

    def __init__(
        self,
        room_id: str,
        *,
        ice_servers: Sequence[RTCIceServer] = (),
        max_publishers: int | None = None,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_bitrate: int | None = None,
        on_producers_changed: Callable[[], None] | None = None,
        on_active_speaker: Callable[[str | None], None] | None = None,
    ) -> None:
        """``max_bitrate``: the room's total publisher bitrate cap, in bits/s (None: none).
        ``on_producers_changed``: a producer was added or closed (read ``producers``).
        ``on_active_speaker``: the loudest participant changed (their id; None: silence).
        """
        self.room_id = room_id
        self.max_bitrate = max_bitrate
        self.on_producers_changed = on_producers_changed
        self.on_active_speaker = on_active_speaker
        self.ice_servers = tuple(ice_servers)
        self.max_publishers = max_publishers
        self.max_backlog = max_backlog
        self.closed = False
        self._transports: dict[str, Transport] = {}
        self._producers: dict[str, Producer] = {}
        self._speakers = ActiveSpeakerDetector()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def transports(self) -> Mapping[str, Transport]:
        """Open transports by participant id."""
        return dict(self._transports)

    @property
    def producers(self) -> Mapping[str, Producer]:
        """Open producers by producer id."""
        return dict(self._producers)

    @property
    def active_speaker(self) -> str | None:
        """The participant speaking now, as last reported to ``on_active_speaker``."""
        return self._speakers.speaker

    def create_transport(
        self,
        participant_id: str,
        *,
        can_publish: bool = True,
        on_negotiation_needed: Callable[[NegotiationRequest], None] | None = None,
    ) -> Transport:
        """A participant's transport; it gets a consumer of every producer already here."""
        if self.closed:
            raise InvalidStateError("router is closed")
        if participant_id in self._transports:
            raise InvalidStateError("participant already has a transport")
        transport = Transport(
            self,
            participant_id,
            ice_servers=self.ice_servers,
            can_publish=can_publish,
            on_negotiation_needed=on_negotiation_needed,
            max_backlog=self.max_backlog,
        )
        self._transports[participant_id] = transport
        for producer in self._producers.values():
            transport._add_consumer(producer)
        return transport

    async def close_transport(self, participant_id: str) -> None:
        """The participant left or was removed: their media stops at once."""
        transport = self._transports.get(participant_id)
        if transport is not None:
            await transport.close()

    async def set_can_publish(self, participant_id: str, can_publish: bool) -> None:
        """Role change; demotion closes the participant's producers."""
        transport = self._transports.get(participant_id)
        if transport is None:
            return
        transport.can_publish = can_publish
        if not can_publish:
            for producer in transport.producers:
                producer.close()

    async def close(self) -> None:
        """The room ended: close every transport (idempotent)."""
        self.closed = True
        self._stop_timer()
        for transport in list(self._transports.values()):
            await transport.close()

    def stats(self) -> dict[str, object]:
        return {
            "room_id": self.room_id,
            "active_speaker": self._speakers.speaker,
            "transports": [t.stats() for t in self._transports.values()],
        }

    # --- called by Transport ----------------------------------------------------------------

    def _check_publisher(self, transport: Transport) -> None:
        if self.max_publishers is None or transport.producers:
            return
        publishers = sum(1 for t in self._transports.values() if t.producers)
        if publishers >= self.max_publishers:
            raise PublishNotAllowedError("the room has its maximum number of publishers")

    def _publish(self, producer: Producer) -> None:
        if producer.closed:
            return
        self._producers[producer.id] = producer
        for transport in self._transports.values():
            if transport.participant_id != producer.participant_id and not transport.closed:
                transport._add_consumer(producer)
        if self._timer is None and not self.closed:
            self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)
        if self.on_producers_changed is not None:
            self.on_producers_changed()

    def _producer_closed(self, producer: Producer) -> None:
        if self._producers.pop(producer.id, None) is None:
            return
        if not self._producers:
            self._stop_timer()
            if self._speakers.reset():
                self._speaker_changed()
        if self.on_producers_changed:
            self.on_producers_changed()

    def _transport_closed(self, transport: Transport) -> None:
        if self._transports.get(transport.participant_id) is transport:
            del self._transports[transport.participant_id]

    def _stream_id_of(self, producer: Producer) -> str:
        transport = self._transports.get(producer.participant_id)
        return transport.stream_id if transport is not None else producer.participant_id

    # --- the room's timer -------------------------------------------------------------------

    def _tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)
        now = time.monotonic()
        self._update_speaker()
        self._update_bitrates(now)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _update_speaker(self) -> None:
        # A microphone's level, not a shared screen's sound: that is no one speaking.
        levels: dict[str, float | None] = {}
        for producer in self._producers.values():
            if producer.kind != "audio":
                continue
            level = producer.take_audio_level()
            if producer.source != "microphone":
                continue
            previous = levels.get(producer.participant_id)
            if previous is None or (level is not None and level > previous):
                levels[producer.participant_id] = level
        if self._speakers.update(levels):
            self._speaker_changed()

    def _speaker_changed(self) -> None:
        if self.on_active_speaker is None:
            return
        try:
            self.on_active_speaker(self._speakers.speaker)
        except Exception:  # the signalling layer's bug must not stop the room's timer
            logger.exception("on_active_speaker failed in room %s", self.room_id)

    def _update_bitrates(self, now: float) -> None:
        video = [p for p in self._producers.values() if p.kind == "video"]
        if not video:
            return
        audio = len(self._producers) - len(video)
        allocation = allocate([(p.id, p.source) for p in video], audio, self.max_bitrate)
        for producer in video:
            target = target_bitrate(allocation[producer.id], producer.receiver_estimate(now))
            producer.send_remb(target, now)
