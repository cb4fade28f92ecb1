"""Property: the room's annotation CRDT converges through the real server, whatever the network.

Several pycrdt peers (one host, the others drawing participants) share one image document in
one room and draw at random, concurrently: add an annotation, replace their own (bumping
``updated``), delete their own, and, for the host, edit or delete someone else's. Meanwhile
the network misbehaves as the strategy decides: a peer holds back some of its own update
messages and sends them later in another order, sends a message twice, drops its socket and
reconnects later (drawing offline meanwhile), and the server is restarted (SIGTERM, then
started again on the same port and data directory).

The peers follow y-protocols (docs/protocol.md): on every connect they send sync step 1,
apply the server's step 2 and answer its step 1 with their own step 2. An update the server
refuses as out of order ("depends on changes the server lacks; resync", or "more than one
client's changes") is recovered the same way, never dropped. Any other ``annotation_rejected``
is a refusal of a legitimate change (every change here is valid and allowed): the peer does
what the browser client does (a fresh document, synced again) and the test reports it.

Checked, for every example:

- after a restart, a fresh reader finds every update acknowledged before it (``ok: true``);
- once everything is sent, the peers converge by the server's relays alone (a connected
  y-protocols client never asks again), and then, after every peer resyncs, all peers, a
  fresh reader's sync and ``GET /api/rooms/{id}/annotations`` hold the same state;
- per annotation, the final value is what the writes imply: the causally last write where no
  two writers raced (or absent if a delete saw it), one of the written values otherwise, and
  an annotation nobody deleted is present;
- no legitimate change was refused, no message went unanswered, and the server logged no
  error.

The server may coalesce its fan-out: peers only apply what arrives (a relayed update may
merge several peers' updates, an awareness message may carry several clients).

One server per module (one port and data directory, restarted in place), a fresh room per
example. A failure lists what went wrong, the trace of what each peer did, and the
``scenario(...)`` call that replays it; the failures the property found are kept below as
fixed scenarios.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import socketio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Encoder, Map

from annotations.sync import (
    MessageKind,
    SyncError,
    awareness_message,
    parse_message,
    read_var_uint,
    sync_step1,
    sync_step2,
    update_message,
)
from tests.utils import ServerProcess

DOC = "1.2.840.99.7:1"
UID = "1.2.840.99.7"
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: Longest wait for anything (an ack, a sync answer, convergence).
WAIT_S = 5.0
MAX_BATCHES = 10
READER = 9
#: A clean shutdown takes well under a second (aiohttp's own shutdown timeout is 10 s).
STOP_S = 10.0
#: For the socket.io client's own complaints when the server goes away under it.
QUIET = logging.getLogger("tests.annotate.convergence.engineio")
QUIET.setLevel(logging.CRITICAL)

# -- the server and the physicians, once per module -----------------------------------------


@dataclass
class Cast:
    """Registered physicians: index 0 hosts, 1..3 draw, the last one only reads."""

    emails: list[str]
    cookies: list[str]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Compact often, so that restarts also load snapshots, not only update logs.
    data = tmp_path_factory.mktemp("convergence") / "data"
    server = ServerProcess(data, env={"CONSULTD_ANNOTATION_COMPACT_EVERY": "5"}).start()
    yield server
    server.stop()
    assert not server.errors_logged(), server.errors_logged()


@pytest.fixture(scope="module")
def cast(srv: ServerProcess) -> Cast:
    # Registration counts against the login rate limit (10 per minute): register once.
    emails, cookies = [], []
    for i in range(5):
        email = f"conv{i}-{uuid.uuid4().hex[:8]}@hospital.example"
        body = {
            "name": f"Dr {i}",
            "email": email,
            "password": "correct horse battery",
            "specialty": "radiology",
            "country": "FR",
            "languages": ["en"],
        }
        req = urllib.request.Request(
            srv.url + "/api/accounts",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 201
            set_cookies = r.headers.get_all("Set-Cookie") or []
        emails.append(email)
        cookies.append("; ".join(c.split(";", 1)[0] for c in set_cookies))
    return Cast(emails, cookies)


class Api:
    """HTTP with a physician's session cookie or a participant token. A new connection per
    request: the server may have been restarted since the last one."""

    def __init__(self, base: str, *, cookie: str = "", token: str = "") -> None:
        headers = {"Cookie": cookie} if cookie else {"Authorization": f"Bearer {token}"}
        self.session = aiohttp.ClientSession(
            base_url=base,
            headers=headers,
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(force_close=True),
        )

    async def req(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.session.request(method, path, json=body) as r:
            data = await r.json()
            assert r.status == expect, (method, path, r.status, data)
            return data

    async def close(self) -> None:
        await self.session.close()


# -- waiting ---------------------------------------------------------------------------------


class Pulse:
    """Kicked on every message a peer receives; ``until`` waits for a condition with a
    deadline (re-checking at least every 50 ms for changes that do not kick, like a socket
    closing)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def kick(self) -> None:
        self._event.set()

    async def until(self, cond: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, 0.05))
        return True


