"""Calls end to end: a real server process, aiortc clients signalling over socket.io.

The server gathers ICE on 127.0.0.1 within a UDP port range of its own
(``CONSULTD_RTC_HOST_ADDRESSES``, ``CONSULTD_RTC_PORTS``), and so do the clients
(``set_ice_host_addresses`` in this process).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from media import set_ice_host_addresses
from tests.media.peers import HEIGHT, WIDTH, ColourTrack, wait_for
from tests.utils import (
    ConnectionRefused,
    Peer,
    Physician,
    ServerProcess,
    connect,
    redeem,
    register,
)

from .client import MediaClient

MIN_VIDEO_FRAMES = 15
MIN_AUDIO_FRAMES = 25
#: A port range of this module's own, so that counting bound UDP ports sees only the server.
PORT_LOW = random.randrange(42000, 48000, 100)
PORT_HIGH = PORT_LOW + 99


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    set_ice_host_addresses(["127.0.0.1"])
    yield
    set_ice_host_addresses(None)


@pytest.fixture(scope="module")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "CONSULTD_RTC_HOST_ADDRESSES": "127.0.0.1",
        "CONSULTD_RTC_PORTS": f"{PORT_LOW}-{PORT_HIGH}",
        "CONSULTD_GRACE_S": "1",
    }
    srv = ServerProcess(tmp_path_factory.mktemp("calls"), env=env).start()
    yield srv
    srv.stop()
    assert not srv.errors_logged(), srv.errors_logged()


@dataclass
class Consult:
    url: str
    dr: Physician
    room_id: str
    host: MediaClient
    guest: MediaClient
    observer: MediaClient


async def _participant(srv: ServerProcess, dr: Physician, room_id: str, role: str) -> Peer:
    code = await dr.make_code(room_id, role=role)
    status, adm = await redeem(srv.url, room_id, code["code"], f"Dr {role.title()}")
    assert status == 201, adm
    peer = await connect(srv.url, room_id, adm["token"])
    await peer.wait("joined")
    peer.events.append(("token", adm["token"]))
    return peer


@pytest.fixture
async def consult(media_server: ServerProcess) -> AsyncIterator[Consult]:
    dr = await register(media_server.url, name="Dr Host")
    room = await dr.create_room(lobby=False)
    adm = await dr.join(room["id"])
    host_peer = await connect(media_server.url, room["id"], adm["token"])
    joined = await host_peer.wait("joined")
    guest_peer = await _participant(media_server, dr, room["id"], "participant")
    obs_peer = await _participant(media_server, dr, room["id"], "observer")
    clients = [
        MediaClient(p, (await p.wait("joined"))["self"]["id"])
        for p in (host_peer, guest_peer, obs_peer)
    ]
    assert clients[0].pid == joined["self"]["id"]
    yield Consult(media_server.url, dr, room["id"], *clients)
    for c in clients:
        await c.close()
        await c.peer.sio.disconnect()


def _candidates(sdp: str) -> list[list[str]]:
    return [line.split(" ") for line in sdp.splitlines() if line.startswith("a=candidate:")]


def _udp_ports_bound(low: int, high: int) -> set[int]:
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                port = int(line.split()[1].rsplit(":", 1)[1], 16)
                if low <= port <= high:
                    ports.add(port)
    return ports


async def test_participants_see_and_hear_each_other_observers_only_receive(
    consult: Consult,
) -> None:
    host, guest, obs = consult.host, consult.guest, consult.observer
    join = await host.join()
    assert join == {"ok": True, "ice_servers": [], "can_publish": True, "tracks": []}
    assert (await guest.join())["can_publish"] is True
    assert (await obs.join())["can_publish"] is False

    for seed, client in enumerate((host, guest)):
        ack = await client.publish(seed)
        assert ack["ok"], ack
        # The server's candidates: host candidates on the configured address, in the
        # configured port range; no STUN server, so nothing server-reflexive.
        cands = _candidates(ack["sdp"])
        assert cands and all(c[4] == "127.0.0.1" and c[7] == "host" for c in cands), cands
        assert all(PORT_LOW <= int(c[5]) <= PORT_HIGH for c in cands), cands
    ack = await obs.negotiate(audio=2, video=2)
    assert ack["ok"], ack

    def everyone_decodes() -> bool:
        pairs = [(host, guest), (guest, host), (obs, host), (obs, guest)]
        return all(
            a.frames_from(b.pid, "video") >= MIN_VIDEO_FRAMES
            and a.frames_from(b.pid, "audio") >= MIN_AUDIO_FRAMES
            for a, b in pairs
        )

    await wait_for(everyone_decodes, 30, "everyone decoding the publishers")
    assert host.sizes_from(guest.pid) == {(WIDTH, HEIGHT)}
    assert obs.sizes_from(host.pid) == {(WIDTH, HEIGHT)}
    tracks = obs.tracks()
    assert sorted((t["name"], t["kind"], t["source"], t["muted"]) for t in tracks) == [
        ("Dr Host", "audio", "microphone", False),
        ("Dr Host", "video", "camera", False),
        ("Dr Participant", "audio", "microphone", False),
        ("Dr Participant", "video", "camera", False),
    ]
    by_pid = {t["participant_id"]: t["stream_id"] for t in tracks}
    assert set(by_pid) == {host.pid, guest.pid}
    assert not host.errors and not guest.errors and not obs.errors

    # Muting shows in everyone's tracks list.
    assert (await guest.peer.call("media_mute", {"source": "camera", "muted": True}))["ok"]
    await obs.peer.wait(
        "media_tracks",
        lambda d: any(t["muted"] and t["participant_id"] == guest.pid for t in d["tracks"]),
    )
    ack = await obs.peer.call("media_mute", {"source": "camera", "muted": True})
    assert ack["error"]["code"] == "forbidden"

    # The observer tries to publish: refused, and the call goes on.
    obs.pc.addTrack(ColourTrack(9))
    ack = await obs.negotiate()
    assert ack["error"]["code"] == "media_publish_not_allowed", ack
    before = host.frames_from(guest.pid, "video")
    await wait_for(lambda: host.frames_from(guest.pid, "video") > before + 5, 10, "more frames")
    assert (await obs.peer.call("chat", {"id": "c1", "text": "x"}))["error"]["code"] == "forbidden"

    # The host removes the guest: their transport closes, the others' tracks drop theirs.
    assert (await host.peer.call("remove", {"participant_id": guest.pid}))["ok"]
    closed = await guest.peer.wait("media_closed")
    assert closed == {"reason": "removed"}
    await wait_for(lambda: guest.pc.connectionState in ("closed", "failed"), 10, "guest closed")
    await host.peer.wait(
        "media_tracks", lambda d: {t["participant_id"] for t in d["tracks"]} == {host.pid}
    )
    await obs.peer.wait(
        "media_tracks", lambda d: {t["participant_id"] for t in d["tracks"]} == {host.pid}
    )
    # A removed participant cannot come back to renegotiate; nobody signals to a room
    # that does not exist.
    token = next(d for n, d in guest.peer.events if n == "token")
    with pytest.raises(ConnectionRefused):
        await connect(consult.url, consult.room_id, token)
    with pytest.raises(ConnectionRefused) as refused:
        await connect(consult.url, "0" * 32, token)
    assert refused.value.args[0]["data"]["code"] == "not_found"

    # Ending the room closes every transport and frees every UDP port. (The server's ports
    # are those of its candidates; the clients in this process have sockets too.)
    server_ports = {
        int(c[5]) for x in (host, guest, obs) for a in x.answers for c in _candidates(a)
    }
    assert server_ports and all(PORT_LOW <= port <= PORT_HIGH for port in server_ports)
    guest_ports = {int(c[5]) for a in guest.answers for c in _candidates(a)}
    assert not guest_ports & _udp_ports_bound(PORT_LOW, PORT_HIGH), "the removed one's"
    assert server_ports - guest_ports <= _udp_ports_bound(PORT_LOW, PORT_HIGH)
    assert (await host.peer.call("end"))["ok"]
    for c in (host, obs):
        assert await c.peer.wait("media_closed") == {"reason": "ended"}
        await wait_for(lambda c=c: c.pc.connectionState in ("closed", "failed"), 10, "closed")
    await wait_for(
        lambda: not server_ports & _udp_ports_bound(PORT_LOW, PORT_HIGH), 10, "UDP ports freed"
    )

    # Audited: who joined, published what, left why; ids only.
    async with consult.dr.session.get(f"/api/rooms/{consult.room_id}/audit") as r:
        events = [e for e in (await r.json())["events"] if e["action"].startswith("media.")]
    seen = {(e["action"], e["actor"], tuple(sorted(e["detail"].items()))) for e in events}
    assert ("media.joined", obs.pid, ()) in seen
    assert ("media.published", guest.pid, (("kind", "video"), ("source", "camera"))) in seen
    assert ("media.left", guest.pid, (("reason", "removed"),)) in seen
    assert ("media.left", obs.pid, (("reason", "ended"),)) in seen
    assert "v=0" not in str(events)


async def test_leaving_and_dropping_out_close_the_transport(consult: Consult) -> None:
    host, guest, obs = consult.host, consult.guest, consult.observer
    for seed, client in enumerate((host, guest)):
        assert (await client.join())["ok"]
        assert (await client.publish(seed))["ok"]

    def publishers(d: dict[str, Any]) -> set[str]:
        return {t["participant_id"] for t in d["tracks"]}

    joined = await obs.join()  # a late joiner gets the tracks in the ack
    assert publishers(joined) == {host.pid, guest.pid}
    assert (await obs.negotiate(audio=2, video=2))["ok"]
    # Leaving the room closes the transport at once.
    assert (await guest.peer.call("leave"))["ok"]
    assert await guest.peer.wait("media_closed") == {"reason": "left"}
    await obs.peer.wait("media_tracks", lambda d: publishers(d) == {host.pid})
    # A dropped socket keeps its media through the grace period (1 s here), then not.
    await host.peer.sio.disconnect()
    await obs.peer.wait("presence", lambda d: d["id"] == host.pid and d["state"] == "left")
    await obs.peer.wait("media_tracks", lambda d: publishers(d) == set())
    await wait_for(lambda: host.pc.connectionState in ("closed", "failed"), 10, "host closed")
    assert obs.tracks() == []


async def test_signalling_abuse_is_refused_and_the_room_goes_on(consult: Consult) -> None:
    host, guest = consult.host, consult.guest
    call = guest.peer.call
    # This guest signals by hand: record media_negotiate, do not act on it.
    guest.peer.sio.on("media_negotiate", lambda d: guest.peer._record("media_negotiate", d))

    async def code_of(event: str, data: Any) -> str:
        ack = await call(event, data)
        assert not ack["ok"], (event, ack)
        return str(ack["error"]["code"])

    # Out of order.
    assert await code_of("media_offer", {"sdp": "v=0"}) == "media_invalid_state"
    assert await code_of("media_candidate", {"candidate": ""}) == "media_invalid_state"
    assert await code_of("media_mute", {"source": "camera", "muted": True}) == (
        "media_invalid_state"
    )
    # Wrong types and sizes.
    for event, data in [
        ("media_offer", {"sdp": 5}),
        ("media_offer", {"sdp": ""}),
        ("media_offer", {"sdp": "v=0", "sources": {"0": "projector"}}),
        ("media_offer", {"sdp": "v=0", "sources": {"bad mid": "camera"}}),
        ("media_offer", {"sdp": "v=0", "sources": {str(i): "camera" for i in range(33)}}),
        ("media_offer", {"sdp": "v=0", "extra": 1}),
        ("media_candidate", {"candidate": 7}),
        ("media_candidate", {"candidate": "x" * 1025}),
        ("media_candidate", {"candidate": "", "sdp_mline_index": "0"}),
        ("media_mute", {"source": "camera", "muted": "yes"}),
        ("media_join", {"again": True}),
    ]:
        assert await code_of(event, data) == "validation_error", (event, data)

    assert (await guest.join())["ok"]
    assert (await guest.join())["ok"], "idempotent"
    assert await code_of("media_candidate", {"candidate": ""}) == "media_invalid_state"
    # Malformed SDP: refused before anything is applied.
    for sdp in ["v=0", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video x", "\x00" * 100]:
        assert await code_of("media_offer", {"sdp": sdp}) == "media_negotiation_failed"
    guest.pc.addTrack(ColourTrack(9))
    offer = await guest.pc.createOffer()
    await guest.pc.setLocalDescription(offer)
    unbundled = guest.pc.localDescription.sdp.replace("a=group:BUNDLE", "a=group:LS")
    assert await code_of("media_offer", {"sdp": unbundled}) == "media_negotiation_failed"
    # A real offer still works after all that.
    ack = await call("media_offer", {"sdp": guest.pc.localDescription.sdp, "sources": {}})
    assert ack["ok"], ack

    # An ICE restart (new credentials): refused, aiortc cannot restart ICE; leave and join.
    sdp = guest.pc.localDescription.sdp
    ufrag = next(x for x in sdp.splitlines() if x.startswith("a=ice-ufrag:"))
    restart = sdp.replace(ufrag, "a=ice-ufrag:rst1")
    ack = await call("media_offer", {"sdp": restart})
    assert ack["error"]["code"] == "media_negotiation_failed" and "media_leave" in str(ack)

    # Candidates: malformed ones refused; a flood is bounded (per transport, and per socket).
    assert await code_of("media_candidate", {"candidate": "candidate:garbage"}) == (
        "media_negotiation_failed"
    )
    assert await code_of("media_candidate", {"candidate": "candidate:1 1 udp 1 127.0.0.1 9"}) == (
        "media_negotiation_failed"
    )
    good = "candidate:1 1 udp 2130706431 127.0.0.1 {} typ host"
    ack = await call("media_candidate", {"candidate": good.format(9), "sdp_mid": "0"})
    assert ack["ok"], ack
    codes = []
    for port in range(10, 210):
        ack = await call("media_candidate", {"candidate": good.format(port), "sdp_mid": "0"})
        codes.append("ok" if ack["ok"] else ack["error"]["code"])
    assert codes.count("ok") <= 64 and "media_negotiation_failed" in codes, codes

    # The room goes on: chat, and media for the host.
    await asyncio.sleep(2.1)  # the per-socket event budget refills
    # Mutes (and offers) fan out to every member: bounded per participant.
    codes = []
    for i in range(40):
        ack = await call("media_mute", {"source": "microphone", "muted": i % 2 == 0})
        codes.append("ok" if ack["ok"] else ack["error"]["code"])
    assert set(codes) == {"ok", "rate_limited"} and codes.count("ok") <= 32, codes
    ack = await call("chat", {"id": "after-flood", "text": "still here"})
    assert ack["ok"], ack
    assert (await host.join())["ok"]
    assert (await host.publish())["ok"]
    # The guest's offer had one m-line, video sendrecv (addTrack): the host's video takes
    # it; for the host's audio the server asks for a receiving m-line.
    assert await guest.peer.wait("media_negotiate") == {"audio": 1, "video": 0}
    assert (await call("media_leave"))["ok"]
    assert (await call("media_leave"))["ok"], "idempotent"
    assert await code_of("media_offer", {"sdp": "v=0"}) == "media_invalid_state"


async def test_announced_ip_is_in_the_answer(tmp_path: Path) -> None:
    env = {
        "CONSULTD_RTC_HOST_ADDRESSES": "127.0.0.1",
        "CONSULTD_RTC_ANNOUNCED_IP": "192.0.2.7",
    }
    srv = ServerProcess(tmp_path / "d", env=env).start()
    try:
        dr = await register(srv.url)
        room = await dr.create_room(lobby=False)
        adm = await dr.join(room["id"])
        peer = await connect(srv.url, room["id"], adm["token"])
        client = MediaClient(peer, (await peer.wait("joined"))["self"]["id"])
        try:
            assert (await client.join())["ok"]
            client.pc.addTrack(ColourTrack(9))
            offer = await client.pc.createOffer()
            await client.pc.setLocalDescription(offer)
            ack = await peer.call("media_offer", {"sdp": client.pc.localDescription.sdp})
            assert ack["ok"], ack
            cands = _candidates(ack["sdp"])
            assert cands and all(c[4] == "192.0.2.7" for c in cands), cands
            assert "c=IN IP4 192.0.2.7" in ack["sdp"]
            assert "127.0.0.1" not in ack["sdp"]
        finally:
            await client.close()
            await peer.sio.disconnect()
    finally:
        srv.stop()
    assert not srv.errors_logged(), srv.errors_logged()
