"""Calls: each room's SFU (``media.Router``), its participants' transports, their tracks.

``CallService`` is what the socket.io events call (``media_join``, ``media_offer``, ...),
after ``rooms.policy`` says who may. ``RoomCalls`` is the room's component: created on the
first ``media_join``, it owns the router, and the room's lifecycle reaches it through the
component hooks (a participant removed, gone for good, demoted; the room ended or unloaded).

Signalling is docs/protocol.md, "Media": the client always offers, the server answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiortc import RTCIceServer
from sqlalchemy.ext.asyncio import AsyncConnection

from consultd.calls.config import MediaConfig
from consultd.calls.sdp import announce_ip, dtls_fingerprints, ice_credentials
from consultd.errors import (
    MediaInvalidState,
    MediaNegotiationFailed,
    MediaPublishNotAllowed,
)
from consultd.ratelimit import RateLimiter
from consultd.rooms.notifier import Notifier
from consultd.rooms.policy import Action, authorize, role_may
from consultd.rooms.room import Participant, Room, State
from consultd.store.unit import Store
from media import (
    InvalidStateError,
    MediaError,
    NegotiationError,
    NegotiationRequest,
    PublishNotAllowedError,
    Router,
    Transport,
    set_ice_host_addresses,
    set_ice_port_range,
)

log = logging.getLogger(__name__)

COMPONENT = "media"
#: Remote ICE candidates one transport accepts over its life (a browser trickles a handful:
#: host, mDNS, srflx, relay per interface); past it each one is refused, never applied.
MAX_REMOTE_CANDIDATES = 64

_REFUSALS: tuple[tuple[type[MediaError], type[Exception]], ...] = (
    (PublishNotAllowedError, MediaPublishNotAllowed),
    (InvalidStateError, MediaInvalidState),
    (NegotiationError, MediaNegotiationFailed),
)


@contextmanager
def _refusals() -> Iterator[None]:
    """``media.errors`` -> the ConsultdError of the same code (the ack's error)."""
    try:
        yield
    except MediaError as exc:
        mapped = next((c for m, c in _REFUSALS if isinstance(exc, m)), MediaNegotiationFailed)
        raise mapped(str(exc) or "refused") from None


@dataclass(slots=True)
class _Member:
    """A participant who joined the room's media."""

    transport: Transport
    #: An offer was answered (before that, negotiation requests wait for the first offer).
    offered: bool = False
    candidates: int = 0
    #: The ICE username fragments and DTLS fingerprints of the first offer.
    ufrags: frozenset[str] = frozenset()
    fingerprints: frozenset[str] = frozenset()
    #: The last ``media_negotiate`` sent and not yet followed by an offer (sent again on
    #: reconnect).
    negotiate: NegotiationRequest | None = None


class RoomCalls:
    """A room's media: its router, who joined, mute state, the tracks list, the speaker."""

    def __init__(self, service: CallService, room: Room) -> None:
        self.service = service
        self.room = room
        self.notifier = service.notifier
        self.router: Router | None = None
        self.members: dict[str, _Member] = {}
        #: (participant id, source) -> muted, as the participant said with ``media_mute``.
        self.muted: dict[tuple[str, str], bool] = {}
        self.speaker: str | None = None
        self.closed = False
        self._producers: set[str] = set()
        self._tracks_due = False

    # -- the router ---------------------------------------------------------------------------

    def ensure_router(self) -> Router:
        if self.router is None:
            c = self.service.config
            # The SFU's own peer connections get the STUN servers only (server-reflexive
            # candidates behind a NAT without an announced address). A TURN allocation per
            # participant would cost a relay each and hold every answer until allocated;
            # clients relay through TURN to the server's candidates instead. Always a list,
            # maybe empty: with none, aiortc would use a public STUN server.
            stun = [[u for u in s.urls if u.startswith("stun:")] for s in c.ice_servers]
            self.router = Router(
                self.room.id,
                ice_servers=[RTCIceServer(urls) for urls in stun if urls],
                max_publishers=c.max_publishers,
                max_bitrate=c.max_bitrate,
                on_producers_changed=self._producers_changed,
                on_active_speaker=self._active_speaker,
            )
        return self.router

    def member(self, participant_id: str) -> _Member:
        m = self.members.get(participant_id)
        if m is None or m.transport.closed:
            raise MediaInvalidState("send media_join first")
        return m

    def tracks(self) -> list[dict[str, Any]]:
        if self.router is None:
            return []
        transports = self.router.transports
        out = []
        for producer in self.router.producers.values():
            pid = producer.participant_id
            p = self.room.participants.get(pid)
            t = transports.get(pid)
            out.append(
                {
                    "producer_id": producer.id,
                    "participant_id": pid,
                    "stream_id": t.stream_id if t is not None else pid,
                    "name": p.name if p is not None else "",
                    "kind": producer.kind,
                    "source": producer.source,
                    "muted": self.muted.get((pid, producer.source), False),
                }
            )
        return out

    # -- router callbacks (synchronous; may come from the RTP path) ----------------------------

    def _producers_changed(self) -> None:
        if self.router is None:
            return
        current = self.router.producers
        for producer_id in current.keys() - self._producers:
            producer = current[producer_id]
            self.service.audit(
                self.room.id,
                producer.participant_id,
                "media.published",
                producer_id,
                {"kind": producer.kind, "source": producer.source},
            )
        self._producers = set(current)
        self.tracks_changed()

    def _active_speaker(self, participant_id: str | None) -> None:
        if participant_id == self.speaker or self.closed:
            return
        self.speaker = participant_id
        data = {"participant_id": participant_id}
        for pid in self.members:
            self.notifier.send(self.room.id, pid, "media_speaker", data)

    def tracks_changed(self) -> None:
        """Send ``media_tracks`` once the current burst of changes is over."""
        if not self._tracks_due and not self.closed:
            self._tracks_due = True
            asyncio.get_running_loop().call_soon(self._send_tracks)

    def _send_tracks(self) -> None:
        self._tracks_due = False
        if self.closed:
            return
        data = {"tracks": self.tracks()}
        for pid in self.members:
            self.notifier.send(self.room.id, pid, "media_tracks", data)

    def negotiation_needed(self, transport: Transport, request: NegotiationRequest) -> None:
        m = self.members.get(transport.participant_id)
        if m is None or m.transport is not transport or not m.offered:
            return  # the first offer's answer is followed by a fresh check
        m.negotiate = request
        self._send_negotiate(transport.participant_id, request)

    def _send_negotiate(self, participant_id: str, request: NegotiationRequest) -> None:
        data = {"audio": request.audio, "video": request.video}
        self.notifier.send(self.room.id, participant_id, "media_negotiate", data)

    # -- leaving ------------------------------------------------------------------------------

    async def drop(self, participant_id: str, reason: str | None) -> None:
        """Close a member's transport; tell them why (``reason``) unless they asked."""
        m = self.members.pop(participant_id, None)
        if m is None:
            return
        for key in [k for k in self.muted if k[0] == participant_id]:
            del self.muted[key]
        if reason is not None:
            self.notifier.send(self.room.id, participant_id, "media_closed", {"reason": reason})
        await m.transport.close()
        self.service.audit(
            self.room.id, participant_id, "media.left", None, {"reason": reason or "left"}
        )
        if self.speaker == participant_id:
            self._active_speaker(None)

    # -- room component hooks -----------------------------------------------------------------

    def participant_joined(self, participant_id: str) -> None:
        """Back within the grace period: what was sent while the socket was away."""
        m = self.members.get(participant_id)
        if m is None:
            return
        self.notifier.send(self.room.id, participant_id, "media_tracks", {"tracks": self.tracks()})
        if m.negotiate is not None:
            self._send_negotiate(participant_id, m.negotiate)

    async def participant_left(self, participant_id: str) -> None:
        """Removed, left, or gone past the grace period: their media stops now."""
        p = self.room.participants.get(participant_id)
        removed = p is not None and p.state in (State.REMOVED, State.REJECTED)
        await self.drop(participant_id, "removed" if removed else "left")

    async def participant_role_changed(self, participant_id: str) -> None:
        """A demotion to observer closes the participant's producers; they still receive."""
        m = self.members.get(participant_id)
        p = self.room.participants.get(participant_id)
        if m is None or p is None or self.router is None:
            return
        may = self.service.may_publish(p)
        if may == m.transport.can_publish:
            return
        await self.router.set_can_publish(participant_id, may)
        if not may:
            for key in [k for k in self.muted if k[0] == participant_id]:
                del self.muted[key]
            self.notifier.send(self.room.id, participant_id, "media_closed", {"reason": "demoted"})

    async def close(self) -> None:
        """The room ended or unloads: every transport closes, every UDP port is freed."""
        if self.closed:
            return
        if not self.room.is_open:
            for pid in self.members:
                self.notifier.send(self.room.id, pid, "media_closed", {"reason": "ended"})
                self.service.audit(self.room.id, pid, "media.left", None, {"reason": "ended"})
        self.closed = True
        self.members.clear()
        self.service._rooms.discard(self)
        if self.router is not None:
            await self.router.close()


class CallService:
    """The media signalling the socket.io layer calls; one ``RoomCalls`` per room."""

    def __init__(self, store: Store, notifier: Notifier, config: MediaConfig) -> None:
        self.store = store
        self.notifier = notifier
        self.config = config
        self._rooms: set[RoomCalls] = set()
        # Offers and mutes fan out (renegotiations, tracks lists to every member): bounded
        # per participant beyond the socket's own event budget. A browser renegotiates once
        # per track coming or going, far below this.
        self.signalling = RateLimiter("media signalling per participant", rate=5, burst=30)

    def start(self) -> None:
        """Process-wide ICE settings (aioice reads them when it gathers)."""
        set_ice_host_addresses(self.config.host_addresses)
        set_ice_port_range(self.config.port_range)

    async def close(self) -> None:
        for calls in list(self._rooms):
            await calls.close()

    def component(self, room: Room) -> RoomCalls:
        comp = room.components.get(COMPONENT)
        if comp is None:
            comp = RoomCalls(self, room)
            room.components[COMPONENT] = comp
            self._rooms.add(comp)
        assert isinstance(comp, RoomCalls)
        return comp

    def _existing(self, room: Room) -> RoomCalls | None:
        comp = room.components.get(COMPONENT)
        return comp if isinstance(comp, RoomCalls) else None

    @staticmethod
    def may_publish(p: Participant) -> bool:
        # By role only: a role change may reach someone who is reconnecting.
        return role_may(p.role, Action.PUBLISH_MEDIA)

    # -- events -------------------------------------------------------------------------------

    async def join(self, p: Participant, room: Room) -> dict[str, Any]:
        authorize(p, room, Action.VIEW)
        calls = self.component(room)
        m = calls.members.get(p.id)
        if m is None or m.transport.closed:
            router = calls.ensure_router()
            holder: list[Transport] = []

            def needed(request: NegotiationRequest) -> None:
                if holder:
                    calls.negotiation_needed(holder[0], request)

            with _refusals():
                transport = router.create_transport(
                    p.id, can_publish=self.may_publish(p), on_negotiation_needed=needed
                )
            holder.append(transport)
            m = calls.members[p.id] = _Member(transport)
            self.audit(room.id, p.id, "media.joined", None, None)
        return {
            "ice_servers": [s.to_wire() for s in self.config.ice_servers],
            "can_publish": m.transport.can_publish,
            "tracks": calls.tracks(),
        }

    async def offer(
        self, p: Participant, room: Room, sdp: str, sources: Mapping[str, str]
    ) -> dict[str, Any]:
        authorize(p, room, Action.VIEW)
        calls = self.component(room)
        m = calls.member(p.id)
        self.signalling.hit(p.id)
        ufrags, fingerprints = ice_credentials(sdp), dtls_fingerprints(sdp)
        if m.offered and ufrags != m.ufrags:
            if fingerprints & m.fingerprints:
                # An ICE restart: aiortc 1.16 starts ICE once per transport
                # (RTCIceTransport.start) and would keep checking with the old credentials
                # until the browser gives up.
                raise MediaNegotiationFailed(
                    "ICE restart is not supported: media_leave, then media_join with a new "
                    "RTCPeerConnection"
                )
            # A new RTCPeerConnection (a reload, another tab) without media_leave: it
            # takes the old one's place.
            await calls.drop(p.id, None)
            await self.join(p, room)
            m = calls.member(p.id)
        with _refusals():
            try:
                answer = await m.transport.apply_offer(sdp, sources)
            except MediaError:
                raise
            except Exception as exc:  # aiortc failing in a way media/ did not foresee
                log.warning("offer of %s failed: %s", p.id, type(exc).__name__)
                raise NegotiationError("the offer could not be applied") from None
        if not m.offered and "\na=candidate:" not in answer:
            # aioice could bind no socket (the UDP port range is used up): nothing could
            # ever connect, so say so now rather than let the client's ICE time out.
            log.warning("no ICE candidate for %s in room %s: UDP ports used up?", p.id, room.id)
            await calls.drop(p.id, None)
            raise MediaNegotiationFailed("the server has no free UDP port for media now")
        m.offered = True
        m.ufrags, m.fingerprints = ufrags, fingerprints
        m.negotiate = None
        if self.config.announced_ip is not None:
            answer = announce_ip(answer, self.config.announced_ip)
        return {"sdp": answer}

    async def candidate(
        self,
        p: Participant,
        room: Room,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        authorize(p, room, Action.VIEW)
        m = self.component(room).member(p.id)
        if not m.offered:
            raise MediaInvalidState("send media_offer before its ICE candidates")
        if not candidate.removeprefix("a=").removeprefix("candidate:"):
            return  # end of candidates
        if m.candidates >= MAX_REMOTE_CANDIDATES:
            raise MediaNegotiationFailed("too many ICE candidates for this transport")
        m.candidates += 1
        with _refusals():
            await m.transport.add_ice_candidate(candidate, sdp_mid, sdp_mline_index)

    async def mute(self, p: Participant, room: Room, source: str, muted: bool) -> None:
        authorize(p, room, Action.PUBLISH_MEDIA)
        calls = self.component(room)
        calls.member(p.id)
        self.signalling.hit(p.id)
        key = (p.id, source)
        if calls.muted.get(key, False) != muted:
            calls.muted[key] = muted
            calls.tracks_changed()

    async def leave(self, p: Participant, room: Room) -> None:
        authorize(p, room, Action.VIEW)
        calls = self._existing(room)
        if calls is not None:
            await calls.drop(p.id, None)

    # -- audit --------------------------------------------------------------------------------

    def audit(
        self,
        room_id: str,
        actor: str,
        action: str,
        target: str | None,
        detail: dict[str, Any] | None,
    ) -> None:
        """Ids and kinds only; joins the next group commit."""
        self.store.later(_audit_job(self.store, room_id, actor, action, target, detail))


def _audit_job(
    store: Store,
    room_id: str,
    actor: str,
    action: str,
    target: str | None,
    detail: dict[str, Any] | None,
) -> Callable[[AsyncConnection], Awaitable[None]]:
    async def job(conn: AsyncConnection) -> None:
        await store.audit.record(
            conn,
            scope=room_id,
            actor=actor,
            action=action,
            target=target if target is not None else actor,
            room_id=room_id,
            detail=detail,
        )

    return job
