"""annotations: R rooms × M participants drawing on one image at --rate updates/s.

Set-up and join storm as in join-chat (``bench.scenarios.join_chat``: hosts, rooms, share
codes, redeem + connect, paced at ``--join-rate``); each participant then syncs the room's
annotation document (``y`` sync step 1, docs/protocol.md). Drawing (workers): ``--rate``
updates/s in total, evenly spaced, senders round-robin in a shuffled order. Every
participant keeps its own pycrdt ``Doc`` with the ``Map`` "annotations" and draws strokes:
a stroke adds a ``freehand`` annotation, then ``STROKE_UPDATES - 1`` more updates append
points to it (the whole value is replaced: annotations/SCHEMA.md). Each update is
``doc.get_update(state_before)`` framed by ``annotations.sync.update_message``; the server
relays the very same bytes, so a receiver finds the send time of what it got in a table
keyed by those bytes.
Under load the server merges a tick's updates per sender (docs/architecture.md). Each
update of the bench adds exactly one item (one struct, one clock) and yrs does not squash
them when merging, so the header of a relayed update (Yjs update v1: one client, struct
count, client id, first clock) names the updates it carries by (client id, clock); the
sender's table is in the same process (rooms are dealt whole to workers). Every other
member's receipt is one end-to-end latency sample (the headline); an update counts as an
error when its ack failed or some member had not received it after the drain.
Every participant also moves its pointer: a y-protocols awareness message at
``--awareness-hz``, its state stamped with the send time. The server keeps only each
client's newest state per tick, so pointers are timed (``awareness_ms``: send to receipt
of each state that arrives), and superseded ones are counted (``awareness_superseded``),
not errors; a participant whose last pointer never reaches someone is an error.

Late join (parent, after the load): one more room; a participant fills its document with
``--late-join-annotations`` annotations in updates of at most ``FILL_UPDATE_BYTES`` (the
server's socket.io message limit is 64 KiB); after ``QUIET_S`` without changes (a late
joiner comes to a room that is being looked at, not one being filled; the server encodes
a quiet image's full state ahead, ``PREPARE_AFTER_S`` in consultd/annotate/service.py) a
second participant connects and sends sync step 1; ``late_join_10k_ms`` runs from its
websocket connect to the sync step 2 received and applied (holding every annotation).
``late_join_room_rss_mb``: the server's RSS growth from before the fill to after the
sync (its document, restore point and cached full state, plus allocator slack).
``doc_bytes``: the room's update log as stored (``sum(length(data))`` of
``annotation_updates`` in the spawned server's SQLite file), else the size of the pycrdt
snapshot the late joiner received (``doc_bytes_source``).

Server CPU per update: server CPU during the drawing phase over the updates it accepted
(awareness relaying included; ``--awareness-hz 0`` leaves it out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sqlite3
import time
from array import array
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from pycrdt import Doc, Map

from annotations.sync import (
    AwarenessEntry,
    SyncError,
    awareness_message,
    awareness_update,
    parse_message,
    read_var_uint,
    sync_step1,
    update_message,
)
from bench import stats
from bench.client import MAX_FRAME, SioClient, loopback_address, new_session, redeem
from bench.pool import WorkerLink, WorkerPool, run_loop
from bench.scenario import Defaults, Options, RunContext, ScenarioResult
from bench.scenarios import join_chat
from bench.scenarios.join_chat import ACK, EXPECTED, NS, RECEIVED, Member

NAME = "annotations"
SUMMARY = (
    "R rooms of M participants drawing strokes at --rate updates/s with pointers at 10 Hz "
    "(update end-to-end), then a late join into a room of 10,000 annotations"
)
DEFAULTS = Defaults(rooms=50, participants=5, rate=1000, duration=8)

UID = "1.2.826.0.1.3680043.8.498.1"
ANCHOR = {"study_uid": UID, "series_uid": UID + ".1", "instance_uid": UID + ".1.1", "frame": 1.0}
DOC_ID = UID + ".1.1:1"  # the image key: instance UID and frame
COLORS = ("#ff8800", "#00c0ff", "#ffff00", "#ff00ff", "#00ff00", "#ffffff")
STROKE_UPDATES = 8  # one add, then seven point appends (whole-value replace)
POINTS_PER_UPDATE = 3
FILL_UPDATE_BYTES = 48 * 1024  # under the server's 64 KiB socket.io message
FILL_EVENTS_PER_S = 40.0  # the server allows 50 socket events/s per socket (burst 100)
FILL_BURST = 80
LATE_JOIN_FRAME = 256 << 20  # the late joiner's sync step 2 holds the whole document
SYNC_TIMEOUT_S = 30.0
SETTLE_S = 1.0
QUIET_S = 2.0  # > the server's PREPARE_AFTER_S (1 s)
DRAIN_S = join_chat.DRAIN_S
PLAN_TIMEOUT_S = join_chat.PLAN_TIMEOUT_S
PROGRESS_EVERY_S = join_chat.PROGRESS_EVERY_S
AWARENESS_TICK_S = 0.01


def add_arguments(parser: Options) -> None:
    join_chat.add_arguments(parser)  # --join-rate, --per-address, --workers
    parser.add_argument(
        "--awareness-hz", type=float, default=10.0, metavar="HZ",
        help="pointer (awareness) messages per second per participant; 0: none "
        "(default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--late-join-annotations", type=int, default=10_000, metavar="N",
        help="annotations in the late-join room's document (default %(default)s)",
    )  # fmt: skip


def time_budget_s(args: argparse.Namespace) -> float:
    late = 60.0 + int(args.late_join_annotations) / 100.0
    return join_chat.time_budget_s(args) + SYNC_TIMEOUT_S + late


# --- documents -------------------------------------------------------------------------


def _ms() -> float:
    return float(time.time_ns() // 1_000_000)


def annotation(
    ident: str, author: str, points: list[list[float]], created: float, color: str
) -> dict[str, Any]:
    """A ``freehand`` annotation (annotations/SCHEMA.md); numbers as floats, as Yjs has them."""
    return {
        "id": ident,
        "author": author,
        "created": created,
        "updated": max(_ms(), created),
        "kind": "freehand",
        "style": {"color": color, "width": 2.0, "fill": False},
        "anchor": ANCHOR,
        "geometry": {"points": points, "closed": False},
    }


class Drawer:
    """One participant's document and pen: strokes as streams of small updates."""

    def __init__(self, tag: str, rng: random.Random) -> None:
        self.tag = tag
        self.rng = rng
        self.doc: Doc[Any] = Doc()
        self.map: Map[Any] = self.doc.get("annotations", type=Map)
        self.author = ""
        self.color = rng.choice(COLORS)
        self.strokes = 0
        self.stroke_id = ""
        self.points: list[list[float]] = []
        self.created = 0.0
        self.left = 0
        self.x = rng.uniform(0, 512)
        self.y = rng.uniform(0, 512)
        self.clock = 0
        self.last_t = 0
        self.client_id = self.doc.client_id
        user = {"name": tag, "color": self.color}
        self._pointer_prefix = b'{"user":%s,"pointer":' % json.dumps(user).encode()

    def _step(self) -> list[float]:
        self.x = min(max(self.x + self.rng.uniform(-6, 6), 0.0), 512.0)
        self.y = min(max(self.y + self.rng.uniform(-6, 6), 0.0), 512.0)
        return [round(self.x, 1), round(self.y, 1)]

    def next_update(self) -> bytes:
        """The next update of the current stroke (a new stroke after ``STROKE_UPDATES``)."""
        if self.left == 0:
            self.strokes += 1
            self.stroke_id = f"{self.tag}s{self.strokes}"
            self.points = [self._step(), self._step()]
            self.created = _ms()
            self.left = STROKE_UPDATES
        else:
            self.points.extend(self._step() for _ in range(POINTS_PER_UPDATE))
        self.left -= 1
        state = self.doc.get_state()
        self.map[self.stroke_id] = annotation(
            self.stroke_id, self.author, self.points, self.created, self.color
        )
        return self.doc.get_update(state)

    def doc_clock(self) -> int:
        """This drawer's own clock in its document (its updates are all it holds)."""
        state = self.doc.get_state()
        n, pos = read_var_uint(state, 0)
        for _ in range(n):
            client, pos = read_var_uint(state, pos)
            clock, pos = read_var_uint(state, pos)
            if client == self.client_id:
                return clock
        return 0

    def pointer(self) -> bytes:
        """An awareness message: this participant's pointer moved (``t``: send time, ns).
        The JSON is put together from a prefix made once: this runs 10 times a second per
        participant, in the generator that shares the server's cores."""
        self.clock += 1
        x, y = self._step()
        self.last_t = time.time_ns()
        state = self._pointer_prefix + b'{"x":%r,"y":%r},"t":%d}' % (x, y, self.last_t)
        entry = AwarenessEntry(self.client_id, self.clock, state)
        return awareness_message(awareness_update([entry]))


