"""join-chat: a join storm into R rooms of M participants, then chat at --rate msg/s.

Set-up (parent): a few host physicians register (password hashing is slow on purpose),
each creates several rooms with the lobby off and one participant share code per room.
Join storm (workers): R×M participants redeem their code over HTTP and connect their
socket, paced at ``--join-rate`` joins/s; join time runs from the redeem request to the
``joined`` event (``connect_ms``: from the websocket connect to ``joined``). Idle memory:
server RSS with everyone connected and idle, minus RSS after set-up, per connection.
Chat (workers): ``--rate`` messages/s in total, evenly spaced, senders taken round-robin
in a shuffled order (so no one hits the per-participant chat limit before it must). Each
message carries ``time.time_ns()`` of its send in its text; every other member's receipt
is one end-to-end latency sample (the headline). The sender's copy comes back in the ack
(``ack_ms``). A message counts as an error when its ack failed or did not arrive, or when
some other member of the room had not received it by the end of the drain.

Rooms are dealt whole to workers, so each worker accounts for its own messages.

Server limits that shape the load (docs/protocol.md): redemptions are limited per address
(hence ``--per-address``) and to 30 per minute per room (so M <= 30 per run), chat to
10 messages per 5 s per participant (so --rate / (R×M) should stay under 2 msg/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import secrets
import time
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from typing import Any, Protocol

import aiohttp
import numpy as np

from bench import stats
from bench.client import (
    AddressSessions,
    ApiError,
    ConnectError,
    Physician,
    SioClient,
    loopback_address,
    new_session,
    redeem,
)
from bench.pool import Message, WorkerLink, WorkerPool, run_loop
from bench.scenario import Defaults, Options, RunContext, ScenarioResult

NAME = "join-chat"
SUMMARY = "join storm into R rooms of M participants, then chat at --rate msg/s (end-to-end)"
DEFAULTS = Defaults(rooms=50, participants=5, rate=200, duration=8)

ROOMS_PER_HOST = 50
MAX_CODE_USES = 500  # docs/protocol.md: max_uses 1..500
SETUP_CONCURRENCY = 16
JOIN_TIMEOUT_S = 30.0
SETTLE_S = 1.5
DRAIN_S = 5.0
PROGRESS_EVERY_S = 0.2
PLAN_TIMEOUT_S = 600.0
NS = 1_000_000_000


def add_arguments(parser: Options) -> None:
    parser.add_argument(
        "--join-rate", type=float, default=250.0, metavar="HZ",
        help="joins per second during the storm, all workers together (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--per-address", type=int, default=10, metavar="N",
        help="simulated clients per loopback source address (127.x.y.z -> 127.0.0.1); the "
        "server allows 10 share-code redemptions and 10 registrations per minute per address; "
        "0 sends everything from 127.0.0.1 (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=2, metavar="N",
        help="load-generator processes; rooms are dealt whole to workers (default %(default)s)",
    )  # fmt: skip


def time_budget_s(args: argparse.Namespace) -> float:
    joins = int(args.rooms) * int(args.participants)
    setup = 60.0 + int(args.rooms) * 0.5
    storm = joins / max(float(args.join_rate), 1.0) + JOIN_TIMEOUT_S + 15.0
    return setup + storm + SETTLE_S + float(args.duration) + DRAIN_S + 60.0


# --- parent ----------------------------------------------------------------------------


async def _set_up(
    ctx: RunContext, rooms: int, participants: int, addr_group: int
) -> list[tuple[str, list[str]]]:
    """Register hosts, create rooms (lobby off) and codes: ``[(room_id, [code, ...])]``."""
    run_id = secrets.token_hex(4)
    password = secrets.token_urlsafe(18)
    n_hosts = min(rooms, max(1, math.ceil(rooms / ROOMS_PER_HOST)))
    n_codes = max(1, math.ceil(participants / MAX_CODE_USES))
    sem = asyncio.Semaphore(SETUP_CONCURRENCY)
    ctx.progress.phase("set-up", n_hosts + rooms, unit="step")
    by_address = int(ctx.args.per_address) > 0
    sessions = [
        new_session(loopback_address(addr_group, i) if by_address else None)
        for i in range(n_hosts if by_address else 1)
    ]
    try:
        # One at a time: each registration hashes a password (argon2id, 64 MiB by
        # default), and concurrent ones would make the server's peak RSS about set-up.
        hosts: list[Physician] = []
        for i in range(n_hosts):
            host = Physician(sessions[i % len(sessions)], ctx.url)
            await host.register(
                f"Bench Host {i}", f"bench-host-{i}-{run_id}@bench.consultd.org", password
            )
            hosts.append(host)
            ctx.progress.update()

        async def room(k: int) -> tuple[str, list[str]]:
            host = hosts[k % n_hosts]
            async with sem:
                created = await host.create_room(f"bench room {k}", lobby=False)
                codes = []
                for c in range(n_codes):
                    uses = min(MAX_CODE_USES, participants - c * MAX_CODE_USES)
                    share = await host.create_code(created["id"], max_uses=uses)
                    codes.append(str(share["code"]))
            ctx.progress.update()
            return str(created["id"]), codes

        return await asyncio.gather(*(room(k) for k in range(rooms)))
    finally:
        await asyncio.gather(*(session.close() for session in sessions))


Drive = Callable[
    [RunContext, WorkerPool, int, int, float, float], Coroutine[Any, Any, ScenarioResult]
]


async def run_with_pool(
    ctx: RunContext, worker: Callable[..., Any], drive: Drive
) -> ScenarioResult:
    """Check the common options, start the worker processes, run ``drive``, stop them and
    report their CPU (shared by the scenarios that join rooms in a storm)."""
    args = ctx.args
    rooms, participants = int(args.rooms), int(args.participants)
    rate, duration = float(args.rate), float(args.duration)
    if rooms < 1 or participants < 1 or args.join_rate <= 0 or duration <= 0 or rate < 0:
        raise ValueError("rooms, participants, --join-rate and duration must be positive")
    n_workers = max(1, min(int(args.workers), rooms))
    pool = WorkerPool(worker, n_workers)
    pool.start()  # the workers import while the parent sets up
    try:
        result = await drive(ctx, pool, rooms, participants, rate, duration)
    finally:
        ctx.progress.close()
        await pool.close()
    result.worker_cpu_s = sum(pool.cpu_s)
    result.extra["generator_cpu_s_workers"] = [round(c, 3) for c in pool.cpu_s]
    return result


async def run(ctx: RunContext) -> ScenarioResult:
    return await run_with_pool(ctx, worker_main, _drive)


async def _drive(
    ctx: RunContext, pool: WorkerPool, rooms: int, participants: int, rate: float, duration: float
) -> ScenarioResult:
    probe = ctx.probe
    n_workers = len(pool)
    addr_base = random.randrange(240)  # fresh addresses per run (a --url server remembers)
    plan = await _set_up(ctx, rooms, participants, addr_base + n_workers)
    await asyncio.sleep(SETTLE_S / 2)
    rss_base = probe.rss_bytes() if probe else 0
    cpu_mark = probe.cpu_s() if probe else 0.0
    cpu_phases: dict[str, float] = {"setup": cpu_mark}
    rss_peaks: dict[str, float] = {"setup": probe.phase_peak_mb() if probe else 0.0}

    def end_phase(name: str) -> None:
        nonlocal cpu_mark
        if probe is not None:
            now = probe.cpu_s()
            cpu_phases[name] = now - cpu_mark
            cpu_mark = now
            rss_peaks[name] = probe.phase_peak_mb()

    total = rooms * participants
    joined, connected = await join_storm(ctx, pool, plan, rooms, participants, addr_base)
    rss_idle = probe.rss_bytes() if probe else 0
    end_phase("join")

    chat_start = time.time_ns() + NS // 4
    for w in range(n_workers):
        share = joined[w]["ok"] / connected if connected else 0.0
        pool.send(w, "chat", {"start_ns": chat_start, "rate": rate * share, "duration": duration})
    ctx.progress.phase("chat", round(rate * duration), unit="msg")
    results = await pool.gather("result", duration + DRAIN_S + 30.0, progress_of(ctx))
    end_phase("chat")
    ctx.progress.close()
    return _combine(
        ctx, joined, results, pool, connected, total, duration,
        rss_base, rss_idle, cpu_phases, rss_peaks,
    )  # fmt: skip


def progress_of(ctx: RunContext) -> Callable[[int, Message], None]:
    """A pool.gather callback that advances the progress bar on workers' progress reports."""

    def on_progress(_: int, msg: Message) -> None:
        if msg[0] == "progress":
            ctx.progress.update(msg[1])

    return on_progress


