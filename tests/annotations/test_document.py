# No ``from __future__ import annotations``: it would shadow the package name (test_package).
import os
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from annotations.document import (
    MAP_NAME,
    AnnotationDocument,
    AnnotationRejected,
    Applied,
    DocumentClosed,
)
from annotations.sync import MessageKind, parse_message, sync_step1, sync_step2

ANCHOR = {
    "study_uid": "1.2.840.1",
    "series_uid": "1.2.840.1.1",
    "instance_uid": "1.2.840.1.1.7",
    "frame": 1,
}


def note(ident: str, author: str, t: int = 1, x: float = 10.0) -> dict[str, Any]:
    return {
        "id": ident,
        "author": author,
        "created": 1,
        "updated": t,
        "kind": "point",
        "style": {"color": "#ffffff", "width": 3},
        "anchor": ANCHOR,
        "geometry": {"points": [[x, 20.0]]},
    }


class Client:
    """A browser's Y.Doc, reduced to what the tests need."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.doc: Doc[Any] = Doc()
        self.map: Map[Any] = self.doc.get(MAP_NAME, type=Map)

    def edit(self, **changes: dict[str, Any] | None) -> bytes:
        sv = self.doc.get_state()
        with self.doc.transaction():
            for key, value in changes.items():
                if value is None:
                    del self.map[key]
                else:
                    self.map[key] = value
        return self.doc.get_update(sv)

    def sync_with(self, server: AnnotationDocument, *, is_host: bool = False) -> None:
        """SyncStep1/SyncStep2 both ways through the message functions."""
        step1 = parse_message(sync_step1(self.doc.get_state()))
        step2 = parse_message(sync_step2(server.diff(step1.payload)))
        assert step2.kind is MessageKind.SYNC_STEP2
        self.doc.apply_update(step2.payload)
        step1 = parse_message(sync_step1(server.state_vector()))
        step2 = parse_message(sync_step2(self.doc.get_update(step1.payload)))
        server.apply(step2.payload, author=self.name, is_host=is_host)


def fingerprint(doc: AnnotationDocument) -> tuple[dict[int, int], dict[str, Any]]:
    """What must not change when an update is refused (encodings may reorder clients)."""
    return decode_state_vector(doc.state_vector()), doc.annotations()


def test_valid_update_is_accepted_and_visible() -> None:
    server, alice = AnnotationDocument(), Client("alice")
    applied = server.apply(alice.edit(a1=note("a1", "alice")), author="alice", is_host=False)
    assert applied == Applied(added=("a1",), changed=True)
    stored = server.annotations()["a1"]
    assert stored["author"] == "alice" and stored["geometry"] == {"points": [[10.0, 20.0]]}
    applied = server.apply(alice.edit(a1=note("a1", "alice", t=2)), author="alice", is_host=False)
    assert applied.updated == ("a1",) and not applied.added
    applied = server.apply(alice.edit(a1=None), author="alice", is_host=False)
    assert applied.deleted == ("a1",)
    assert server.annotations() == {}


def test_duplicate_update_changes_nothing() -> None:
    server, alice = AnnotationDocument(), Client("alice")
    update = alice.edit(a1=note("a1", "alice"))
    server.apply(update, author="alice", is_host=False)
    before = fingerprint(server)
    applied = server.apply(update, author="alice", is_host=False)
    assert applied == Applied() and not applied
    assert fingerprint(server) == before


def _seeded() -> tuple[AnnotationDocument, Client, Client]:
    server, alice, bob = AnnotationDocument(), Client("alice"), Client("bob")
    server.apply(alice.edit(a1=note("a1", "alice")), author="alice", is_host=False)
    server.apply(bob.edit(b1=note("b1", "bob")), author="bob", is_host=False)
    alice.sync_with(server)
    bob.sync_with(server)
    return server, alice, bob


BAD = note("a2", "alice") | {"style": {"color": "red", "width": 3}}


@pytest.mark.parametrize(
    ("who", "changes", "path"),
    [
        ("alice", {"a2": BAD}, "a2.style.color"),
        ("alice", {"a2": note("a2", "alice"), "a3": BAD | {"id": "a3"}}, "a3.style.color"),
        ("alice", {"a2": note("zz", "alice")}, "a2.id"),
        ("alice", {"a2": note("a2", "bob")}, "a2.author"),
        ("alice", {"a2": {"id": "a2"}}, "a2.author"),
        ("alice", {"a2": "not an object"}, "a2"),
        ("alice", {"b1": note("b1", "bob", t=5)}, "b1"),
        ("alice", {"b1": note("b1", "alice", t=5)}, "b1"),
        ("alice", {"b1": None}, "b1"),
        ("alice", {"a1": note("a1", "bob", t=5)}, "a1.author"),
    ],
)
def test_rejected_updates_leave_the_document_unchanged(
    who: str, changes: dict[str, Any], path: str
) -> None:
    server, alice, _ = _seeded()
    before = fingerprint(server)
    with pytest.raises(AnnotationRejected) as info:
        server.apply(alice.edit(**changes), author=who, is_host=False)
    assert info.value.path == path
    assert fingerprint(server) == before
    # The twin was rebuilt: a later valid update is checked against the real state.
    fresh = Client("carol")
    update = fresh.edit(c1=note("c1", "carol"))
    assert server.apply(update, author="carol", is_host=False).added == ("c1",)


def test_host_may_edit_and_delete_others_but_not_reassign() -> None:
    server, _, bob = _seeded()
    applied = server.apply(bob.edit(a1=note("a1", "alice", t=9)), author="bob", is_host=True)
    assert applied.updated == ("a1",)
    assert server.annotations()["a1"]["updated"] == 9
    with pytest.raises(AnnotationRejected, match="may not change"):
        server.apply(bob.edit(a1=note("a1", "bob", t=10)), author="bob", is_host=True)
    host = Client("bob")  # the rejected edit lives on in the old client: start afresh
    host.sync_with(server, is_host=True)
    applied = server.apply(host.edit(a1=None), author="bob", is_host=True)
    assert applied.deleted == ("a1",)
    assert set(server.annotations()) == {"b1"}


def test_garbage_oversize_and_foreign_roots_are_rejected() -> None:
    server, _, _ = _seeded()
    before = fingerprint(server)
    with pytest.raises(AnnotationRejected, match="not a Yjs update"):
        server.apply(b"\xff\x01garbage", author="alice", is_host=False)
    small = AnnotationDocument(max_update_bytes=10)
    with pytest.raises(AnnotationRejected, match="larger than 10 bytes"):
        small.apply(Client("alice").edit(a1=note("a1", "alice")), author="alice", is_host=False)
    other: Doc[Any] = Doc()
    text = other.get("notes", type=Text)
    text += "hello"
    with pytest.raises(AnnotationRejected, match="root type"):
        server.apply(other.get_update(), author="alice", is_host=False)
    with pytest.raises(AnnotationRejected, match="state vector"):
        server.diff(b"\xff\xff")
    assert fingerprint(server) == before


def test_snapshot_load_round_trip_and_cache() -> None:
    server, _, _ = _seeded()
    snap = server.snapshot()
    assert server.snapshot() is snap
    packed = server.compressed_snapshot()
    assert server.compressed_snapshot() is packed and zlib.decompress(packed) == snap
    for loaded in (AnnotationDocument.load(snap), AnnotationDocument.load(packed, compressed=True)):
        assert loaded.annotations() == server.annotations()
        # The same clocks; the encoding may list the clients in another order.
        assert decode_state_vector(loaded.state_vector()) == decode_state_vector(
            server.state_vector()
        )
        again = AnnotationDocument.load(loaded.snapshot())
        assert again.annotations() == server.annotations()
        assert decode_state_vector(again.state_vector()) == decode_state_vector(
            server.state_vector()
        )
        carol = Client("carol")
        assert loaded.apply(carol.edit(c1=note("c1", "carol")), author="carol", is_host=False)
    alice = Client("alice")
    server.apply(alice.edit(a9=note("a9", "alice")), author="alice", is_host=False)
    assert server.snapshot() != snap and server.compressed_snapshot() != packed


def test_load_refuses_bad_snapshots() -> None:
    with pytest.raises(AnnotationRejected, match="not zlib"):
        AnnotationDocument.load(b"nope", compressed=True)
    with pytest.raises(AnnotationRejected, match="not a Yjs update"):
        AnnotationDocument.load(b"\xff")
    bad = Client("x")
    bad.edit(a1={"id": "a1"})
    with pytest.raises(AnnotationRejected):
        AnnotationDocument.load(bad.doc.get_update())


def test_close_is_idempotent() -> None:
    server, _, _ = _seeded()
    server.close()
    server.close()
    assert server.closed
    with pytest.raises(DocumentClosed):
        server.apply(b"\x00\x00", author="alice", is_host=False)
    with pytest.raises(DocumentClosed):
        server.snapshot()


OPS = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["set", "del"]), st.integers(0, 2)),
    max_size=15,
)


@settings(
    max_examples=int(os.environ.get("CONVERGENCE_EXAMPLES", "40")), deadline=None, derandomize=True
)
@given(OPS, st.data())
def test_concurrent_clients_converge(ops: list[tuple[int, str, int]], data: st.DataObject) -> None:
    clients = [Client("c" + str(i)) for i in range(3)]
    server = AnnotationDocument()
    updates: list[tuple[bytes, str]] = []
    for t, (who, op, slot) in enumerate(ops):
        client = clients[who]
        key = client.name + "k" + str(slot)
        if op == "del" and key not in client.map:
            continue
        value = None if op == "del" else note(key, client.name, t=t + 1, x=float(t))
        updates.append((client.edit(**{key: value}), client.name))
    # A socket keeps one client's messages in order; clients interleave at random, and a
    # retry may deliver an update twice.
    queues = {c.name: [u for u in updates if u[1] == c.name] for c in clients}
    delivered: list[tuple[bytes, str]] = []
    while any(queues.values()):
        name = data.draw(st.sampled_from(sorted(n for n, q in queues.items() if q)))
        delivered.append(queues[name].pop(0))
        if data.draw(st.booleans()) and data.draw(st.booleans()):
            delivered.append(delivered[-1])
    for update, author in delivered:
        server.apply(update, author=author, is_host=False)
    for client in clients:
        client.sync_with(server)
    for client in clients:
        client.sync_with(server)
    expected = server.annotations()
    for client in clients:
        assert client.map.to_py() == expected
    # Same state vectors (an encoding may list the clients in any order).
    assert len({frozenset(decode_state_vector(c.doc.get_state())) for c in clients}) == 1


def decode_state_vector(data: bytes) -> dict[int, int]:
    """lib0: varUint count, then (varUint client, varUint clock) pairs."""
    numbers: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            numbers.append(value)
            value = shift = 0
    assert numbers[0] * 2 == len(numbers) - 1
    return dict(zip(numbers[1::2], numbers[2::2], strict=True))


def test_an_update_ahead_of_its_dependencies_is_refused_not_misattributed() -> None:
    alice = Client("alice")
    first = alice.edit(a1=note("a1", "alice", t=1, x=1.0))
    second = alice.edit(a1=note("a1", "alice", t=2, x=2.0))
    server = AnnotationDocument()
    before = server.state_vector()
    with pytest.raises(AnnotationRejected, match="resync"):
        server.apply(second, author="alice", is_host=False)
    assert decode_state_vector(server.state_vector()) == decode_state_vector(before)
    # Once the gap is filled (here: in order), both apply and are attributed to Alice.
    assert server.apply(first, author="alice", is_host=False).added == ("a1",)
    assert server.apply(second, author="alice", is_host=False).updated == ("a1",)
    assert server.annotations()["a1"]["geometry"] == note("a1", "alice", t=2, x=2.0)["geometry"]


def test_structs_waiting_on_items_the_server_lacks_are_refused_not_held() -> None:
    """Alice overwrites bob's annotation from a state the server never had: yrs would hold
    her structs back and integrate them with bob's next update, checked against bob."""
    server = AnnotationDocument()
    bob, alice = Client("bob"), Client("alice")
    unseen = bob.edit(b1=note("b1", "bob"))  # never sent to the server
    alice.doc.apply_update(unseen)
    before = fingerprint(server)
    with pytest.raises(AnnotationRejected, match="lacks"):
        server.apply(alice.edit(b1=note("b1", "bob", t=5)), author="bob", is_host=True)
    assert fingerprint(server) == before
    # Bob's own update then goes through, checked against bob alone.
    assert server.apply(unseen, author="bob", is_host=False).added == ("b1",)
    assert server.annotations()["b1"] == note("b1", "bob")