def _pointer_stamps(data: bytes) -> list[tuple[int, int]]:
    """(client, ``t``) of each state in an awareness message. The server has checked the
    bytes (``parse_awareness``); the generator, which shares its cores, only reads the
    stamp ``Drawer.pointer`` put last in each state, without decoding its JSON."""
    msg = parse_message(data).payload
    count, pos = read_var_uint(msg, 0)
    stamps = []
    for _ in range(count):
        client, pos = read_var_uint(msg, pos)
        _, pos = read_var_uint(msg, pos)  # the clock
        length, pos = read_var_uint(msg, pos)
        state = msg[pos : pos + length]
        pos += length
        at = state.rfind(b',"t":')
        if at >= 0 and state.endswith(b"}"):
            try:
                stamps.append((client, int(state[at + 5 : -1])))
            except ValueError:
                continue
    return stamps


# --- parent ----------------------------------------------------------------------------


async def run(ctx: RunContext) -> ScenarioResult:
    args = ctx.args
    if args.late_join_annotations < 1 or args.awareness_hz < 0:
        raise ValueError("--late-join-annotations must be positive, --awareness-hz >= 0")
    return await join_chat.run_with_pool(ctx, worker_main, _drive)


async def _drive(
    ctx: RunContext, pool: WorkerPool, rooms: int, participants: int, rate: float, duration: float
) -> ScenarioResult:
    args = ctx.args
    probe = ctx.probe
    n_workers = len(pool)
    addr_base = random.randrange(240)
    plan = await join_chat._set_up(ctx, rooms, participants, addr_base + n_workers)
    total = rooms * participants
    joined, connected = await join_chat.join_storm(
        ctx, pool, plan, rooms, participants, addr_base, extra_timeout_s=SYNC_TIMEOUT_S
    )

    cpu0 = probe.cpu_s() if probe else 0.0
    rss0 = probe.rss_bytes() if probe else 0
    wall0 = time.monotonic()
    draw_start = time.time_ns() + NS // 4
    for w in range(n_workers):
        share = joined[w]["ok"] / connected if connected else 0.0
        pool.send(w, "draw", {
            "start_ns": draw_start,
            "rate": rate * share,
            "duration": duration,
            "awareness_hz": float(args.awareness_hz),
        })  # fmt: skip
    ctx.progress.phase("drawing", round(rate * duration), unit="update")
    results = await pool.gather("result", duration + DRAIN_S + 30.0, join_chat.progress_of(ctx))
    cpu_draw = (probe.cpu_s() - cpu0) if probe else None
    ctx.args.rss_drawing_kb = (probe.rss_bytes() - rss0) / 1024 if probe else None
    ctx.args.draw_wall_s = time.monotonic() - wall0  # drawing phase, drain included
    ctx.progress.close()

    late = await _late_join(ctx, int(args.late_join_annotations), addr_base + n_workers + 1)
    return _combine(ctx, pool, joined, results, plan, connected, total, duration, cpu_draw, late)