async def join_storm(
    ctx: RunContext,
    pool: WorkerPool,
    plan: list[tuple[str, list[str]]],
    rooms: int,
    participants: int,
    addr_base: int,
    *,
    extra_timeout_s: float = 0.0,
) -> tuple[list[dict[str, Any]], int]:
    """Deal the rooms to the workers, let every participant join at --join-rate, wait for
    all of them (and a settle); return each worker's report and the number connected."""
    args = ctx.args
    n_workers = len(pool)
    total = rooms * participants
    start_ns = time.time_ns() + NS // 2
    for w in range(n_workers):
        mine = plan[w::n_workers]
        pool.send(w, "plan", {
            "url": ctx.url,
            "rooms": mine,
            "participants": participants,
            "join_rate": args.join_rate * len(mine) / rooms,
            "start_ns": start_ns,
            "per_address": args.per_address,
            "addr_group": addr_base + w,
        })  # fmt: skip
    ctx.progress.phase("join storm", total, unit="join")
    storm_s = total / args.join_rate + JOIN_TIMEOUT_S + extra_timeout_s + 15.0
    joined = await pool.gather("joined", storm_s, progress_of(ctx))
    await asyncio.sleep(SETTLE_S)
    return joined, sum(j["ok"] for j in joined)


def samples(source: list[dict[str, Any]], key: str, scale: float) -> np.ndarray[Any, Any]:
    """Workers' int64 sample buffers under ``key``, concatenated and divided by ``scale``."""
    parts = [np.frombuffer(r[key], dtype=np.int64) for r in source]
    return np.concatenate(parts).astype(np.float64) / scale if parts else np.zeros(0)


