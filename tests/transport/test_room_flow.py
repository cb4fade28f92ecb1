"""End to end over a real server: HTTP admission, socket.io lobby, presence and chat."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import msgpack
import pytest

from tests.utils import ServerProcess, closing, connect, redeem, register


async def _room_with_host(srv: ServerProcess, *, lobby: bool = True):  # type: ignore[no-untyped-def]
    dr = await register(srv.url)
    room = await dr.create_room(lobby=lobby)
    adm = await dr.join(room["id"])
    host = await connect(srv.url, room["id"], adm["token"])
    await host.wait("joined")
    return dr, room, adm, host


async def _room_with_two_guests(srv: ServerProcess):  # type: ignore[no-untyped-def]
    """A lobby-less room, its share code, its host and two joined guests (admission, peer)."""
    dr, room, _, host = await _room_with_host(srv, lobby=False)
    code = await dr.make_code(room["id"])
    guests = []
    for name in ("A", "B"):
        _, adm = await redeem(srv.url, room["id"], code["code"], name)
        peer = await connect(srv.url, room["id"], adm["token"])
        await peer.wait("joined")
        guests.append((adm, peer))
    return room, code, host, guests[0], guests[1]


async def test_code_redeem_lobby_admit_chat_history(server: ServerProcess) -> None:
    dr, room, _, host = await _room_with_host(server)
    code = await dr.make_code(room["id"], role="participant", max_uses=2)
    assert len(code["code"]) == 29 and code["code"].count("-") == 4

    status, guest_adm = await redeem(
        server.url, room["id"], code["code"].lower().replace("-", " "), "Dr Guest"
    )
    assert status == 201 and guest_adm["state"] == "lobby"
    guest = await connect(server.url, room["id"], guest_adm["token"])
    async with closing(host, guest):
        await guest.wait("lobby")
        lobby = await host.wait("presence", lambda p: p["state"] == "lobby")
        assert lobby["id"] == guest_adm["participant_id"]
        assert not guest.of("chat")

        ack = await host.call("chat", {"id": "before-admit", "text": "history please"})
        assert ack["ok"] and ack["message"]["seq"] == 1
        assert (await host.call("admit", {"participant_id": guest_adm["participant_id"]}))["ok"]

        joined = await guest.wait("joined")
        assert [m["text"] for m in joined["history"]] == ["history please"]
        assert {p["name"] for p in joined["participants"]} == {"Dr Ada", "Dr Guest"}
        await host.wait(
            "presence", lambda p: p["id"] == guest_adm["participant_id"] and p["state"] == "joined"
        )

        ack = await guest.call("chat", {"id": "g-1", "text": "bonjour"})
        assert ack["ok"]
        got = await host.wait("chat", lambda m: m["id"] == "g-1")
        assert got["author_name"] == "Dr Guest" and got["seq"] == 2
        assert not guest.of("chat"), "the sender's own message comes back in the ack only"


async def test_retried_chat_is_stored_once(server: ServerProcess) -> None:
    _dr, _room, _, host = await _room_with_host(server, lobby=False)
    async with closing(host):
        acks = await asyncio.gather(
            *(host.call("chat", {"id": "same", "text": "once"}) for _ in range(5))
        )
        assert {a["message"]["seq"] for a in acks} == {1}
        again = await host.call("chat", {"id": "same", "text": "once"})
        assert again["message"]["seq"] == 1
        nxt = await host.call("chat", {"id": "other", "text": "twice"})
        assert nxt["message"]["seq"] == 2
    db = sqlite3.connect(server.data_dir / "consultd.sqlite3")
    assert db.execute("select count(*) from chat_messages").fetchone()[0] == 2


async def test_reconnect_resumes_same_participant_and_misses_nothing(
    fast_grace_server: ServerProcess,
) -> None:
    srv = fast_grace_server
    dr, room, _, host = await _room_with_host(srv, lobby=False)
    code = await dr.make_code(room["id"])
    _, adm = await redeem(srv.url, room["id"], code["code"])
    guest = await connect(srv.url, room["id"], adm["token"])
    joined = await guest.wait("joined")
    await guest.sio.disconnect()
    await host.wait(
        "presence", lambda p: p["id"] == adm["participant_id"] and p["state"] == "reconnecting"
    )
    await host.call("chat", {"id": "while-away", "text": "missed?"})

    again = await connect(srv.url, room["id"], adm["token"], since=joined["last_seq"])
    async with closing(host, again):
        rejoined = await again.wait("joined")
        assert rejoined["self"]["id"] == adm["participant_id"]
        assert [m["id"] for m in rejoined["history"]] == ["while-away"]
        ids = [p["id"] for p in rejoined["participants"]]
        assert len(ids) == len(set(ids)) == 2, "no ghost duplicate"
        await host.wait(
            "presence", lambda p: p["id"] == adm["participant_id"] and p["state"] == "joined"
        )

        # A second socket with the same token replaces the first one.
        third = await connect(srv.url, room["id"], adm["token"])
        await third.wait("joined")
        await asyncio.sleep(0.3)
        assert not again.sio.connected
        await third.sio.disconnect()

        # Past the grace period the participant is shown as left.
        await host.wait(
            "presence",
            lambda p: p["id"] == adm["participant_id"] and p["state"] == "left",
            timeout=5,
        )


async def test_remove_and_end(server: ServerProcess) -> None:
    room, code, host, (a, pa), (b, pb) = await _room_with_two_guests(server)
    async with closing(host, pa, pb):
        assert (await host.call("remove", {"participant_id": a["participant_id"]}))["ok"]
        await pa.wait("removed")
        await pb.wait(
            "presence", lambda p: p["id"] == a["participant_id"] and p["state"] == "removed"
        )
        await asyncio.sleep(0.2)
        assert not pa.sio.connected
        # The removed participant's token is revoked.
        with pytest.raises(Exception, match="revoked|unauthorized"):
            await connect(server.url, room["id"], a["token"])

        assert (await host.call("end"))["ok"]
        await pb.wait("ended")
        await asyncio.sleep(0.2)
        assert not pb.sio.connected
        with pytest.raises(Exception, match="ended"):
            await connect(server.url, room["id"], b["token"])
        status, body = await redeem(server.url, room["id"], code["code"])
        assert status == 410 and body["error"]["code"] == "gone"


async def test_transfer_host_and_reject(server: ServerProcess) -> None:
    dr, room, _, host = await _room_with_host(server)
    other = await register(server.url, "Dr Bob")
    async with other.session.post(f"/api/rooms/{room['id']}/join", json={}) as r:
        assert r.status == 403
    await dr.post(f"/api/rooms/{room['id']}/invites", {"email": other.user["email"]}, 201)
    bob_adm = await other.join(room["id"])
    assert bob_adm["state"] == "admitted", "an invited physician skips the lobby"
    bob = await connect(server.url, room["id"], bob_adm["token"])
    code = await dr.make_code(room["id"])
    _, g = await redeem(server.url, room["id"], code["code"], "Waiting")
    guest = await connect(server.url, room["id"], g["token"])
    async with closing(host, bob, guest):
        await bob.wait("joined")
        await guest.wait("lobby")
        ack = await host.call("transfer_host", {"participant_id": g["participant_id"]})
        assert not ack["ok"] and ack["error"]["code"] in {"forbidden", "conflict"}
        assert (await host.call("transfer_host", {"participant_id": bob_adm["participant_id"]}))[
            "ok"
        ]
        await bob.wait(
            "presence", lambda p: p["id"] == bob_adm["participant_id"] and p["role"] == "host"
        )
        await bob.wait(
            "presence", lambda p: p["id"] == g["participant_id"] and p["state"] == "lobby"
        )
        denied = await host.call("admit", {"participant_id": g["participant_id"]})
        assert denied["error"]["code"] == "forbidden"
        assert (await bob.call("reject", {"participant_id": g["participant_id"]}))["ok"]
        await guest.wait("rejected")
        async with other.session.get(f"/api/rooms/{room['id']}/codes") as r:
            assert r.status == 200, "the new host manages the codes"


async def test_codes_expired_revoked_overused_locked(server: ServerProcess) -> None:
    dr, room, _, host = await _room_with_host(server)
    async with closing(host):
        once = await dr.make_code(room["id"], max_uses=1)
        assert (await redeem(server.url, room["id"], once["code"]))[0] == 201
        status, body = await redeem(server.url, room["id"], once["code"])
        assert (status, body["error"]["code"]) == (410, "gone")

        revoked = await dr.make_code(room["id"])
        async with dr.session.delete(f"/api/rooms/{room['id']}/codes/{revoked['id']}") as r:
            assert r.status == 204
        assert (await redeem(server.url, room["id"], revoked["code"]))[0] == 410

        expired = await dr.make_code(room["id"])
        db = sqlite3.connect(server.data_dir / "consultd.sqlite3")
        db.execute(
            "update share_codes set expires_at = ? where id = ?", (time.time() - 1, expired["id"])
        )
        db.commit()
        assert (await redeem(server.url, room["id"], expired["code"]))[0] == 410

        target = await dr.make_code(room["id"])
        wrong = target["code"][:6] + ("0" if target["code"][6] != "0" else "1") + target["code"][7:]
        status, body = await redeem(server.url, room["id"], wrong)
        assert (status, body["error"]["code"]) == (403, "forbidden")
        listed = {
            c["id"]: c
            for c in (await (await dr.session.get(f"/api/rooms/{room['id']}/codes")).json())[
                "codes"
            ]
        }
        assert listed[target["id"]]["locked"] is False
        assert "code" not in listed[target["id"]] or listed[target["id"]]["code"] is None


async def test_code_locks_after_failures_and_rate_limits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Separate server: this test spends the per-address redemption budget.
    srv = ServerProcess(tmp_path / "d").start()
    try:
        dr = await register(srv.url)
        room = await dr.create_room()
        target = await dr.make_code(room["id"])
        wrong = target["code"][:6] + ("0" if target["code"][6] != "0" else "1") + target["code"][7:]
        statuses = [(await redeem(srv.url, room["id"], wrong))[0] for _ in range(12)]
        assert statuses[:10] == [403] * 10
        assert statuses[10:] == [429, 429], "per-address limit"
        codes = (await (await dr.session.get(f"/api/rooms/{room['id']}/codes")).json())["codes"]
        assert codes[0]["locked"] is True
    finally:
        srv.stop()
    # The audit log names the code, never the code itself.
    db = sqlite3.connect(tmp_path / "d" / "consultd.sqlite3")
    dump = "\n".join(str(r) for r in db.execute("select * from audit_events"))
    assert target["code"] not in dump and target["code"].replace("-", "")[5:] not in dump
    assert dump.count("code.failed") == 10


async def test_wrong_role_events_refused(server: ServerProcess) -> None:
    dr, room, _, host = await _room_with_host(server, lobby=False)
    code = await dr.make_code(room["id"], role="observer")
    _, obs_adm = await redeem(server.url, room["id"], code["code"], "Student")
    assert obs_adm["role"] == "observer"
    obs = await connect(server.url, room["id"], obs_adm["token"])
    async with closing(host, obs):
        await obs.wait("joined")
        for event, payload in [
            ("chat", {"id": "x", "text": "hi"}),
            ("admit", {"participant_id": obs_adm["participant_id"]}),
            ("remove", {"participant_id": obs_adm["participant_id"]}),
            ("end", {}),
            ("set_lobby", {"enabled": False}),
        ]:
            ack = await obs.call(event, payload)
            assert ack == {
                "ok": False,
                "error": {"code": "forbidden", "message": ack["error"]["message"]},
            }, event
        # Without an ack callback the refusal comes as an error event.
        await obs.sio.emit("end", {})
        err = await obs.wait("error")
        assert err["code"] == "forbidden" and err["event"] == "end"
        # Physicians who are not the host cannot manage codes over HTTP either.
        stranger = await register(server.url, "Dr Nobody")
        async with stranger.session.post(f"/api/rooms/{room['id']}/codes", json={}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"


async def test_bad_payloads_refused_server_keeps_serving(server: ServerProcess) -> None:
    _, _, host, (_, pa), (_, pb) = await _room_with_two_guests(server)
    async with closing(host, pa, pb):
        cases = [
            {"id": "ok-id", "text": ""},
            {"id": "bad id!", "text": "x"},
            {"id": "y", "text": "x" * 4001},
            {"id": "z", "text": "x", "extra": 1},
            ["not", "an", "object"],
            "string",
            None,
        ]
        for bad in cases:
            ack = await pa.call("chat", bad)
            assert ack["ok"] is False and ack["error"]["code"] == "validation_error", bad
        assert (await pa.call("nope", {}))["error"]["code"] == "bad_request"

        # Over the socket.io message cap: the server drops that connection only.
        await pa.sio.emit("chat", {"id": "big", "text": "x" * 70_000})
        await asyncio.sleep(0.5)
        assert not pa.sio.connected

        # Raw garbage on the engine.io socket.
        import aiohttp

        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(
                server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
            ) as ws,
        ):
            await ws.receive()  # open packet
            await ws.send_bytes(b"\xc1\xff\x00garbage")
            await ws.send_bytes(msgpack.packb({"type": 2, "nsp": "/", "data": ["chat"]}))
            await ws.send_str("4not msgpack")
            await ws.send_str("garbage")

        # Others are unaffected.
        ack = await pb.call("chat", {"id": "still-here", "text": "fine"})
        assert ack["ok"]
        await host.wait("chat", lambda m: m["id"] == "still-here")


async def test_chat_rate_limited(server: ServerProcess) -> None:
    _dr, _room, _, host = await _room_with_host(server, lobby=False)
    async with closing(host):
        acks = [await host.call("chat", {"id": f"m{i}", "text": "spam"}) for i in range(14)]
        codes = [a["error"]["code"] for a in acks if not a["ok"]]
        assert codes and set(codes) == {"rate_limited"}
        assert sum(a["ok"] for a in acks) >= 10


async def test_connect_refused_without_valid_token(server: ServerProcess) -> None:
    dr = await register(server.url)
    room = await dr.create_room()
    for auth_token in (None, "x" * 40):
        with pytest.raises(Exception, match="unauthorized|join the room|unknown"):
            await connect(server.url, room["id"], auth_token)
    with pytest.raises(Exception):
        await connect(server.url, "0" * 32, "x" * 40)