def _combine(
    ctx: RunContext,
    pool: WorkerPool,
    joined: list[dict[str, Any]],
    results: list[dict[str, Any]],
    plan: list[tuple[str, list[str]]],
    connected: int,
    total: int,
    duration: float,
    cpu_draw: float | None,
    late: dict[str, Any],
) -> ScenarioResult:
    def cat(key: str, scale: float, source: list[dict[str, Any]] = results) -> np.ndarray[Any, Any]:
        return join_chat.samples(source, key, scale)

    def total_of(key: str) -> int:
        return sum(int(r[key]) for r in results)

    join_errors: Counter[str] = Counter()
    load_errors: Counter[str] = Counter()
    for j in joined:
        join_errors.update(j["errors"])
    for r in results:
        load_errors.update(r["errors"])
    acked = total_of("acked")
    deliveries = total_of("deliveries")
    aw_sent, aw_got, aw_expected = (
        total_of("awareness_sent"), total_of("awareness_received"),
        total_of("awareness_expected"),
    )  # fmt: skip
    aw_superseded = max(0, aw_expected - aw_got)
    aw_lost = total_of("awareness_last_missing")
    failed_updates = total_of("failed_messages")
    draw_rooms = _stored_bytes(ctx, [room for room, _ in plan])
    extra: dict[str, Any] = {
        "late_join_10k_ms": late["late_join_ms"],
        "cpu_us_per_update": (
            round(cpu_draw * 1e6 / acked, 1) if cpu_draw is not None and acked else None
        ),
        "doc_bytes": late["doc_bytes"],
        "doc_bytes_source": late["doc_bytes_source"],
        "options": {
            "join_rate": ctx.args.join_rate,
            "workers": len(pool),
            "per_address": ctx.args.per_address,
            "awareness_hz": ctx.args.awareness_hz,
            "late_join_annotations": ctx.args.late_join_annotations,
            "stroke_updates": STROKE_UPDATES,
        },
        "late_join": late["detail"],
        "connected": connected,
        "join_ms": stats.percentiles(cat("join_ns", 1e6, joined)),
        "sync_ms": stats.percentiles(cat("sync_ns", 1e6, joined)),
        "join_errors": dict(join_errors),
        "updates_sent": total_of("sent"),
        "updates_acked": acked,
        "updates_failed": failed_updates,
        "update_bytes": stats.percentiles(cat("size", 1.0)),
        "deliveries": deliveries,
        "deliveries_expected": total_of("expected"),
        "deliveries_per_s": round(deliveries / duration, 1),
        "ack_ms": stats.percentiles(cat("ack_ns", 1e6)),
        "awareness_sent_per_s": round(aw_sent / duration, 1),
        "awareness_delivered_per_s": round(aw_got / duration, 1),
        "awareness_ms": stats.percentiles(cat("aw_ns", 1e6)),
        "awareness_superseded": aw_superseded,
        "awareness_last_missing": aw_lost,
        "server_cpu_s_drawing": round(cpu_draw, 3) if cpu_draw is not None else None,
        "drawing_wall_s": round(ctx.args.draw_wall_s, 2),
        "server_cpu_us_per_delivery": (
            round(cpu_draw * 1e6 / (deliveries + aw_got), 1)
            if cpu_draw is not None and deliveries + aw_got
            else None
        ),
        # server memory the drawing added (documents, restore points, update caches)
        "rss_kb_per_drawing_room": (
            round(ctx.args.rss_drawing_kb / len(plan), 1)
            if ctx.args.rss_drawing_kb is not None and plan
            else None
        ),
        "late_join_room_rss_mb": late["room_rss_mb"],
        "drawing_room_doc_bytes_mean": (
            round(draw_rooms[0] / len(plan)) if draw_rooms is not None else None
        ),
        "send_lateness_ms": stats.percentiles(cat("late_ns", 1e6)),
        "generator_loop_lag_ms": stats.percentiles(cat("lag_ns", 1e6)),
        "load_errors": dict(load_errors),
        "unexpected_disconnects": total_of("disconnects"),
    }
    return ScenarioResult(
        latency_label="update end-to-end latency",
        latency_ms=cat("lat_ns", 1e6),
        latency_at_s=cat("lat_at_ns", 1e9),
        throughput_per_s=round(acked / duration, 1),
        throughput_label="updates acked/s",
        errors=(total - connected) + failed_updates + aw_lost + late["errors"],
        extra=extra,
    )