def _combine(
    ctx: RunContext,
    joined: list[dict[str, Any]],
    results: list[dict[str, Any]],
    pool: WorkerPool,
    connected: int,
    total: int,
    duration: float,
    rss_base: int,
    rss_idle: int,
    cpu_phases: dict[str, float],
    rss_peaks: dict[str, float],
) -> ScenarioResult:
    def cat(key: str, scale: float, source: list[dict[str, Any]] = results) -> np.ndarray[Any, Any]:
        return samples(source, key, scale)

    latency_ms = cat("lat_ns", 1e6)
    latency_at_s = cat("lat_at_ns", 1e9)
    join_errors: Counter[str] = Counter()
    chat_errors: Counter[str] = Counter()
    for j in joined:
        join_errors.update(j["errors"])
    for r in results:
        chat_errors.update(r["errors"])
    sent = sum(r["sent"] for r in results)
    acked = sum(r["acked"] for r in results)
    deliveries = sum(r["deliveries"] for r in results)
    failed_messages = sum(r["failed_messages"] for r in results)
    failed_joins = total - connected
    extra: dict[str, Any] = {
        "options": {
            "join_rate": ctx.args.join_rate,
            "workers": len(pool),
            "per_address": ctx.args.per_address,
        },
        "connected": connected,
        "join_ms": stats.percentiles(cat("join_ns", 1e6, joined)),
        "connect_ms": stats.percentiles(cat("connect_ns", 1e6, joined)),
        "redeem_ms": stats.percentiles(cat("redeem_ns", 1e6, joined)),
        "join_errors": dict(join_errors),
        "messages_sent": sent,
        "messages_acked": acked,
        "messages_failed": failed_messages,
        "deliveries": deliveries,
        "deliveries_expected": sum(r["expected"] for r in results),
        "deliveries_per_s": round(deliveries / duration, 1),
        "ack_ms": stats.percentiles(cat("ack_ns", 1e6)),
        "send_lateness_ms": stats.percentiles(cat("late_ns", 1e6)),
        "generator_loop_lag_ms": stats.percentiles(cat("lag_ns", 1e6)),
        "chat_errors": dict(chat_errors),
        "unexpected_disconnects": sum(r["disconnects"] for r in results),
        "rss_kb_per_idle_conn": (
            round((rss_idle - rss_base) / 1024 / connected, 2)
            if ctx.probe is not None and connected
            else None
        ),
        "server_rss_mb": (
            {
                "after_setup": round(rss_base / 2**20, 1),
                "idle_connected": round(rss_idle / 2**20, 1),
            }
            if ctx.probe is not None
            else None
        ),
        "server_peak_rss_mb_by_phase": rss_peaks if ctx.probe is not None else None,
        "server_cpu_s_by_phase": (
            {k: round(v, 3) for k, v in cpu_phases.items()} if ctx.probe is not None else None
        ),
        "server_cpu_us_per_delivery": (
            round(cpu_phases["chat"] * 1e6 / deliveries, 1)
            if ctx.probe is not None and deliveries and "chat" in cpu_phases
            else None
        ),
    }
    return ScenarioResult(
        latency_label="chat end-to-end latency",
        latency_ms=latency_ms,
        latency_at_s=latency_at_s,
        throughput_per_s=round(acked / duration, 1),
        throughput_label="messages acked/s",
        errors=failed_joins + failed_messages,
        extra=extra,
    )