# -- what was written, for the per-annotation expectations ------------------------------------


@dataclass
class Write:
    client: int
    generation: int
    value: dict[str, Any] | None  # None: a delete
    #: The map item a set created (client id, clock); None for a delete.
    struct: tuple[int, int] | None
    #: The writer's state vector just before the write (what it had seen).
    seen: dict[int, int]

    def saw(self, other: Write) -> bool:
        assert other.struct is not None
        client, clock = other.struct
        return self.seen.get(client, 0) > clock


@dataclass
class Context:
    srv: ServerProcess
    room_id: str
    reader_admission: dict[str, Any]
    pulse: Pulse = field(default_factory=Pulse)
    writes: dict[str, list[Write]] = field(default_factory=dict)
    trace: list[str] = field(default_factory=list)
    counter: int = 0

    def tick(self) -> int:
        self.counter += 1
        return self.counter


def state_clocks(state_vector: bytes) -> dict[int, int]:
    count, pos = read_var_uint(state_vector, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_var_uint(state_vector, pos)
        clocks[client], pos = read_var_uint(state_vector, pos)
    return clocks


def annotation(key: str, author: str, created: int, n: int) -> dict[str, Any]:
    return {
        "id": key,
        "author": author,
        "created": float(created),
        "updated": float(n),
        "kind": "line",
        "style": {"color": "#00c0ff", "width": 1.5},
        "anchor": {"study_uid": UID, "series_uid": UID, "instance_uid": UID, "frame": 1.0},
        "geometry": {"points": [[float(n), 1.0], [float(n) + 5.0, 9.5]]},
    }


def parse_awareness(payload: bytes) -> dict[int, tuple[int, Any]]:
    """An awareness update: var-uint count, then per client: id, clock, JSON state string."""
    count, pos = read_var_uint(payload, 0)
    states: dict[int, tuple[int, Any]] = {}
    for _ in range(count):
        client, pos = read_var_uint(payload, pos)
        clock, pos = read_var_uint(payload, pos)
        length, pos = read_var_uint(payload, pos)
        states[client] = (clock, json.loads(payload[pos : pos + length].decode()))
        pos += length
    if pos != len(payload):
        raise ValueError("trailing bytes in an awareness update")
    return states


# -- a peer that follows y-protocols ----------------------------------------------------------

OUT_OF_ORDER = ("resync",)  # the server's refusals that a resync answers


class YPeer:
    """One participant's Y.Doc, synced through the server as y-protocols prescribes, with a
    misbehaving network under it (held-back and duplicated messages, disconnects)."""

    def __init__(
        self, ctx: Context, index: int, name: str, admission: dict[str, Any], *, writer: bool
    ) -> None:
        self.ctx = ctx
        self.index = index
        self.name = name
        self.token: str = admission["token"]
        self.pid: str = admission["participant_id"]
        self.is_host = admission["role"] == "host"
        self.writer = writer
        self.generation = 0
        self.doc, self.map = self._new_doc()
        self.sio: socketio.AsyncClient | None = None
        self.held: list[bytes] = []  # update payloads sent later, in another order
        self.acked: list[bytes] = []  # payloads the server acknowledged with ok: true
        self.refused: list[str] = []  # legitimate changes the server refused
        self.problems: list[str] = []
        self.need_resync = False
        self.step2_in = 0
        self.step1_answered = 0
        self.out_of_order = 0
        self.awareness_clock = 0
        self.awareness: dict[int, tuple[int, Any]] = {}

    def _new_doc(self) -> tuple[Doc[Any], Map[Any]]:
        # Fixed client ids: the same example resolves concurrent writes the same way.
        client_id = 1000 * (self.index + 1) + self.generation
        doc: Doc[Any] = Doc(client_id=client_id)
        return doc, doc.get("annotations", type=Map)

    @property
    def online(self) -> bool:
        return self.sio is not None and self.sio.connected

    def log(self, text: str) -> None:
        self.ctx.trace.append(f"{self.name}: {text}")

    # -- connection --

    async def connect(self) -> None:
        sio = socketio.AsyncClient(serializer="msgpack", reconnection=False, engineio_logger=QUIET)
        joined = asyncio.Event()

        async def on_y(data: Any) -> None:
            await self._on_y(sio, data)

        sio.on("joined", lambda *_: joined.set())
        sio.on("y", on_y)
        sio.on("disconnect", lambda *_: self.ctx.pulse.kick())
        self.sio = sio  # before connecting: a relay may come before ``joined``
        try:
            await sio.connect(
                self.ctx.srv.url,
                auth={"room": self.ctx.room_id, "token": self.token},
                transports=["websocket"],
                wait_timeout=WAIT_S,
            )
        except BaseException:
            self.sio = None
            raise
        await asyncio.wait_for(joined.wait(), WAIT_S)
        await self.resync()

    async def disconnect(self) -> None:
        sio, self.sio = self.sio, None
        if sio is not None:
            await sio.disconnect()

    # -- y-protocols --

    async def _on_y(self, sio: socketio.AsyncClient, data: Any) -> None:
        if sio is not self.sio:
            return  # a socket this peer has dropped
        try:
            assert data["doc"] == DOC, data
            msg = parse_message(data["data"])
        except (AssertionError, KeyError, TypeError, SyncError) as exc:
            self.problems.append(f"{self.name}: bad y message {exc!r}")
            return
        if msg.kind is MessageKind.AWARENESS:
            try:
                self.awareness.update(parse_awareness(msg.payload))
            except (ValueError, SyncError) as exc:
                self.problems.append(f"{self.name}: bad awareness update {exc!r}")
        elif msg.kind is MessageKind.SYNC_STEP1:
            if self.writer:
                reply = self.doc.get_update(msg.payload)
                ack = await self._send(sync_step2(reply), reply, "sync step 2 (answer)")
                if ack is not None and self._out_of_order(ack):
                    self.problems.append(
                        f"{self.name}: the server refused the step 2 answering its own step 1: "
                        f"{ack['error']}"
                    )
            self.step1_answered += 1
        else:
            self.doc.apply_update(msg.payload)
            if msg.kind is MessageKind.SYNC_STEP2:
                self.step2_in += 1
        self.ctx.pulse.kick()

    @staticmethod
    def _out_of_order(ack: dict[str, Any]) -> bool:
        err = ack.get("error") or {}
        return err.get("code") == "annotation_rejected" and any(
            word in err.get("message", "") for word in OUT_OF_ORDER
        )

    async def _send(self, message: bytes, payload: bytes | None, what: str) -> Any:
        """Send one y message; return its ack (None when there was none)."""
        sio = self.sio
        if sio is None or not sio.connected:
            return None
        try:
            ack = await sio.call("y", {"doc": DOC, "data": message}, timeout=WAIT_S)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError) as exc:
            self.problems.append(f"{self.name}: no ack for {what}: {exc!r}")
            return None
        if ack.get("ok"):
            if payload is not None:
                self.acked.append(payload)
        elif self._out_of_order(ack):
            self.out_of_order += 1
            self.log(f"{what} refused as out of order ({ack['error']['message']}); resync")
        elif ack.get("error", {}).get("code") == "annotation_rejected":
            self.refused.append(f"{self.name} ({'host' if self.is_host else 'drawer'}) {what}")
            self.refused[-1] += f" refused: {ack['error']['message']}"
            self.log(f"{what} REFUSED: {ack['error']['message']}; fresh document")
            self._reset()
        else:
            self.problems.append(f"{self.name}: {what} failed: {ack}")
        return ack

    def _reset(self) -> None:
        """What the browser client does after a refusal: drop the document, sync afresh."""
        self.generation += 1
        self.doc, self.map = self._new_doc()
        self.held.clear()
        self.need_resync = True

    async def resync(self) -> None:
        """Sync step 1; wait until the server's step 2 is applied and its step 1 answered."""
        self.need_resync = False
        if not self.online:
            return
        step2_in, answered = self.step2_in, self.step1_answered
        ack = await self._send(sync_step1(self.doc.get_state()), None, "sync step 1")
        if ack is None or not ack.get("ok"):
            return
        done = await self.ctx.pulse.until(
            lambda: self.step2_in > step2_in and self.step1_answered > answered
        )
        if not done:
            self.problems.append(f"{self.name}: sync step 1 not answered in {WAIT_S} s")
        if self.need_resync:
            await self.resync()

    async def deliver(self, update: bytes, mode: str) -> None:
        if mode == "hold":
            self.held.append(update)
            return
        for _ in range(2 if mode == "dup" else 1):
            await self._send_update(update, "update")

    async def _send_update(self, update: bytes, what: str) -> None:
        ack = await self._send(update_message(update), update, what)
        if ack is not None and (self._out_of_order(ack) or self.need_resync):
            await self.resync()

    async def flush(self, seed: int | None) -> None:
        """Send the held-back updates, shuffled by ``seed`` (in order when None)."""
        if not self.online or not self.held:
            return
        held, self.held = self.held, []
        if seed is not None:
            random.Random(seed).shuffle(held)
        self.log(f"flush {len(held)} held update(s)")
        generation = self.generation
        for update in held:
            if self.generation != generation:
                break  # refused and reset: the rest belonged to the dropped document
            await self._send_update(update, "held update")

    # -- drawing --

    async def write(self, key: str, value: dict[str, Any] | None, mode: str) -> None:
        sv = self.doc.get_state()
        seen = state_clocks(sv)
        struct = None if value is None else (self.doc.client_id, seen.get(self.doc.client_id, 0))
        self.ctx.writes.setdefault(key, []).append(
            Write(self.index, self.generation, value, struct, seen)
        )
        with self.doc.transaction():
            if value is None:
                del self.map[key]
            else:
                self.map[key] = value
        what = "delete" if value is None else f"set updated={value['updated']:.0f}"
        self.log(f"{what} {key} [{mode}{'' if self.online else ', offline'}]")
        update = self.doc.get_update(sv)
        if mode == "hold" or self.online:
            await self.deliver(update, mode)

    def _keys(self, own: bool) -> list[str]:
        items = (self.map.to_py() or {}).items()
        return sorted(k for k, v in items if (v["author"] == self.pid) == own)

    async def perform(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind in ("others_edit", "others_delete") and not self.is_host:
            kind = kind.replace("others_", "")
        if kind == "add":
            n = self.ctx.tick()
            key = f"{self.name}-{n}"
            await self.write(key, annotation(key, self.pid, n, n), op[1])
        elif kind in ("edit", "others_edit"):
            keys = self._keys(own=kind == "edit")
            if not keys:
                if kind == "edit":
                    await self.perform(("add", op[2]))
                return
            key = keys[op[1] % len(keys)]
            old = self.map[key]
            value = annotation(key, old["author"], int(old["created"]), self.ctx.tick())
            await self.write(key, value, op[2])
        elif kind in ("delete", "others_delete"):
            keys = self._keys(own=kind == "delete")
            if keys:
                await self.write(keys[op[1] % len(keys)], None, op[2])
        elif kind == "flush":
            await self.flush(op[1])
        elif kind == "disconnect":
            if self.online:
                self.log("disconnect")
                await self.disconnect()
        elif kind == "reconnect":
            if not self.online:
                self.log("reconnect")
                await self.disconnect()
                await self.connect()
        elif kind == "resync":
            self.log("resync")
            await self.resync()
        elif kind == "awareness":
            await self.announce()
        else:  # pragma: no cover
            raise AssertionError(op)
        if self.need_resync:
            await self.resync()

    async def announce(self) -> None:
        if not self.online:
            return
        self.awareness_clock += 1
        enc = Encoder()
        enc.write_var_uint(1)
        enc.write_var_uint(self.doc.client_id)
        enc.write_var_uint(self.awareness_clock)
        enc.write_var_string(json.dumps({"user": self.name, "cursor": [self.awareness_clock, 1]}))
        await self._send(awareness_message(enc.to_bytes()), None, "awareness")


# -- the room, the server's view --------------------------------------------------------------


async def open_room(srv: ServerProcess, cast: Cast, n: int) -> tuple[str, list[Any], Any]:
    """A fresh room: the host, ``n - 1`` invited drawers and an invited reader."""
    host = Api(srv.url, cookie=cast.cookies[0])
    try:
        room = await host.req(
            "POST", "/api/rooms", {"title": "convergence", "summary": "", "lobby": False}, 201
        )
        rid = room["id"]
        admissions = [await host.req("POST", f"/api/rooms/{rid}/join", {}, 201)]
        for i in [*range(1, n), len(cast.emails) - 1]:
            await host.req("POST", f"/api/rooms/{rid}/invites", {"email": cast.emails[i]}, 201)
            guest = Api(srv.url, cookie=cast.cookies[i])
            try:
                admissions.append(await guest.req("POST", f"/api/rooms/{rid}/join", {}, 201))
            finally:
                await guest.close()
    finally:
        await host.close()
    assert [a["role"] for a in admissions[:n]] == ["host"] + ["participant"] * (n - 1)
    return rid, admissions[:n], admissions[n]


@dataclass
class ServerView:
    update: bytes
    state: dict[int, int]
    annotations: dict[str, Any]
    exported: dict[str, Any]


async def read_server(ctx: Context) -> tuple[ServerView, list[str]]:
    """The server's document as a fresh client's sync sees it, and as the HTTP export."""
    reader = YPeer(ctx, READER, "reader", ctx.reader_admission, writer=False)
    try:
        await reader.connect()
        view_update = reader.doc.get_update()
        state = state_clocks(reader.doc.get_state())
        annotations = reader.map.to_py() or {}
    finally:
        await reader.disconnect()
    api = Api(ctx.srv.url, token=ctx.reader_admission["token"])
    try:
        export = await api.req("GET", f"/api/rooms/{ctx.room_id}/annotations")
    finally:
        await api.close()
    problems = list(reader.problems)
    exported = export["docs"].get(DOC, {})
    if exported != annotations:
        problems.append(f"export differs from a client's sync: {exported} != {annotations}")
    return ServerView(view_update, state, annotations, exported), problems


def doc_of(*updates: bytes) -> tuple[dict[int, int], dict[str, Any]]:
    doc: Doc[Any] = Doc()
    amap = doc.get("annotations", type=Map)
    for u in updates:
        doc.apply_update(u)
    return state_clocks(doc.get_state()), amap.to_py() or {}


def missing(server: ServerView, acked: list[bytes]) -> str:
    """What the acknowledged updates hold that the server's state lacks ('' if nothing)."""
    if not acked:
        return ""
    state, annotations = doc_of(server.update, *acked)
    if state == server.state and annotations == server.annotations:
        return ""
    lost = {c: k for c, k in state.items() if server.state.get(c, 0) < k}
    diff = {
        k: tuple(
            "absent" if v is None else f"updated={v['updated']:.0f}"
            for v in (server.annotations.get(k), annotations.get(k))
        )
        for k in sorted(set(annotations) | set(server.annotations))
        if annotations.get(k) != server.annotations.get(k)
    }
    return f"acked structs the server lacks {lost}; (server, server + acked) per key {diff}"


def summary(amap: dict[str, Any]) -> dict[str, int]:
    return {k: int(v["updated"]) for k, v in sorted(amap.items())}


async def settle(ctx: Context, peers: list[YPeer], what: str) -> list[str]:
    """Wait until every peer holds the same state (by whatever the server sends)."""

    def views() -> list[tuple[Any, ...]]:
        return [
            (sorted(state_clocks(p.doc.get_state()).items()), summary(p.map.to_py() or {}))
            for p in peers
        ]

    if await ctx.pulse.until(lambda: all(v == views()[0] for v in views())):
        return []
    detail = "; ".join(f"{p.name}: {v[1]} sv={v[0]}" for p, v in zip(peers, views(), strict=True))
    return [f"{what}: peers did not converge within {WAIT_S} s: {detail}"]


def compare(peers: list[YPeer], server: ServerView, what: str) -> list[str]:
    problems = []
    for p in peers:
        state, annotations = state_clocks(p.doc.get_state()), p.map.to_py() or {}
        if state != server.state or annotations != server.annotations:
            problems.append(
                f"{what}: {p.name} {summary(annotations)} sv={state} differs from the server "
                f"{summary(server.annotations)} sv={server.state}"
            )
    return problems


def check_writes(ctx: Context, peers: list[YPeer], final: dict[str, Any]) -> list[str]:
    """The final value of each annotation against what was written (module docstring)."""
    problems = []
    for key in sorted(set(ctx.writes) | set(final)):
        writes = ctx.writes.get(key, [])
        got = final.get(key)
        if got is not None and got not in [w.value for w in writes]:
            problems.append(f"{key}: final value {summary({key: got})} was never written")
            continue
        if any(w.generation != peers[w.client].generation for w in writes):
            continue  # a peer dropped its document after a refusal (reported): unknowable
        sets = [w for w in writes if w.value is not None]
        deletes = [w for w in writes if w.value is None]
        if sets and not deletes and got is None:
            problems.append(f"{key}: written and never deleted, but absent")
        last = [w for w in sets if all(w is o or w.saw(o) for o in sets)]
        if last:  # no race between writers: the causally last write wins
            expect = None if any(d.saw(last[0]) for d in deletes) else last[0].value
            if got != expect:
                problems.append(
                    f"{key}: expected {'absent' if expect is None else summary({key: expect})}"
                    f", got {'absent' if got is None else summary({key: got})}"
                )
    return problems


# -- the scenario -----------------------------------------------------------------------------


def terminate(srv: ServerProcess) -> list[str]:
    """SIGTERM, as a supervisor would send it; SIGKILL if the server is not gone in time."""
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    try:
        code = srv.wait_exit(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        srv.stop(signal.SIGKILL)
        return [f"the server did not exit within {STOP_S} s of SIGTERM (killed)"]
    return [] if code == 0 else [f"the server exited with {code} on SIGTERM"]


async def restart(ctx: Context, peers: list[YPeer]) -> list[str]:
    acked = [u for p in peers for u in p.acked]
    was_online = [p for p in peers if p.online]
    ctx.trace.append("-- restart the server")
    problems = await asyncio.to_thread(terminate, ctx.srv)
    await ctx.pulse.until(lambda: not any(p.sio is not None and p.sio.connected for p in peers))
    for p in peers:
        await p.disconnect()
    await asyncio.to_thread(ctx.srv.start)
    server, read_problems = await read_server(ctx)
    problems += read_problems
    lost = missing(server, acked)
    if lost:
        problems.append(f"after the restart, acknowledged updates are missing: {lost}")
    for p in was_online:
        await p.connect()
    return problems


async def scenario(
    srv: ServerProcess,
    cast: Cast,
    n_peers: int,
    batches: list[list[tuple[int, tuple[Any, ...]]]],
    restarts: list[int],
) -> None:
    logged_before = srv.errors_logged()
    room_id, admissions, reader = await open_room(srv, cast, n_peers)
    ctx = Context(srv, room_id, reader)
    names = ["host"] + [f"d{i}" for i in range(1, n_peers)]
    peers = [YPeer(ctx, i, names[i], adm, writer=True) for i, adm in enumerate(admissions)]
    problems: list[str] = []
    try:
        for p in peers:
            await p.connect()
        for i, batch in enumerate(batches):
            if i in restarts:
                problems += await restart(ctx, peers)
            ctx.trace.append(f"-- batch {i}")
            ops: dict[int, list[tuple[Any, ...]]] = {}
            for who, op in batch:
                ops.setdefault(who % n_peers, []).append(op)

            async def run(peer: YPeer, todo: list[tuple[Any, ...]]) -> None:
                for op in todo:
                    await peer.perform(op)

            await asyncio.gather(*(run(peers[w], todo) for w, todo in ops.items()))

        ctx.trace.append("-- everyone back online, held updates sent")
        for p in peers:
            if not p.online:
                await p.perform(("reconnect",))
            await p.flush(None)
            if p.need_resync:
                await p.resync()
        relayed = await settle(ctx, peers, "by relays alone")
        problems += relayed
        server, read_problems = await read_server(ctx)
        problems += read_problems
        if not relayed:
            problems += compare(peers, server, "by relays alone")

        ctx.trace.append("-- every peer resyncs")
        for p in peers:
            await p.resync()
        problems += await settle(ctx, peers, "after every peer resynced")
        server, read_problems = await read_server(ctx)
        problems += read_problems
        problems += compare(peers, server, "after every peer resynced")
        lost = missing(server, [u for p in peers for u in p.acked])
        if lost:
            problems.append(f"at the end, acknowledged updates are missing: {lost}")
        problems += check_writes(ctx, peers, server.annotations)
        for p in peers:
            problems += p.refused + p.problems
        logged = srv.errors_logged()
        if logged != logged_before:
            problems.append("the server logged errors:\n" + logged[len(logged_before) :])
    finally:
        for p in peers:
            await p.disconnect()
    again = f"scenario(srv, cast, {n_peers}, {batches!r}, {restarts!r})"
    assert not problems, "\n".join(["", *problems, "", "trace:", *ctx.trace, "", again])


# -- strategies -------------------------------------------------------------------------------

delivery = st.sampled_from(["send", "send", "send", "dup", "hold", "hold"])
pick = st.integers(0, 7)
peer_op = st.one_of(
    st.tuples(st.just("add"), delivery),
    st.tuples(st.just("edit"), pick, delivery),
    st.tuples(st.just("delete"), pick, delivery),
    st.tuples(st.just("others_edit"), pick, delivery),
    st.tuples(st.just("others_delete"), pick, delivery),
    st.tuples(st.just("flush"), st.integers(0, 2**16)),
    st.tuples(st.just("disconnect")),
    st.tuples(st.just("reconnect")),
    st.tuples(st.just("resync")),
    st.tuples(st.just("awareness")),
)
batch = st.lists(st.tuples(st.integers(0, 3), peer_op), min_size=1, max_size=6)


@settings(
    max_examples=20,
    deadline=None,
    derandomize=CI,
    database=None if CI else settings.default.database,
    # A failing example costs seconds (timeouts): report it as found, unshrunk.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n_peers=st.integers(3, 4),
    batches=st.lists(batch, min_size=1, max_size=MAX_BATCHES),
    restarts=st.lists(st.integers(0, MAX_BATCHES - 1), max_size=2, unique=True),
)
async def test_annotations_converge_through_the_server(
    srv: ServerProcess,
    cast: Cast,
    n_peers: int,
    batches: list[list[tuple[int, tuple[Any, ...]]]],
    restarts: list[int],
) -> None:
    await scenario(srv, cast, n_peers, batches, restarts)


# -- the failures the property found, as fixed scenarios ------------------------------------


async def test_a_delete_delivered_before_its_add_reaches_everyone(
    srv: ServerProcess, cast: Cast
) -> None:
    """A drawer adds an annotation and deletes it; the network delivers the delete first.
    The server acks the delete, and when the add arrives it holds neither (its document
    integrates the pending delete), but it relays only the add: the other peers show the
    annotation for as long as they stay connected."""
    batches = [[(1, ("add", "hold")), (1, ("delete", 0, "send")), (1, ("flush", None))]]
    await scenario(srv, cast, 3, batches, [])


async def test_a_delete_delivered_before_its_add_survives_a_restart(
    srv: ServerProcess, cast: Cast
) -> None:
    """As above, then the server restarts: the acknowledged delete was never stored, so the
    restarted server serves the annotation again."""
    batches = [
        [(1, ("add", "hold")), (1, ("delete", 0, "send")), (1, ("flush", None))],
        [(0, ("resync",))],
    ]
    await scenario(srv, cast, 3, batches, [1])


async def test_a_host_edit_racing_the_authors_delete_is_not_refused(
    srv: ServerProcess, cast: Cast
) -> None:
    """The host, offline, edits a drawer's annotation while the drawer deletes it. When the
    host reconnects, its step 2 (the edit) reaches a server where the annotation is gone, is
    seen as an add of someone else's annotation and refused: the host loses the edit and
    everything else that step 2 carried."""
    batches = [
        [(1, ("add", "send"))],
        [(0, ("resync",)), (0, ("disconnect",))],
        [(0, ("others_edit", 0, "send")), (1, ("delete", 0, "send"))],
    ]
    await scenario(srv, cast, 3, batches, [])