def test_trusted_load_skips_validation_untrusted_refuses() -> None:
    bad = Client("alice")
    bad.map["a1"] = {"id": "a1"}  # not an annotation
    with pytest.raises(AnnotationRejected):
        AnnotationDocument.load(bad.doc.get_update())
    # The server's own log holds only what it validated: it is loaded as it is.
    assert AnnotationDocument.load(bad.doc.get_update(), trusted=True).annotations() == {
        "a1": {"id": "a1"}
    }


def test_a_delete_before_its_add_is_refused_not_taken_for_a_duplicate() -> None:
    server, alice = AnnotationDocument(), Client("alice")
    add = alice.edit(a9=note("a9", "alice"))
    delete = alice.edit(a9=None)
    with pytest.raises(AnnotationRejected, match="lacks"):
        server.apply(delete, author="alice", is_host=False)
    assert server.apply(add, author="alice", is_host=False).added == ("a9",)
    assert server.apply(delete, author="alice", is_host=False).deleted == ("a9",)
    # Sent again, the same delete is a duplicate.
    assert not server.apply(delete, author="alice", is_host=False).changed


def test_the_host_may_restore_anothers_annotation_a_participant_may_not() -> None:
    server, alice, bob = _seeded()
    b1 = bob.map["b1"]
    assert server.apply(bob.edit(b1=None), author="bob", is_host=False).deleted == ("b1",)
    alice.sync_with(server)
    with pytest.raises(AnnotationRejected, match="not the sender"):
        server.apply(alice.edit(b1=b1), author="alice", is_host=False)
    host = Client("host")
    host.sync_with(server, is_host=True)
    assert server.apply(host.edit(b1=b1), author="host", is_host=True).added == ("b1",)


def test_a_full_document_takes_deletions_only() -> None:
    server, alice = AnnotationDocument(max_document_bytes=4000), Client("alice")
    added = 0
    with pytest.raises(AnnotationRejected, match="too many annotations"):
        for i in range(100):
            server.apply(
                alice.edit(**{f"a{i}": note(f"a{i}", "alice")}), author="alice", is_host=False
            )
            added += 1
    assert 0 < added < 100 and len(server.annotations()) == added
    alice = Client("alice")
    alice.sync_with(server)
    assert server.apply(alice.edit(a0=None), author="alice", is_host=False).deleted == ("a0",)
    more = alice.edit(b1=note("b1", "alice"))
    assert server.apply(more, author="alice", is_host=False).added == ("b1",), "room again"