# --- worker ----------------------------------------------------------------------------


def worker_main(link: WorkerLink) -> None:
    """Entry point of a worker process (spawn context)."""
    run_loop(serve_worker(link, Worker))


class WorkerLike(Protocol):
    """What ``serve_worker`` runs: a scenario's worker built from the parent's plan."""

    async def run(self) -> None: ...

    async def close(self) -> None: ...


async def serve_worker(
    link: WorkerLink, worker_class: Callable[[WorkerLink, dict[str, Any]], WorkerLike]
) -> None:
    """Take the plan from the parent, then run the worker of ``worker_class`` on it."""
    plan = await link.recv("plan", PLAN_TIMEOUT_S)
    worker = worker_class(link, plan)
    try:
        await worker.run()
    finally:
        await worker.close()


class Member:
    """One simulated participant."""

    __slots__ = ("client", "joined", "joined_ns", "name", "participant_id", "room", "slot")

    def __init__(self, room: int, slot: int, name: str) -> None:
        self.room = room
        self.slot = slot
        self.name = name
        self.participant_id = ""
        self.client: SioClient | None = None
        self.joined: asyncio.Future[Any] | None = None
        self.joined_ns = 0


# indexes of a sent-message record (a list, for speed)
SEND_NS, EXPECTED, RECEIVED, ACK = 0, 1, 2, 3