def _stored_bytes(ctx: RunContext, room_ids: list[str]) -> tuple[int, int] | None:
    """``(sum(length(data)), updates)`` of these rooms' update logs in the spawned server's
    SQLite file; None when it cannot be read (``--url``, or another database)."""
    if ctx.data_dir is None or not room_ids:
        return None
    path = Path(ctx.data_dir) / "consultd.sqlite3"
    if not path.is_file():
        return None
    marks = ",".join("?" * len(room_ids))
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT coalesce(sum(length(data)), 0), count(*) FROM annotation_updates "
                f"WHERE room_id IN ({marks})",
                room_ids,
            ).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]), int(row[1])


async def _late_join(ctx: RunContext, n: int, addr_group: int) -> dict[str, Any]:
    """Fill one room's document with ``n`` annotations, then time a late joiner's sync."""
    progress = ctx.progress
    [(room_id, codes)] = await join_chat._set_up(ctx, 1, 2, addr_group)
    progress.phase("late join: fill", n, unit="annotation")
    probe = ctx.probe
    rss0 = probe.rss_bytes() if probe else 0
    session = new_session(loopback_address(addr_group, 0))
    clients: list[SioClient] = []
    errors = 0
    detail: dict[str, Any] = {"annotations": n}
    snapshot_bytes = 0
    try:
        filler_adm = await redeem(session, ctx.url, room_id, codes[0], "Bench filler")
        filler = await _connect(session, ctx.url, room_id, filler_adm["token"])
        clients.append(filler)
        t_fill = time.perf_counter()
        updates = await _fill(filler, str(filler_adm["participant_id"]), n, progress)
        detail["fill_updates"] = updates
        detail["fill_s"] = round(time.perf_counter() - t_fill, 2)

        await asyncio.sleep(QUIET_S)
        progress.phase("late join: sync", 1, unit="join")
        joiner_adm = await redeem(session, ctx.url, room_id, codes[0], "Bench late joiner")
        loop = asyncio.get_running_loop()
        step2: asyncio.Future[bytes] = loop.create_future()

        def on_y(payload: Any) -> None:
            data = payload.get("data") if isinstance(payload, dict) else None
            if isinstance(data, bytes) and data[:2] == b"\x00\x01" and not step2.done():
                step2.set_result(data)

        doc: Doc[Any] = Doc()
        amap: Map[Any] = doc.get("annotations", type=Map)
        t0 = time.perf_counter_ns()
        joiner = await _connect(
            session, ctx.url, room_id, joiner_adm["token"], {"y": on_y}, LATE_JOIN_FRAME
        )
        clients.append(joiner)
        t1 = time.perf_counter_ns()
        ack = await joiner.call("y", {"doc": DOC_ID, "data": sync_step1(doc.get_state())})
        data = await asyncio.wait_for(step2, SYNC_TIMEOUT_S)
        t2 = time.perf_counter_ns()
        doc.apply_update(parse_message(data).payload)
        got = len(amap)
        t3 = time.perf_counter_ns()
        answer = await asyncio.wait_for(ack, SYNC_TIMEOUT_S)
        if not (isinstance(answer, dict) and answer.get("ok")):
            errors += 1
        if got != n:
            errors += 1
            detail["annotations_received"] = got
        snapshot_bytes = len(doc.get_update())
        progress.update()
        detail.update({
            "connect_ms": round((t1 - t0) / 1e6, 2),
            "step2_wait_ms": round((t2 - t1) / 1e6, 2),
            "apply_ms": round((t3 - t2) / 1e6, 2),
            "step2_bytes": len(data),
            "snapshot_bytes": snapshot_bytes,
        })  # fmt: skip
        late_ms: float | None = round((t3 - t0) / 1e6, 2)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await session.close()
    # what the server holds for this room once filled and synced (one document of n
    # annotations, its restore point, the cached full-state message)
    room_rss_mb = round((probe.rss_bytes() - rss0) / 2**20, 1) if probe else None
    stored = _stored_bytes(ctx, [room_id])
    if stored is not None:
        detail["stored_updates"] = stored[1]
        doc_bytes, source = stored[0], "sqlite annotation_updates sum(length(data))"
    else:
        doc_bytes, source = snapshot_bytes, "pycrdt snapshot (update log not readable)"
    return {
        "late_join_ms": late_ms,
        "room_rss_mb": room_rss_mb,
        "doc_bytes": doc_bytes,
        "doc_bytes_source": source,
        "detail": detail,
        "errors": errors,
    }


