"""``CallService`` in process: role changes, the publisher cap, what aiortc is given."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from consultd.calls import CallService, MediaConfig
from consultd.calls.config import IceServer
from consultd.calls.service import COMPONENT, RoomCalls
from consultd.errors import (
    Forbidden,
    MediaInvalidState,
    MediaNegotiationFailed,
    MediaPublishNotAllowed,
)
from consultd.rooms.room import Participant, Role, Room, RoomStatus, State
from media import set_ice_host_addresses, set_ice_port_range
from tests.media.peers import ColourTrack


class Notes:
    """A ``Notifier`` that writes down what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def send(self, room_id: str, participant_id: str, event: str, data: Any) -> None:
        self.sent.append((participant_id, event, data))

    def broadcast(self, room_id: str, event: str, data: Any, *, exclude: str | None = None) -> None:
        self.sent.append(("*", event, data))

    async def enter(self, room_id: str, participant_id: str) -> None: ...

    async def disconnect(self, room_id: str, participant_id: str) -> None: ...


class NoStore:
    def later(self, *work: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    set_ice_host_addresses(["127.0.0.1"])
    yield
    set_ice_host_addresses(None)


def _room(*roles: Role) -> Room:
    room = Room("r1", "Case", "", False, RoomStatus.OPEN, "u1", 0.0)
    for i, role in enumerate(roles):
        room.participants[f"p{i}"] = Participant(f"p{i}", "r1", f"Dr {i}", role, State.JOINED)
    return room


async def _publish(calls: CallService, room: Room, pid: str) -> tuple[RTCPeerConnection, Any]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc.addTrack(ColourTrack(1))
    await pc.setLocalDescription(await pc.createOffer())
    try:
        ack = await calls.offer(room.participants[pid], room, pc.localDescription.sdp, {})
    except Exception:
        await pc.close()
        raise
    await pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
    return pc, ack


async def test_no_ice_servers_configured_means_aiortc_gets_none() -> None:
    notes = Notes()
    calls = CallService(NoStore(), notes, MediaConfig())  # type: ignore[arg-type]
    room = _room(Role.HOST)
    ack = await calls.join(room.participants["p0"], room)
    assert ack["ice_servers"] == []
    comp = room.components[COMPONENT]
    assert isinstance(comp, RoomCalls) and comp.router is not None
    transport = comp.router.transports["p0"]
    # An empty list, not None: with None aiortc falls back to a public STUN server.
    configuration = transport._pc._RTCPeerConnection__configuration  # type: ignore[attr-defined]
    assert configuration.iceServers == []
    await calls.close()
    assert comp.router.closed


async def test_demotion_closes_producers_and_says_so() -> None:
    notes = Notes()
    calls = CallService(NoStore(), notes, MediaConfig())  # type: ignore[arg-type]
    room = _room(Role.HOST, Role.PARTICIPANT)
    p1 = room.participants["p1"]
    assert (await calls.join(p1, room))["can_publish"] is True
    pc, _ = await _publish(calls, room, "p1")
    try:
        comp = room.components[COMPONENT]
        assert isinstance(comp, RoomCalls) and comp.router is not None
        assert [p.participant_id for p in comp.router.producers.values()] == ["p1"]
        # Made host while reconnecting (transfer_host allows it): still publishing.
        p1.state, p1.role = State.RECONNECTING, Role.HOST
        await comp.participant_role_changed("p1")
        assert comp.router.producers and not [n for n in notes.sent if n[1] == "media_closed"]
        p1.state, p1.role = State.JOINED, Role.OBSERVER
        await comp.participant_role_changed("p1")
        assert not comp.router.producers
        assert ("p1", "media_closed", {"reason": "demoted"}) in notes.sent
        with pytest.raises(Forbidden):
            await calls.mute(p1, room, "camera", True)
        # Still a receiver: a sending offer is refused, the transport stays open.
        assert not comp.router.transports["p1"].closed
        assert (await calls.join(p1, room))["can_publish"] is False
        await asyncio.sleep(0.05)
        tracks = [d for pid, e, d in notes.sent if e == "media_tracks" and pid == "p1"]
        assert tracks[-1] == {"tracks": []}
    finally:
        await pc.close()
        await calls.close()


async def test_the_publisher_cap_and_leaving() -> None:
    notes = Notes()
    calls = CallService(NoStore(), notes, MediaConfig(max_publishers=1))  # type: ignore[arg-type]
    room = _room(Role.HOST, Role.PARTICIPANT)
    for p in room.participants.values():
        await calls.join(p, room)
    pc0, _ = await _publish(calls, room, "p0")
    try:
        with pytest.raises(MediaPublishNotAllowed):
            await _publish(calls, room, "p1")
        await calls.leave(room.participants["p0"], room)
        with pytest.raises(MediaInvalidState):
            await calls.mute(room.participants["p0"], room, "camera", True)
        # p0 asked to leave: no media_closed for them.
        assert not [n for n in notes.sent if n[1] == "media_closed"]
    finally:
        await pc0.close()
        await calls.close()


async def test_speaker_and_catching_up_after_a_reconnect() -> None:
    notes = Notes()
    calls = CallService(NoStore(), notes, MediaConfig())  # type: ignore[arg-type]
    room = _room(Role.HOST, Role.OBSERVER, Role.PARTICIPANT)
    for pid in ("p0", "p1"):
        await calls.join(room.participants[pid], room)
    comp = room.components[COMPONENT]
    assert isinstance(comp, RoomCalls) and comp.router is not None
    assert comp.router.on_active_speaker is not None
    comp.router.on_active_speaker("p0")
    comp.router.on_active_speaker("p0")  # unchanged: not sent again
    comp.router.on_active_speaker(None)
    speakers = [(pid, d) for pid, e, d in notes.sent if e == "media_speaker"]
    assert speakers == [
        ("p0", {"participant_id": "p0"}),
        ("p1", {"participant_id": "p0"}),
        ("p0", {"participant_id": None}),
        ("p1", {"participant_id": None}),
    ], "to those who joined media only"
    notes.sent.clear()
    comp.participant_joined("p1")  # back within the grace period
    comp.participant_joined("p2")  # never joined media
    assert notes.sent == [("p1", "media_tracks", {"tracks": []})]
    await calls.close()


async def test_a_used_up_port_range_is_a_clear_refusal() -> None:
    held = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        held.append(s)
    ports = sorted(s.getsockname()[1] for s in held)
    config = MediaConfig(host_addresses=("127.0.0.1",), port_range=(ports[0], ports[0]))
    calls = CallService(NoStore(), Notes(), config)  # type: ignore[arg-type]
    calls.start()
    room = _room(Role.HOST)
    try:
        await calls.join(room.participants["p0"], room)
        with pytest.raises(MediaNegotiationFailed, match="no free UDP port"):
            await _publish(calls, room, "p0")
        with pytest.raises(MediaInvalidState):  # dropped: join again later
            await calls.mute(room.participants["p0"], room, "camera", True)
    finally:
        set_ice_port_range(None)  # process-wide: back to any port
        await calls.close()
        for s in held:
            s.close()


async def test_a_new_peer_connection_takes_the_old_ones_place() -> None:
    notes = Notes()
    calls = CallService(NoStore(), notes, MediaConfig())  # type: ignore[arg-type]
    room = _room(Role.HOST)
    await calls.join(room.participants["p0"], room)
    first, _ = await _publish(calls, room, "p0")
    comp = room.components[COMPONENT]
    assert isinstance(comp, RoomCalls) and comp.router is not None
    old = comp.router.transports["p0"]
    second, _ = await _publish(calls, room, "p0")  # a reload: no media_leave
    try:
        assert old.closed and comp.router.transports["p0"] is not old
        assert len(comp.router.producers) == 1
    finally:
        await first.close()
        await second.close()
        await calls.close()


async def test_the_sfu_itself_uses_the_stun_servers_only() -> None:
    servers = IceServer(("stun:127.0.0.1:9", "turn:127.0.0.1:9"), "u", "p")
    config = MediaConfig(ice_servers=(servers,))
    calls = CallService(NoStore(), Notes(), config)  # type: ignore[arg-type]
    room = _room(Role.HOST)
    ack = await calls.join(room.participants["p0"], room)
    assert ack["ice_servers"] == [servers.to_wire()], "clients get them all"
    comp = room.components[COMPONENT]
    assert isinstance(comp, RoomCalls) and comp.router is not None
    pc = comp.router.transports["p0"]._pc
    configuration = pc._RTCPeerConnection__configuration  # type: ignore[attr-defined]
    assert [s.urls for s in configuration.iceServers] == [["stun:127.0.0.1:9"]]
    await calls.close()