class Worker:
    """The participants of the rooms dealt to one worker process."""

    def __init__(self, link: WorkerLink, plan: dict[str, Any]) -> None:
        self.link = link
        self.url: str = plan["url"]
        self.rooms: list[tuple[str, list[str]]] = plan["rooms"]
        self.join_rate: float = plan["join_rate"]
        self.start_ns: int = plan["start_ns"]
        per_room: int = plan["participants"]
        self.members = [
            Member(r, s, f"Bench W{link.index} R{r} P{s}")
            for r in range(len(self.rooms))
            for s in range(per_room)
        ]
        self.sessions = AddressSessions(plan["addr_group"], plan["per_address"])
        self.join_ns = array("q")
        self.connect_ns = array("q")
        self.redeem_ns = array("q")
        self.join_errors: Counter[str] = Counter()
        self.chat_errors: Counter[str] = Counter()
        self.done_joins = 0
        self.chat_start_ns = 0
        self.sent: dict[str, list[int]] = {}
        self.lat_ns = array("q")
        self.lat_at_ns = array("q")
        self.ack_ns = array("q")
        self.late_ns = array("q")  # actual send time minus the scheduled one
        self.lag_ns = array("q")  # event-loop lag of this worker during the chat
        self.expected = 0
        self.received = 0
        self.acks_pending = 0
        self.disconnects = 0
        self.closing = False
        self.all_sent = False
        self.drained = asyncio.Event()
        self.unsent = 0  # planned messages the schedule could not send in time

    async def run(self) -> None:
        await self._storm()
        ok = sum(1 for m in self.members if m.joined_ns)
        self.link.send("joined", {
            "ok": ok,
            "errors": dict(self.join_errors),
            "join_ns": self.join_ns.tobytes(),
            "connect_ns": self.connect_ns.tobytes(),
            "redeem_ns": self.redeem_ns.tobytes(),
        })  # fmt: skip
        chat = await self.link.recv("chat", PLAN_TIMEOUT_S)
        lag_task = asyncio.create_task(self._watch_lag())
        try:
            await self._chat(chat["start_ns"], chat["rate"], chat["duration"])
        finally:
            lag_task.cancel()
        self.link.send("result", self._result())

    def _result(self) -> dict[str, Any]:
        """The load phase's accounting, for the parent (scenarios add their own keys)."""
        failed = self.unsent + sum(
            1 for rec in self.sent.values() if rec[RECEIVED] < rec[EXPECTED] or rec[ACK] != 1
        )
        ack_timeouts = sum(1 for rec in self.sent.values() if rec[ACK] == 0)
        if ack_timeouts:
            self.chat_errors["ack_timeout"] += ack_timeouts
        return {
            "sent": len(self.sent),
            "acked": sum(1 for rec in self.sent.values() if rec[ACK] == 1),
            "failed_messages": failed,
            "expected": self.expected,
            "deliveries": self.received,
            "errors": dict(self.chat_errors),
            "disconnects": self.disconnects,
            "lat_ns": self.lat_ns.tobytes(),
            "lat_at_ns": self.lat_at_ns.tobytes(),
            "ack_ns": self.ack_ns.tobytes(),
            "late_ns": self.late_ns.tobytes(),
            "lag_ns": self.lag_ns.tobytes(),
        }

    async def close(self) -> None:
        self.closing = True
        clients = [m.client for m in self.members if m.client is not None]
        if clients:
            await asyncio.wait([asyncio.create_task(c.close()) for c in clients], timeout=10)
        await self.sessions.close()

    # join storm -------------------------------------------------------------------------

    async def _storm(self) -> None:
        interval_ns = NS / self.join_rate if self.join_rate > 0 else 0.0
        tasks: list[asyncio.Task[None]] = []
        reported = 0
        next_report = time.monotonic() + PROGRESS_EVERY_S
        for i, member in enumerate(self.members):
            delay = (self.start_ns + i * interval_ns - time.time_ns()) / NS
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._join(member, self.sessions.get(i))))
            if time.monotonic() >= next_report:
                self.link.send("progress", self.done_joins - reported)
                reported = self.done_joins
                next_report = time.monotonic() + PROGRESS_EVERY_S
        pending = set(tasks)
        deadline = time.monotonic() + JOIN_TIMEOUT_S + 5
        while pending and time.monotonic() < deadline:
            _, pending = await asyncio.wait(pending, timeout=PROGRESS_EVERY_S)
            self.link.send("progress", self.done_joins - reported)
            reported = self.done_joins
        for task in pending:
            task.cancel()
        if pending:
            self.join_errors["timeout"] += len(pending)
            await asyncio.wait(pending, timeout=2)
        self.link.send("progress", self.done_joins - reported)

    async def _join(self, member: Member, session: aiohttp.ClientSession) -> None:
        room_id, codes = self.rooms[member.room]
        code = codes[member.slot // MAX_CODE_USES]
        t0 = time.time_ns()
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_S):
                admission = await redeem(session, self.url, room_id, code, member.name)
                t1 = time.time_ns()
                member.participant_id = str(admission.get("participant_id", ""))
                if admission.get("state") != "admitted":
                    self.join_errors[f"not_admitted_{admission.get('state')}"] += 1
                    return
                member.joined = asyncio.get_running_loop().create_future()
                member.client = SioClient(
                    session,
                    self.url,
                    {"room": room_id, "token": admission["token"]},
                    {
                        "joined": partial(self._on_joined, member),
                        "chat": partial(self._on_chat, member),
                    },
                    partial(self._on_close, member),
                )
                await member.client.connect(JOIN_TIMEOUT_S)
                await member.joined
            self.join_ns.append(member.joined_ns - t0)
            self.connect_ns.append(member.joined_ns - t1)
            self.redeem_ns.append(t1 - t0)
        except ApiError as exc:
            self.join_errors[f"redeem_{exc.code}"] += 1
        except ConnectError as exc:
            self.join_errors[f"connect_{exc.code}"] += 1
        except TimeoutError:
            self.join_errors["timeout"] += 1
        except (aiohttp.ClientError, OSError, KeyError, ValueError) as exc:
            self.join_errors[type(exc).__name__] += 1
        finally:
            if not member.joined_ns:
                joined = member.joined
                if joined is not None and not joined.done():
                    joined.cancel()
                elif joined is not None and not joined.cancelled():
                    joined.exception()  # retrieved: no "never retrieved" log
                if member.client is not None:
                    await member.client.close()
                    member.client = None
            self.done_joins += 1

    def _on_joined(self, member: Member, _payload: Any) -> None:
        if member.joined is not None and not member.joined.done():
            member.joined_ns = time.time_ns()
            member.joined.set_result(None)

    def _on_close(self, member: Member, client: SioClient) -> None:
        if member.joined is not None and not member.joined.done():
            member.joined.set_exception(ConnectError("disconnected", client.close_reason))
        elif member.joined_ns and not self.closing:
            self.disconnects += 1

    # chat -------------------------------------------------------------------------------

    def _on_chat(self, member: Member, msg: Any) -> None:
        now = time.time_ns()
        try:
            rec = self.sent.get(msg["id"])
            send_ns = int(msg["text"].rpartition(" ")[2])
        except (KeyError, TypeError, ValueError):
            self.chat_errors["unexpected_chat"] += 1
            return
        if rec is None:
            self.chat_errors["unexpected_chat"] += 1
            return
        if msg.get("author_id") == member.participant_id:
            self.chat_errors["own_message_echoed"] += 1
            return
        rec[RECEIVED] += 1
        self.received += 1
        self.lat_ns.append(now - send_ns)
        self.lat_at_ns.append(send_ns - self.chat_start_ns)
        if self.all_sent:
            self._check_drained()

    def _on_ack(self, rec: list[int], fut: asyncio.Future[Any]) -> None:
        now = time.time_ns()
        self.acks_pending -= 1
        if self.all_sent:
            self._check_drained()
        if fut.cancelled() or fut.exception() is not None:
            rec[ACK] = -1
            self.chat_errors["ack_disconnected"] += 1
            return
        answer = fut.result()
        if isinstance(answer, dict) and answer.get("ok"):
            rec[ACK] = 1
            self.ack_ns.append(now - rec[SEND_NS])
        else:
            rec[ACK] = -1
            err = answer.get("error") if isinstance(answer, dict) else None
            code = err.get("code") if isinstance(err, dict) else None
            self.chat_errors["ack_%s" % (code or "malformed")] += 1

    def _senders(self) -> Iterator[Member]:
        """Joined members round-robin, in a fresh random order each round."""
        joined = [m for m in self.members if m.joined_ns and m.client is not None]
        while joined:
            random.shuffle(joined)
            yield from joined

    async def _watch_lag(self, tick_s: float = 0.01) -> None:
        """Sample how late this worker's event loop wakes up (generator saturation)."""
        while True:
            t0 = time.perf_counter_ns()
            await asyncio.sleep(tick_s)
            self.lag_ns.append(time.perf_counter_ns() - t0 - int(tick_s * NS))

    async def _chat(self, start_ns: int, rate: float, duration: float) -> None:
        """Send ``rate × duration`` messages on schedule, then wait for every delivery."""
        self.chat_start_ns = start_ns
        count = round(rate * duration)
        try:
            # a server that stops reading stalls the sends: give up past the drain time
            async with asyncio.timeout((start_ns - time.time_ns()) / NS + duration + DRAIN_S):
                await self._send_all(start_ns, count, NS / rate if rate > 0 else 0.0)
        except TimeoutError:
            self.chat_errors["not_sent_in_time"] += count - len(self.sent)
            self.unsent = count - len(self.sent)
        self.all_sent = True
        self._check_drained()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drained.wait(), DRAIN_S)

    async def _send_all(self, start_ns: int, count: int, interval_ns: float) -> None:
        in_room = Counter(m.room for m in self.members if m.joined_ns)
        reported = 0
        next_report = time.monotonic() + PROGRESS_EVERY_S
        for k, member in zip(range(count), self._senders(), strict=False):
            delay = (start_ns + k * interval_ns - time.time_ns()) / NS
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"w{self.link.index}-{k}"
            send_ns = time.time_ns()
            self.late_ns.append(send_ns - start_ns - int(k * interval_ns))
            rec = [send_ns, in_room[member.room] - 1, 0, 0]
            self.sent[key] = rec
            self.expected += rec[EXPECTED]
            client = member.client
            assert client is not None
            try:
                fut = await client.call("chat", {"id": key, "text": f"bench {send_ns}"})
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

    def _check_drained(self) -> None:
        if self.all_sent and self.received >= self.expected and not self.acks_pending:
            self.drained.set()