async def _connect(
    session: aiohttp.ClientSession,
    url: str,
    room_id: str,
    token: str,
    handlers: dict[str, Any] | None = None,
    max_frame: int | None = None,
) -> SioClient:
    """Connect a socket and wait for ``joined``."""
    joined: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_joined(payload: Any) -> None:
        if not joined.done():
            joined.set_result(payload)

    client = SioClient(
        session,
        url,
        {"room": room_id, "token": token},
        {"joined": on_joined, **(handlers or {})},
        max_frame=max_frame or MAX_FRAME,
    )
    try:
        await client.connect(join_chat.JOIN_TIMEOUT_S)
        await asyncio.wait_for(joined, join_chat.JOIN_TIMEOUT_S)
    except BaseException:
        await client.close()
        raise
    return client


async def _fill(client: SioClient, author: str, n: int, progress: Any) -> int:
    """Add ``n`` annotations by ``author`` in updates under ``FILL_UPDATE_BYTES``."""
    rng = random.Random(n)
    pen = Drawer("f", rng)
    pen.author = author

    def make(i: int) -> dict[str, Any]:
        pts = [pen._step() for _ in range(8)]
        return annotation(f"late{i}", author, pts, _ms(), COLORS[i % len(COLORS)])

    # bytes per annotation, measured on a scratch document
    scratch: Doc[Any] = Doc()
    smap: Map[Any] = scratch.get("annotations", type=Map)
    with scratch.transaction():
        for i in range(50):
            smap[f"late{i}"] = make(i)
    per = len(scratch.get_update()) / 50
    batch = max(1, int(FILL_UPDATE_BYTES * 0.9 / per))
    done = sent = 0
    t0 = time.monotonic()
    while done < n:
        if sent >= FILL_BURST:  # stay under the server's per-socket event rate
            wait = t0 + (sent - FILL_BURST) / FILL_EVENTS_PER_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        count = min(batch, n - done)
        state = pen.doc.get_state()
        with pen.doc.transaction():
            for i in range(done, done + count):
                pen.map[f"late{i}"] = make(i)
        update = pen.doc.get_update(state)
        if len(update) > FILL_UPDATE_BYTES + 8192:
            raise RuntimeError(f"late-join fill: an update of {len(update)} bytes is too large")
        ack = await asyncio.wait_for(
            await client.call("y", {"doc": DOC_ID, "data": update_message(update)}),
            SYNC_TIMEOUT_S,
        )
        if not (isinstance(ack, dict) and ack.get("ok")):
            raise RuntimeError(f"late-join fill: update refused: {ack}")
        sent += 1
        done += count
        progress.update(count)
    return sent


