"""Loss repaired by NACK: from the producer's cache downstream, by the publisher upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from media import Router

from .peers import ClientPeer, wait_for


@pytest.fixture
async def clients() -> AsyncIterator[tuple[Router, ClientPeer, ClientPeer]]:
    router = Router("room-loss")
    alice, bob = ClientPeer("alice", router), ClientPeer("bob", router)
    await alice.publish(0)
    await bob.publish(1)
    await wait_for(lambda: bob.frames_from("alice", "video") > 10, 20, "bob to decode alice")
    yield router, alice, bob
    await alice.close()
    await bob.close()
    await router.close()


def lossy(deliver: Callable[[bytes], bool | None], every: int) -> Callable[[bytes], bool]:
    count = 0

    def maybe(data: bytes) -> bool:
        nonlocal count
        count += 1
        if count % every == 0:
            return True  # "sent", and lost on the way
        deliver(data)
        return True

    return maybe


async def test_loss_towards_a_receiver_is_repaired_from_the_cache(
    clients: tuple[Router, ClientPeer, ClientPeer],
) -> None:
    _, _, bob = clients
    (consumer,) = [c for c in bob.transport.consumers if c.kind == "video"]
    consumer._send = lossy(consumer._send, every=5)
    frames = bob.frames_from("alice", "video")
    await wait_for(lambda: consumer.retransmitted >= 5, 10, "NACKed packets resent from the cache")
    await wait_for(lambda: bob.frames_from("alice", "video") > frames + 30, 10, "video goes on")
    assert consumer.nack_misses == 0


async def test_loss_from_a_publisher_is_nacked_upstream(
    clients: tuple[Router, ClientPeer, ClientPeer],
) -> None:
    _, alice, bob = clients
    (producer,) = [p for p in alice.transport.producers if p.kind == "video"]
    bridge = alice.transport._bridge
    assert bridge is not None and producer.ssrc is not None
    bridge._fast[producer.ssrc] = lossy(bridge._fast[producer.ssrc], every=5)  # type: ignore[assignment]
    frames = bob.frames_from("alice", "video")
    # bob NACKs the gaps; the cache lacks them; the SFU NACKs alice, who resends over RTX
    await wait_for(lambda: producer.rtx_received >= 3, 10, "retransmissions from the publisher")
    assert producer.nacks_sent > 0
    await wait_for(lambda: bob.frames_from("alice", "video") > frames + 30, 10, "video goes on")
