"""Stop and restart on the same store: rooms, codes, participants, chat and audit survive.

Runs against SQLite and PostgreSQL (the machine's server on 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import sqlalchemy as sa

from consultd.audit.log import AuditLog
from consultd.store.db import Database
from consultd.store.tables import audit_events
from tests.utils import ServerProcess, closing, connect, http, redeem, register


async def test_restart_keeps_everything(tmp_path: Path, database_url: str) -> None:
    srv = ServerProcess(tmp_path / "d", database_url=database_url).start()
    dr = await register(srv.url, email="host@h.example")
    room = await dr.create_room("Tumour board", lobby=False)
    code = await dr.make_code(room["id"], max_uses=5)
    host_adm = await dr.join(room["id"])
    _, guest_adm = await redeem(srv.url, room["id"], code["code"], "Dr Guest")
    host = await connect(srv.url, room["id"], host_adm["token"])
    guest = await connect(srv.url, room["id"], guest_adm["token"])
    async with closing(host, guest):
        await guest.wait("joined")
        acks = [await host.call("chat", {"id": f"m{i}", "text": f"finding {i}"}) for i in range(5)]
        assert all(a["ok"] for a in acks)
    assert srv.stop() == 0

    srv.start()  # same data dir, same database
    try:
        async with http(srv.url) as s:
            async with s.post(
                "/api/sessions",
                json={"email": "host@h.example", "password": "correct horse battery"},
            ) as r:
                assert r.status == 200
            async with s.get(f"/api/rooms/{room['id']}") as r:
                assert (await r.json())["title"] == "Tumour board"
            async with s.get(f"/api/rooms/{room['id']}/codes") as r:
                codes = (await r.json())["codes"]
                assert [(c["id"], c["uses"]) for c in codes] == [(code["id"], 1)]
            async with s.get(f"/api/rooms/{room['id']}/audit") as r:
                actions = [e["action"] for e in (await r.json())["events"]]
        assert actions[:3] == ["room.created", "code.created", "physician.joined"]
        assert "code.redeemed" in actions and "participant.joined" in actions

        # The guest's token still works, chat history is there, and the code still redeems.
        guest = await connect(srv.url, room["id"], guest_adm["token"])
        async with closing(guest):
            joined = await guest.wait("joined")
            assert [m["text"] for m in joined["history"]] == [f"finding {i}" for i in range(5)]
            assert joined["self"]["id"] == guest_adm["participant_id"]
            ack = await guest.call("chat", {"id": "after", "text": "still here"})
            assert ack["message"]["seq"] == 6
        assert (await redeem(srv.url, room["id"], code["code"], "Late"))[0] == 201
    finally:
        srv.stop()
    assert not srv.errors_logged(), srv.errors_logged()

    # The audit chain is intact.
    url = database_url or f"sqlite:///{tmp_path / 'd' / 'consultd.sqlite3'}"
    db = Database(url)
    try:
        async with db.read() as conn:
            rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    sa.select(audit_events)
                    .where(audit_events.c.scope == room["id"])
                    .order_by(audit_events.c.seq)
                )
            ]
    finally:
        await db.close()
    assert AuditLog.verify(rows)
    rows[1]["actor"] = "someone else"
    assert not AuditLog.verify(rows), "an edited event breaks the chain"


async def test_sigterm_tells_clients_and_loses_no_acknowledged_chat(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "d").start()
    dr = await register(srv.url)
    room = await dr.create_room(lobby=False)
    host = await connect(srv.url, room["id"], (await dr.join(room["id"]))["token"])
    await host.wait("joined")
    sends = [
        asyncio.ensure_future(host.call("chat", {"id": f"s{i}", "text": "x"})) for i in range(10)
    ]
    acked = [a for a in await asyncio.gather(*sends) if a["ok"]]
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    await host.wait("server_shutdown")
    assert await asyncio.to_thread(srv.wait_exit, 8) == 0
    srv.start()
    try:
        async with http(srv.url) as s:
            async with s.post(
                "/api/sessions",
                json={"email": dr.user["email"], "password": "correct horse battery"},
            ) as r:
                assert r.status == 200
            async with s.post(f"/api/rooms/{room['id']}/join", json={}) as r:
                token = (await r.json())["token"]
        again = await connect(srv.url, room["id"], token)
        async with closing(again, host):
            joined = await again.wait("joined")
            stored = {m["id"] for m in joined["history"]}
            assert {a["message"]["id"] for a in acked} <= stored
    finally:
        srv.stop()