# --- worker ----------------------------------------------------------------------------


def worker_main(link: WorkerLink) -> None:
    """Entry point of a worker process (spawn context)."""
    run_loop(join_chat.serve_worker(link, Worker))


class Worker(join_chat.Worker):
    """The participants of one worker's rooms; the join storm and the send/ack/drain
    accounting are join-chat's, the messages are annotation updates and pointers."""

    def __init__(self, link: WorkerLink, plan: dict[str, Any]) -> None:
        super().__init__(link, plan)
        rng = random.Random(link.index)
        self.drawers = {
            (m.room, m.slot): Drawer(f"w{link.index}r{m.room}p{m.slot}", rng) for m in self.members
        }
        #: (sender's client id, its clock after the update) -> the update's record
        self.by_clock: dict[tuple[int, int], list[int]] = {}
        #: awareness message -> [(client id, send time ns)], parsed once per room
        self.pointers: dict[bytes, list[tuple[int, int]]] = {}
        #: client id -> send time of its newest pointer (the last one must arrive)
        self.last_pointer: dict[int, int] = {}
        self.aw_last_seen: Counter[int] = Counter()
        self.aw_ns = array("q")
        self.sizes = array("q")
        self.sync_ns = array("q")
        self.aw_sent = 0
        self.aw_received = 0
        self.aw_expected = 0
        self.aw_all_sent = False
        self.aw_drained = asyncio.Event()
        #: client id -> receivers of its last pointer
        self.aw_last_expected: dict[int, int] = {}

    def _aw_missing(self) -> int:
        """Receivers that have not seen some participant's last pointer."""
        return sum(max(0, n - self.aw_last_seen[c]) for c, n in self.aw_last_expected.items())

    def _check_aw_drained(self) -> None:
        if self.aw_all_sent and self._aw_missing() == 0:
            self.aw_drained.set()

    def _on_joined(self, member: Member, payload: Any) -> None:
        super()._on_joined(member, payload)
        if member.client is not None:
            self.drawers[member.room, member.slot].author = member.participant_id
            member.client.on("y", partial(self._on_y, member))
            member.client.on("error", self._on_error)

    def _on_error(self, payload: Any) -> None:
        code = payload.get("code") if isinstance(payload, dict) else None
        self.chat_errors[f"error_{code or 'malformed'}"] += 1

    def _on_y(self, member: Member, payload: Any) -> None:
        now = time.time_ns()
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, bytes) or not data:
            self.chat_errors["malformed_y"] += 1
            return
        own = self.drawers[member.room, member.slot].client_id
        if data[0] == 1:
            self._on_pointers(data, own, now)
            return
        if data[:2] != b"\x00\x02":
            return  # sync step 1 / step 2 of the handshake
        try:
            msg = parse_message(data).payload
            n_clients, pos = read_var_uint(msg, 0)
            n_structs, pos = read_var_uint(msg, pos)
            client, pos = read_var_uint(msg, pos)
            first, _ = read_var_uint(msg, pos)
        except SyncError:
            n_clients = 0
        if n_clients != 1 or client == own:
            self.chat_errors["unexpected_update"] += 1
            return
        for clock in range(first + 1, first + n_structs + 1):
            rec = self.by_clock.get((client, clock))
            if rec is None:
                self.chat_errors["unexpected_update"] += 1
                continue
            rec[RECEIVED] += 1
            self.received += 1
            self.lat_ns.append(now - rec[0])
            self.lat_at_ns.append(rec[0] - self.chat_start_ns)
        if self.all_sent:
            self._check_drained()

    def _on_pointers(self, data: bytes, own: int, now: int) -> None:
        """Awareness: every state but one's own is timed from its ``t`` stamp."""
        states = self.pointers.get(data)
        if states is None:
            states = _pointer_stamps(data)
            self.pointers[data] = states
            if len(self.pointers) > 4096:  # every member of the room has had it by now
                del self.pointers[next(iter(self.pointers))]
        for client, t in states:
            if client == own:
                continue
            self.aw_received += 1
            self.aw_ns.append(now - t)
            if t == self.last_pointer.get(client):
                self.aw_last_seen[client] += 1
        if self.aw_all_sent:
            self._check_aw_drained()

    async def run(self) -> None:
        await self._storm()
        await self._sync_all()
        ok = sum(1 for m in self.members if m.joined_ns and m.client is not None)
        self.link.send("joined", {
            "ok": ok,
            "errors": dict(self.join_errors),
            "join_ns": self.join_ns.tobytes(),
            "sync_ns": self.sync_ns.tobytes(),
        })  # fmt: skip
        draw = await self.link.recv("draw", PLAN_TIMEOUT_S)
        lag_task = asyncio.create_task(self._watch_lag())
        aw_task = asyncio.create_task(
            self._awareness(draw["start_ns"], draw["awareness_hz"], draw["duration"])
        )
        try:
            await self._chat(draw["start_ns"], draw["rate"], draw["duration"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(aw_task), DRAIN_S)
            self.aw_all_sent = True  # and wait for the pointers still in flight
            self._check_aw_drained()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.aw_drained.wait(), DRAIN_S)
        finally:
            lag_task.cancel()
            aw_task.cancel()
        self.link.send("result", {
            **self._result(),
            "awareness_sent": self.aw_sent,
            "awareness_received": self.aw_received,
            "awareness_expected": self.aw_expected,
            "awareness_last_missing": self._aw_missing(),
            "aw_ns": self.aw_ns.tobytes(),
            "size": self.sizes.tobytes(),
        })  # fmt: skip

    async def _sync_all(self) -> None:
        """Each joined member sends sync step 1 for the room's document (docs/protocol.md)."""

        async def sync(member: Member) -> None:
            client = member.client
            assert client is not None
            state = self.drawers[member.room, member.slot].doc.get_state()
            t0 = time.time_ns()
            try:
                fut = await client.call("y", {"doc": DOC_ID, "data": sync_step1(state)})
                ack = await asyncio.wait_for(fut, SYNC_TIMEOUT_S)
            except (TimeoutError, ConnectionError) as exc:
                self.join_errors[f"sync_{type(exc).__name__}"] += 1
                return
            if isinstance(ack, dict) and ack.get("ok"):
                self.sync_ns.append(time.time_ns() - t0)
            else:
                self.join_errors["sync_refused"] += 1

        joined = [m for m in self.members if m.joined_ns and m.client is not None]
        await asyncio.gather(*(sync(m) for m in joined))

    async def _awareness(self, start_ns: int, hz: float, duration: float) -> None:
        """Every joined member sends its pointer ``hz`` times a second, spread evenly."""
        members = [m for m in self.members if m.joined_ns and m.client is not None]
        if hz <= 0 or not members:
            return
        in_room = Counter(m.room for m in members)
        per_s = hz * len(members)
        total = int(per_s * duration)
        k = 0
        delay = (start_ns - time.time_ns()) / NS
        if delay > 0:
            await asyncio.sleep(delay)
        while k < total:
            due = min(total, int((time.time_ns() - start_ns) / NS * per_s) + 1)
            while k < due:
                member = members[k % len(members)]
                k += 1
                client = member.client
                if client is None or client.closed:
                    continue
                drawer = self.drawers[member.room, member.slot]
                data = drawer.pointer()
                try:
                    await client.emit("y", {"doc": DOC_ID, "data": data})
                except ConnectionError:
                    self.chat_errors["awareness_send_disconnected"] += 1
                    continue
                self.last_pointer[drawer.client_id] = drawer.last_t
                self.aw_last_seen[drawer.client_id] = 0
                self.aw_last_expected[drawer.client_id] = in_room[member.room] - 1
                self.aw_sent += 1
                self.aw_expected += in_room[member.room] - 1
            await asyncio.sleep(AWARENESS_TICK_S)

    async def _send_all(self, start_ns: int, count: int, interval_ns: float) -> None:
        in_room = Counter(m.room for m in self.members if m.joined_ns)
        reported = 0
        next_report = time.monotonic() + PROGRESS_EVERY_S
        for k, member in zip(range(count), self._senders(), strict=False):
            delay = (start_ns + k * interval_ns - time.time_ns()) / NS
            if delay > 0:
                await asyncio.sleep(delay)
            drawer = self.drawers[member.room, member.slot]
            data = update_message(drawer.next_update())
            send_ns = time.time_ns()
            self.late_ns.append(send_ns - start_ns - int(k * interval_ns))
            self.sizes.append(len(data))
            rec = [send_ns, in_room[member.room] - 1, 0, 0]
            self.sent[f"u{k}"] = rec
            self.by_clock[drawer.client_id, drawer.doc_clock()] = rec
            self.expected += rec[EXPECTED]
            client = member.client
            assert client is not None
            try:
                fut = await client.call("y", {"doc": DOC_ID, "data": data})
            except ConnectionError:
                rec[ACK] = -1
                self.chat_errors["send_disconnected"] += 1
                continue
            self.acks_pending += 1
            fut.add_done_callback(partial(self._on_ack, rec))
            if time.monotonic() >= next_report:
                self.link.send("progress", k + 1 - reported)
                reported = k + 1
                next_report = time.monotonic() + PROGRESS_EVERY_S
        self.link.send("progress", len(self.sent) - reported)
