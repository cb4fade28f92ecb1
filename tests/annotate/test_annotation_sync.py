"""Annotations over the room's socket: y-protocols sync, validation, relay, durability."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map

from annotations.sync import (
    AwarenessEntry,
    MessageKind,
    awareness_message,
    awareness_update,
    parse_awareness,
    parse_message,
    sync_step1,
    sync_step2,
    update_message,
)
from tests.utils import Peer, ServerProcess, closing, connect, http, redeem, register

DOC = "1.2.840.99.1:1"
UID = "1.2.840.99.1"


def note(ident: str, author: str, x: float = 10.0) -> dict[str, Any]:
    return {
        "id": ident,
        "author": author,
        "created": 1.0,
        "updated": 1.0,
        "kind": "line",
        "style": {"color": "#ff0000", "width": 2.0},
        "anchor": {"study_uid": UID, "series_uid": UID, "instance_uid": UID, "frame": 1.0},
        "geometry": {"points": [[x, 10.0], [x + 30.0, 50.0]]},
    }


class YPeer:
    """A participant's Y.Doc synced through the server, as a browser's y-protocols would."""

    def __init__(self, peer: Peer, participant_id: str) -> None:
        self.peer = peer
        self.pid = participant_id
        self.doc: Doc[Any] = Doc()
        self.map: Map[Any] = self.doc.get("annotations", type=Map)
        self.errors: list[Any] = []
        peer.sio.on("y", self._on_y)

    async def _on_y(self, payload: dict[str, Any]) -> None:
        msg = parse_message(payload["data"])
        if msg.kind is MessageKind.SYNC_STEP1:
            await self.send(sync_step2(self.doc.get_update(msg.payload)))
        elif msg.kind in (MessageKind.SYNC_STEP2, MessageKind.UPDATE):
            self.doc.apply_update(msg.payload)

    async def send(self, data: bytes) -> dict[str, Any]:
        return await self.peer.sio.call("y", {"doc": DOC, "data": data}, timeout=5)

    async def sync(self) -> None:
        ack = await self.send(sync_step1(self.doc.get_state()))
        assert ack["ok"], ack

    async def draw(self, **values: dict[str, Any] | None) -> dict[str, Any]:
        sv = self.doc.get_state()
        with self.doc.transaction():
            for key, value in values.items():
                if value is None:
                    del self.map[key]
                else:
                    self.map[key] = value
        return await self.send(update_message(self.doc.get_update(sv)))

    async def settle(self, expect: dict[str, Any], timeout: float = 5) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.map.to_py() != expect:
            assert asyncio.get_running_loop().time() < deadline, (self.map.to_py(), expect)
            await asyncio.sleep(0.02)


async def _room(srv: ServerProcess) -> tuple[Any, dict[str, Any], YPeer, YPeer, YPeer]:
    dr = await register(srv.url)
    room = await dr.create_room(lobby=False)
    adm = await dr.join(room["id"])
    host = await connect(srv.url, room["id"], adm["token"])
    await host.wait("joined")
    code = await dr.make_code(room["id"])
    _, g = await redeem(srv.url, room["id"], code["code"], "Guest")
    guest = await connect(srv.url, room["id"], g["token"])
    await guest.wait("joined")
    obs_code = await dr.make_code(room["id"], role="observer")
    _, o = await redeem(srv.url, room["id"], obs_code["code"], "Student")
    obs = await connect(srv.url, room["id"], o["token"])
    await obs.wait("joined")
    return (
        dr,
        room,
        YPeer(host, adm["participant_id"]),
        YPeer(guest, g["participant_id"]),
        YPeer(obs, o["participant_id"]),
    )


async def test_strokes_converge_invalid_and_foreign_edits_refused(server: ServerProcess) -> None:
    dr, room, host, guest, obs = await _room(server)
    async with closing(host.peer, guest.peer, obs.peer):
        for p in (host, guest, obs):
            await p.sync()
        a = note("h1", host.pid)
        assert (await host.draw(h1=a))["ok"]
        await guest.settle({"h1": a})
        await obs.settle({"h1": a})

        b = note("g1", guest.pid, x=100.0)
        assert (await guest.draw(g1=b))["ok"]
        await host.settle({"h1": a, "g1": b})

        # Refused, and nobody sees them: bad schema, someone else's annotation, an observer.
        bad = note("g2", guest.pid)
        bad["style"]["color"] = "red"
        ack = await guest.draw(g2=bad)
        assert (
            ack["error"]["code"] == "annotation_rejected"
            and "style.color" in ack["error"]["message"]
        )
        ack = await guest.draw(h1={**a, "geometry": {"points": [[0.0, 0.0], [1.0, 1.0]]}})
        assert ack["error"]["code"] == "annotation_rejected"
        ack = await obs.draw(o1=note("o1", obs.pid))
        assert ack["error"]["code"] == "forbidden"
        # The host may edit the guest's annotation.
        b2 = {**b, "geometry": {"points": [[5.0, 5.0], [6.0, 6.0]]}}
        assert (await host.draw(g1=b2))["ok"]

        late = YPeer(
            await connect(server.url, room["id"], (await dr.join(room["id"]))["token"]), host.pid
        )
        async with closing(late.peer):
            await late.sync()
            await late.settle({"h1": a, "g1": b2})
        # Export: the room's annotations as JSON, per image, for its members only.
        async with dr.session.get(f"/api/rooms/{room['id']}/annotations") as r:
            assert r.status == 200
            assert await r.json() == {"room_id": room["id"], "docs": {DOC: {"h1": a, "g1": b2}}}
        async with http(server.url) as s, s.get(f"/api/rooms/{room['id']}/annotations") as r:
            assert r.status == 401
        # Garbage bytes: a clear error, the document untouched.
        ack = await guest.send(b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff")
        assert ack["error"]["code"] == "validation_error"


async def test_annotations_survive_a_restart_and_are_audited(tmp_path: Path) -> None:
    # Compacting every 4 updates: the 7 updates below leave one snapshot row and 3 updates.
    srv = ServerProcess(tmp_path / "d", env={"CONSULTD_ANNOTATION_COMPACT_EVERY": "4"}).start()
    try:
        dr, room, host, guest, obs = await _room(srv)
        async with closing(host.peer, guest.peer, obs.peer):
            await host.sync()
            for i in range(5):  # a stroke as a stream of small updates
                assert (await host.draw(h1=note("h1", host.pid, x=float(i))))["ok"]
            assert (await host.draw(h2=note("h2", host.pid)))["ok"]
            assert (await host.draw(h2=None))["ok"]
        assert srv.stop() == 0
        srv.start()
        async with http(srv.url) as s:  # a new connection: the old one died with the server
            login = {"email": dr.user["email"], "password": "correct horse battery"}
            async with s.post("/api/sessions", json=login) as r:
                assert r.status == 200
            async with s.post(f"/api/rooms/{room['id']}/join", json={}) as r:
                token = (await r.json())["token"]
        again = YPeer(await connect(srv.url, room["id"], token), host.pid)
        async with closing(again.peer):
            await again.sync()
            await again.settle({"h1": note("h1", host.pid, x=4.0)})
    finally:
        srv.stop()
    assert not srv.errors_logged(), srv.errors_logged()
    db = sqlite3.connect(tmp_path / "d" / "consultd.sqlite3")
    rows = db.execute("select seq, author_id from annotation_updates order by seq").fetchall()
    assert rows == [(4, "compaction"), (5, host.pid), (6, host.pid), (7, host.pid)]
    details = [
        r[0]
        for r in db.execute(
            "select detail from audit_events where action = 'annotations.changed' order by seq"
        )
    ]
    assert '"added": ["h1"]' in details[0] and '"deleted": ["h2"]' in details[-1]
    assert all("geometry" not in d for d in details), "ids only, never content"


def _pointer(client: int, clock: int, state: bytes) -> bytes:
    return awareness_message(awareness_update([AwarenessEntry(client, clock, state)]))


def _awareness_of(messages: list[bytes]) -> list[AwarenessEntry]:
    return [
        e
        for m in messages
        if (msg := parse_message(m)).kind is MessageKind.AWARENESS
        for e in parse_awareness(msg.payload)
    ]


async def test_pointers_are_relayed_kept_for_late_peers_and_cleared_on_leave(
    server: ServerProcess,
) -> None:
    _, _, host, guest, obs = await _room(server)
    got: dict[str, list[bytes]] = {"host": [], "obs": []}
    host.peer.sio.on("y", lambda p: got["host"].append(p["data"]))
    async with closing(host.peer, obs.peer):
        async with closing(guest.peer):
            state = b'{"pointer":{"x":10,"y":20},"user":{"name":"Guest"}}'
            ack = await guest.send(_pointer(4242, 1, state))
            assert ack["ok"], ack
            deadline = asyncio.get_running_loop().time() + 5
            while AwarenessEntry(4242, 1, state) not in _awareness_of(got["host"]):
                assert asyncio.get_running_loop().time() < deadline, got["host"]
                await asyncio.sleep(0.02)
            # Someone else's client id, and states other peers could not JSON.parse: refused.
            ack = await obs.send(_pointer(4242, 2, b"null"))
            assert ack["error"]["code"] == "forbidden", ack
            ack = await guest.send(_pointer(4242, 2, b"{not json"))
            assert ack["error"]["code"] == "validation_error", ack
            # A peer that syncs now is shown the pointer at once.
            obs.peer.sio.on("y", lambda p: got["obs"].append(p["data"]))
            assert (await obs.send(sync_step1(obs.doc.get_state())))["ok"]
            deadline = asyncio.get_running_loop().time() + 5
            while AwarenessEntry(4242, 1, state) not in _awareness_of(got["obs"]):
                assert asyncio.get_running_loop().time() < deadline, got["obs"]
                await asyncio.sleep(0.02)
        # The guest's socket closed: everyone is told its pointer is gone (next clock, null).
        deadline = asyncio.get_running_loop().time() + 5
        while AwarenessEntry(4242, 2, b"null") not in _awareness_of(got["host"]):
            assert asyncio.get_running_loop().time() < deadline, _awareness_of(got["host"])
            await asyncio.sleep(0.02)


async def test_a_burst_of_updates_converges_through_coalesced_fan_out(
    server: ServerProcess,
) -> None:
    _, _, host, guest, obs = await _room(server)
    async with closing(host.peer, guest.peer, obs.peer):
        for p in (host, guest, obs):
            await p.sync()
        # Two drawers at once, strokes as streams of small updates, acks not awaited in turn.
        sends = []
        for i in range(25):
            sends.append(host.draw(h1=note("h1", host.pid, x=float(i))))
            sends.append(guest.draw(g1=note("g1", guest.pid, x=float(100 + i))))
        acks = await asyncio.gather(*sends)
        assert all(a["ok"] for a in acks), acks
        final = {"h1": note("h1", host.pid, x=24.0), "g1": note("g1", guest.pid, x=124.0)}
        for p in (host, guest, obs):
            await p.settle(final)
