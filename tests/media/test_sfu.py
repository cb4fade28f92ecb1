"""The SFU end to end: aiortc clients on loopback, one server-side Transport each, one Router.

Every client publishes video and audio and must decode the others' real frames; the server
side must forward without creating a single decoder or encoder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from media import (
    InvalidStateError,
    NegotiationError,
    PublishNotAllowedError,
    Router,
)

from .peers import (
    HEIGHT,
    WIDTH,
    ClientPeer,
    client_packet_counts,
    client_receiver_queues,
    count_codecs,
    wait_for,
)

MIN_VIDEO_FRAMES = 20  # ~0.7 s of 30 fps
MIN_AUDIO_FRAMES = 25  # 0.5 s of 20 ms frames


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    r = Router("room-1")
    yield r
    await r.close()


async def _join(router: Router, names: list[str]) -> list[ClientPeer]:
    clients = [ClientPeer(name, router) for name in names]
    for seed, client in enumerate(clients):
        await client.publish(seed)
    return clients


def _everyone_decodes(clients: list[ClientPeer]) -> bool:
    for client in clients:
        for other in clients:
            if other is client:
                continue
            if client.frames_from(other.name, "video") < MIN_VIDEO_FRAMES:
                return False
            if client.frames_from(other.name, "audio") < MIN_AUDIO_FRAMES:
                return False
    return True


async def _check_room(router: Router, clients: list[ClientPeer], timeout: float) -> None:
    with count_codecs() as codecs:
        await wait_for(lambda: _everyone_decodes(clients), timeout, "every client to decode")
    for client in clients:
        assert not client.errors, client.errors
        for other in clients:
            if other is not client:
                assert client.sizes_from(other.name) == {(WIDTH, HEIGHT)}

    # Packets are counted on both ends: what each producer received, each consumer sent.
    n = len(clients)
    assert len(router.producers) == 2 * n
    for producer in router.producers.values():
        assert producer.packets_received > 0
        assert len(producer.consumers) == n - 1
        for consumer in producer.consumers:
            assert consumer.packets_sent > 0, consumer.stats()
    # Steady state on loopback: what the consumers sent, the client received (a client may
    # miss the first packets of a new consumer, sent before it applied the answer).
    before = [await _flow(client) for client in clients]
    await asyncio.sleep(1.0)
    for client, (sent0, received0, forwarded0) in zip(clients, before, strict=True):
        sent, received, forwarded = await _flow(client)
        assert sent - sent0 > 50, "the client publishes"
        assert forwarded - forwarded0 > 60, "the SFU forwards to the client"
        assert received - received0 >= 0.98 * (forwarded - forwarded0) - 5, client.name

    # The SFU creates no decoder and no encoder: all of them belong to the clients.
    server_senders = {id(t.sender) for c in clients for t in c.transport._pc.getTransceivers()}
    assert len(codecs.encoders) == 0 or not any(id(s) in server_senders for s in codecs.encoders)
    assert all(id(q) in client_receiver_queues(clients) for q in codecs.decoders)


async def _flow(client: ClientPeer) -> tuple[int, int, int]:
    """(packets the client sent, packets it received, packets the SFU forwarded to it)."""
    sent, received = await client_packet_counts(client)
    return sent, received, sum(c.packets_sent for c in client.transport.consumers)


async def test_two_participants_see_and_hear_each_other(router: Router) -> None:
    with count_codecs() as codecs:
        clients = await _join(router, ["alice", "bob"])
        await _check_room(router, clients, timeout=20)
    # each client encodes its camera and microphone, decodes the other's two tracks
    assert len(codecs.encoders) == 2 * 2, codecs.encoders
    assert len(codecs.decoders) == 2 * 2, codecs.decoders
    for client in clients:
        await client.close()


async def test_three_participants_see_and_hear_each_other(router: Router) -> None:
    with count_codecs() as codecs:
        clients = await _join(router, ["alice", "bob", "carol"])
        await _check_room(router, clients, timeout=25)
    assert len(codecs.encoders) == 3 * 2
    assert len(codecs.decoders) == 3 * 4
    for client in clients:
        await client.close()


async def test_leaving_closes_its_producers_and_every_consumer_of_them(router: Router) -> None:
    clients = await _join(router, ["alice", "bob", "carol"])
    alice, bob, carol = clients
    await wait_for(lambda: _everyone_decodes(clients), 25, "every client to decode")
    carols = carol.transport.producers
    theirs = [c for p in carols for c in p.consumers]
    assert len(theirs) == 4

    await router.close_transport("carol")

    assert carol.transport.closed and carol.transport.connection_state == "closed"
    assert all(p.closed for p in carols) and all(c.closed for c in theirs)
    assert "carol" not in router.transports
    assert {p.participant_id for p in router.producers.values()} == {"alice", "bob"}
    for client, other in ((alice, "bob"), (bob, "alice")):
        assert {c.producer.participant_id for c in client.transport.consumers} == {other}
    # the freed m-lines go inactive in the renegotiation the SFU asks for; the others flow on
    before = {
        c.name: (c.frames_from("alice", "video"), c.frames_from("bob", "video")) for c in clients
    }
    await wait_for(lambda: alice.negotiations >= 4 and bob.negotiations >= 4, 10, "renegotiation")
    await wait_for(
        lambda: (
            bob.frames_from("alice", "video") > before["bob"][0] + 10
            and alice.frames_from("bob", "video") > before["alice"][1] + 10
        ),
        10,
        "the others to keep receiving",
    )
    slots = [t for t in alice.transport._pc.getTransceivers() if t.sender.track is not None]
    assert sum(t.direction in ("sendonly", "sendrecv") for t in slots) == 2
    for client in clients:
        await client.close()


async def test_late_observer_gets_video_quickly_and_may_not_publish(router: Router) -> None:
    clients = await _join(router, ["alice", "bob"])
    await wait_for(lambda: _everyone_decodes(clients), 20, "the publishers to decode")
    dave = ClientPeer("dave", router, can_publish=False)
    took = await wait_for(
        lambda: dave.frames_from("alice", "video") > 0 and dave.frames_from("bob", "video") > 0,
        10,
        "the late joiner's first frames",
    )
    assert took < 3.0, f"first video frames after {took:.2f}s"
    assert dave.sizes_from("alice") == {(WIDTH, HEIGHT)}

    # An observer's offer to publish is refused before anything is applied.
    with pytest.raises(PublishNotAllowedError):
        await dave.publish()
    assert dave.transport.producers == [] and len(router.producers) == 4
    for client in [*clients, dave]:
        await client.close()


async def test_a_slow_receiver_drops_its_own_packets_only(router: Router) -> None:
    clients = await _join(router, ["alice", "bob", "carol"])
    _, bob, carol = clients
    await wait_for(lambda: _everyone_decodes(clients), 25, "every client to decode")
    slow = carol.transport._bridge
    assert slow is not None
    slow.max_backlog = -1  # carol's socket "never drains": her own queue overflows
    base = {c.name: c.frames_from("alice", "video") for c in (bob, carol)}
    await wait_for(lambda: bob.frames_from("alice", "video") > base["bob"] + 20, 10, "bob")
    assert slow.dropped_backlog > 0
    assert sum(c.dropped for c in carol.transport.consumers) >= slow.dropped_backlog
    assert carol.frames_from("alice", "video") <= base["carol"] + 2
    assert all(c.dropped == 0 for c in bob.transport.consumers)
    for client in clients:
        await client.close()


async def test_ending_the_room_frees_every_transport(router: Router) -> None:
    clients = await _join(router, ["alice", "bob"])
    await wait_for(lambda: _everyone_decodes(clients), 20, "every client to decode")
    await router.close()
    assert router.transports == {} and router.producers == {}
    for client in clients:
        assert client.transport.closed and client.transport.connection_state == "closed"
    with pytest.raises(Exception, match="closed"):
        router.create_transport("eve")
    for client in clients:
        await client.close()


async def test_a_demoted_publisher_is_dropped_never_decoded(router: Router) -> None:
    clients = await _join(router, ["alice", "bob"])
    alice, bob = clients
    await wait_for(lambda: _everyone_decodes(clients), 20, "every client to decode")
    with count_codecs() as codecs:
        await router.set_can_publish("alice", False)
        assert alice.transport.producers == [] and len(router.producers) == 2
        assert bob.transport.consumers == [], "bob's consumers of alice are gone"
        bridge = alice.transport._bridge
        assert bridge is not None
        # alice's client does not know yet and keeps sending: dropped, not decoded
        await wait_for(lambda: bridge.unclaimed > 50, 5, "alice's packets to be dropped")
        await wait_for(lambda: bob.negotiations >= 3, 5, "bob's renegotiation")
    assert codecs.decoders == [] and codecs.encoders == []
    assert alice.frames_from("bob", "video") > 0
    for client in clients:
        await client.close()


async def test_bad_signalling_is_refused_and_the_room_goes_on(router: Router) -> None:
    clients = await _join(router, ["alice", "bob"])
    alice, bob = clients
    await wait_for(lambda: _everyone_decodes(clients), 20, "every client to decode")
    good = alice.pc.localDescription.sdp
    for bad in ("v=0\r\nthis is not sdp", "", good.replace("a=group:BUNDLE", "a=group:LS")):
        with pytest.raises(NegotiationError):
            await alice.transport.apply_offer(bad)
    with pytest.raises(NegotiationError):
        await alice.transport.add_ice_candidate("candidate:garbage")
    frames = bob.frames_from("alice", "video")
    await alice.negotiate()  # the transport still negotiates
    await wait_for(lambda: bob.frames_from("alice", "video") > frames + 10, 10, "video on")

    await router.close_transport("bob")  # removed: bob can no longer negotiate
    with pytest.raises(InvalidStateError):
        await bob.transport.apply_offer(bob.pc.localDescription.sdp)
    assert set(router.transports) == {"alice"}
    for client in clients:
        await client.close()
