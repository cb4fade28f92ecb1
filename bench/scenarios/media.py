"""media: P publishers per room send VP8 + Opus to S subscribers through the SFU (issue 7,
"Bench"); beside it, aiortc's ``MediaRelay`` (decode once, re-encode per subscriber).

Set-up (parent): hosts, R rooms (lobby off) and share codes as in join-chat; one clip of
``--clip-seconds`` VP8 + Opus encoded once with PyAV (``bench.media_clip``), each publisher
replaying it with its own audio (so packets tell publishers apart).

Clients (``--workers`` processes): each publisher and subscriber redeems a code, connects its
socket, ``media_join``s, and offers (docs/protocol.md, "Media"): a publisher its two replayed
tracks (aiortc only packetizes them), a subscriber ``recvonly`` m-lines for the room's
tracks; ``media_negotiate`` adds m-lines and offers again. Publishers of a room go to one
worker, subscribers are dealt round-robin over all of them. Receivers never decode: their
RTP goes to a ``RecvLog`` (``bench.media_peers``).

Measured phase (``--duration`` s, after a settle): server CPU from its process; every RTP
packet each publisher sends and each receiver gets, by payload hash and time, joined after
the run. ``latency_ms`` (headline): added forwarding latency, publisher hands the packet to
SRTP -> the kernel receives it on the subscriber's socket (one machine, one clock), each
packet's first receipt per receiver; the subscriber's own receive path (its loop, ICE
queue, SRTP) is ``client_receive_stack_ms``. ``forwarded_packets_per_s``: receipts in the
window / its length; ``cpu_us_per_forwarded_packet``: server CPU in the window / those receipts;
``delivery_ratio``: first receipts of packets sent in the window / (packets sent × the
other members of the room); ``max_streams_80pct_core``: 0.8 core / CPU per delivered stream
(one track to one receiver) at this clip's packet rate.

Baseline (skip with ``--baseline-seconds 0``): worker 0 runs 1 publisher -> 4 subscribers,
first through the SFU (a fresh room, the main load gone), then through aiortc's
``MediaRelay`` in a process of the bench's own (``bench.media_relay``), the same clip and
clients; ``cost_ratio_vs_transcode``: the relay's CPU per delivered stream / the SFU's.

``--rate`` is not used: the clip sets the packet rate (about 145 packets/s a publisher).

Errors: failed joins and offers, and packets not delivered (sent in the window, not received
by a member of the room by the end of the drain).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

from bench import stats
from bench.media_clip import Clip, encode_clip
from bench.media_peers import first_receipts, match
from bench.media_worker import (
    BASELINE_SUBSCRIBERS,
    FIRST_PACKET_TIMEOUT_S,
    JOIN_TIMEOUT_S,
    worker_main,
)
from bench.pool import Message, WorkerPool
from bench.scenario import Defaults, Options, RunContext, ScenarioResult
from bench.scenarios import join_chat
from bench.spawn import REPO_ROOT, free_port, wait_healthy

NAME = "media"
SUMMARY = (
    "P publishers replay VP8 + Opus to S subscribers per room through the SFU (forwarded "
    "packets/s, server CPU per packet, added latency, delivery), beside aiortc's MediaRelay "
    "at 1 -> 4"
)
DEFAULTS = Defaults(rooms=1, participants=20, rate=0, duration=10)

NS = 1_000_000_000
SETTLE_S = 2.0  # consumers started, first keyframe through, before the window
DRAIN_S = 1.0
PROGRESS_EVERY_S = 0.2
RELAY_READY_TIMEOUT_S = 30.0


def add_arguments(parser: Options) -> None:
    join_chat.add_arguments(parser)  # --join-rate, --per-address, --workers
    parser.add_argument(
        "--publishers", type=int, default=1, metavar="P",
        help="publishers per room, each a camera and a microphone (default %(default)s); "
        "--participants is the subscribers per room",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-seconds", type=float, default=5.0, metavar="S",
        help="measured seconds of each side of the 1 -> 4 comparison with aiortc's "
        "MediaRelay; 0 skips it (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--clip-seconds", type=float, default=4.0, metavar="S",
        help="length of the pre-encoded clip the publishers loop (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--video-kbps", type=int, default=800, metavar="KBPS",
        help="VP8 bitrate of the clip, 640x360 at 30 fps (default %(default)s)",
    )  # fmt: skip


def time_budget_s(args: argparse.Namespace) -> float:
    members = int(args.rooms) * (int(args.participants) + int(args.publishers))
    joins = members / max(float(args.join_rate), 1.0) + 2 * JOIN_TIMEOUT_S
    baseline = 0.0
    if float(args.baseline_seconds) > 0:
        baseline = 2 * (float(args.baseline_seconds) + JOIN_TIMEOUT_S + 15.0)
    setup = 60.0 + int(args.rooms) * 0.5 + members * 0.05
    return setup + joins + SETTLE_S + float(args.duration) + DRAIN_S + baseline + 90.0


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """What a spawned server needs: ICE on loopback (aioice skips 127.0.0.1 otherwise),
    room for --publishers."""
    return {
        "CONSULTD_RTC_HOST_ADDRESSES": "127.0.0.1",
        "CONSULTD_MAX_PUBLISHERS": str(max(int(args.publishers), 16)),
    }


# --- parent -------------------------------------------------------------------------------


async def run(ctx: RunContext) -> ScenarioResult:
    args = ctx.args
    rooms, subs, pubs = int(args.rooms), int(args.participants), int(args.publishers)
    duration, baseline_s = float(args.duration), float(args.baseline_seconds)
    if rooms < 1 or subs < 0 or pubs < 1 or duration <= 0 or baseline_s < 0:
        raise ValueError("--rooms and --publishers must be >= 1, --participants >= 0, "
                         "--duration > 0, --baseline-seconds >= 0")  # fmt: skip
    if args.join_rate <= 0 or args.clip_seconds < 1 or args.video_kbps < 50:
        raise ValueError("--join-rate > 0, --clip-seconds >= 1, --video-kbps >= 50")
    n_workers = max(1, min(int(args.workers), rooms * (pubs + subs)))
    pool = WorkerPool(worker_main, n_workers)
    pool.start()  # the workers import aiortc while the parent sets up
    relay = RelayProcess() if baseline_s > 0 else None
    try:
        if relay is not None:
            relay.start()
        result = await _drive(ctx, pool, relay, rooms, pubs, subs, duration, baseline_s)
    finally:
        ctx.progress.close()
        if relay is not None:
            relay.stop()
        await pool.close()
    result.worker_cpu_s = sum(pool.cpu_s)
    result.extra["generator_cpu_s_workers"] = [round(c, 3) for c in pool.cpu_s]
    return result


class RelayProcess:
    """``python -m bench.media_relay`` on a free loopback port; its CPU read with psutil."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.media_relay", "--port", str(self.port)],
            cwd=str(REPO_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def wait_ready(self) -> None:
        assert self.proc is not None
        if await wait_healthy(self.url, self.proc, RELAY_READY_TIMEOUT_S):
            return
        if self.proc.poll() is not None:
            raise RuntimeError("the MediaRelay baseline process exited")
        raise RuntimeError("the MediaRelay baseline process is not ready")

    def cpu_s(self) -> float:
        assert self.proc is not None
        proc = psutil.Process(self.proc.pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _on_progress(ctx: RunContext) -> Callable[[int, Message], None]:
    def on_message(_: int, msg: Message) -> None:
        if msg[0] == "progress":
            ctx.progress.update(msg[1])

    return on_message


def _deal(
    plan: list[tuple[str, list[str]]], pubs: int, subs: int, n_workers: int
) -> list[list[dict[str, Any]]]:
    """Members per worker: a room's publishers together, subscribers round-robin."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(n_workers)]
    gid = 0
    k = 0
    for r, (room_id, codes) in enumerate(plan):
        for p in range(pubs):
            out[r % n_workers].append({
                "gid": gid, "room": r, "room_id": room_id, "code": codes[0],
                "role": "pub", "name": f"Bench R{r} Pub{p}",
            })  # fmt: skip
            gid += 1
        for s in range(subs):
            out[k % n_workers].append({
                "gid": gid, "room": r, "room_id": room_id,
                "code": codes[(pubs + s) // join_chat.MAX_CODE_USES],
                "role": "sub", "name": f"Bench R{r} Sub{s}",
            })  # fmt: skip
            gid += 1
            k += 1
    return out


async def _drive(
    ctx: RunContext,
    pool: WorkerPool,
    relay: RelayProcess | None,
    rooms: int,
    pubs: int,
    subs: int,
    duration: float,
    baseline_s: float,
) -> ScenarioResult:
    args = ctx.args
    probe = ctx.probe
    n_workers = len(pool)
    ctx.progress.note("consultd-bench: encoding the clip (VP8 + Opus, once)")
    clip = await asyncio.to_thread(
        encode_clip, float(args.clip_seconds), video_kbps=int(args.video_kbps)
    )
    addr_base = random.randrange(240)
    members_per_room = pubs + subs + (BASELINE_SUBSCRIBERS + 1 if baseline_s > 0 else 0)
    plan = await join_chat._set_up(
        ctx, rooms + (1 if baseline_s > 0 else 0), members_per_room, addr_base + n_workers
    )
    baseline_room = plan.pop() if baseline_s > 0 else None
    dealt = _deal(plan, pubs, subs, n_workers)
    total = rooms * (pubs + subs)
    for w in range(n_workers):
        pool.send(w, "plan", {
            "url": ctx.url,
            "members": dealt[w],
            "clip": clip,
            "per_address": int(args.per_address),
            "addr_group": addr_base + w,
            "join_rate": float(args.join_rate) / n_workers,
            "publishers": pubs,
        })  # fmt: skip

    ctx.progress.phase("publish", rooms * pubs, unit="peer")
    published = await pool.gather("published", JOIN_TIMEOUT_S * 2 + 30, _on_progress(ctx))
    pool.broadcast("subscribe")
    ctx.progress.phase("subscribe", rooms * subs, unit="peer")
    join_s = rooms * subs / float(args.join_rate) + JOIN_TIMEOUT_S + FIRST_PACKET_TIMEOUT_S + 30
    subscribed = await pool.gather("subscribed", join_s, _on_progress(ctx))
    await asyncio.sleep(SETTLE_S)

    ctx.progress.phase("media", round(duration, 1), unit="s")
    cpu0 = probe.cpu_s() if probe is not None else None
    t0 = time.time_ns()
    end = time.monotonic() + duration
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(PROGRESS_EVERY_S, left))
        ctx.progress.update(min(PROGRESS_EVERY_S, max(left, 0.0)))
    t1 = time.time_ns()
    cpu1 = probe.cpu_s() if probe is not None else None
    rss_mb = probe.phase_peak_mb() if probe is not None else None
    await asyncio.sleep(DRAIN_S)
    pool.broadcast("stop", {"t0": t0, "t1": t1})
    ctx.progress.phase("tear-down", n_workers, unit="worker")
    results = await pool.gather("result", 60.0, _on_progress(ctx))
    ctx.progress.close()

    baseline: dict[str, Any] | None = None
    if baseline_room is not None and relay is not None:
        baseline = await _baseline(ctx, pool, baseline_room, relay, baseline_s)
    pool.broadcast("quit")
    cpu_window = (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None
    return _combine(
        published, subscribed, results, t0, t1, cpu_window, rss_mb, baseline, clip, total
    )


async def _baseline(
    ctx: RunContext,
    pool: WorkerPool,
    room: tuple[str, list[str]],
    relay: RelayProcess,
    seconds: float,
) -> dict[str, Any]:
    """1 -> 4 through the SFU, then through MediaRelay: CPU per delivered stream each."""
    await relay.wait_ready()
    out: dict[str, Any] = {}
    probe = ctx.probe
    for target in ("sfu", "relay"):
        if target == "sfu" and probe is None:
            continue  # no server CPU to compare with (--url of a server not seen)
        ctx.progress.phase(f"baseline {target} 1->{BASELINE_SUBSCRIBERS}", seconds, unit="s")
        pool.broadcast("baseline", {
            "target": target, "room_id": room[0], "code": room[1][0], "relay_url": relay.url,
        })  # fmt: skip
        ready = (await pool.gather("baseline_ready", JOIN_TIMEOUT_S * 2 + 30))[0]
        await asyncio.sleep(SETTLE_S)
        cpu = probe.cpu_s if target == "sfu" and probe is not None else relay.cpu_s
        c0, t0 = cpu(), time.time_ns()
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(PROGRESS_EVERY_S, left))
            ctx.progress.update(min(PROGRESS_EVERY_S, max(left, 0.0)))
        c1, t1 = cpu(), time.time_ns()
        pool.broadcast("baseline_stop", {"t0": t0, "t1": t1})
        got = (await pool.gather("baseline_result", 60.0))[0]
        wall = (t1 - t0) / NS
        streams = int(got["streams"])
        cpu_s = c1 - c0
        out[target] = {
            "streams": streams,
            "errors": {**ready["errors"], **got["errors"]},
            "packets_per_s": round(got["packets"] / wall, 1),
            "cpu_pct_of_core": round(100 * cpu_s / wall, 1),
            "cpu_ms_per_stream_s": round(1e3 * cpu_s / wall / streams, 3) if streams else None,
            "cpu_us_per_packet": round(1e6 * cpu_s / got["packets"], 2) if got["packets"] else None,
        }
    ctx.progress.close()
    sfu, rel = out.get("sfu"), out.get("relay")
    if sfu and rel and sfu["cpu_ms_per_stream_s"] and rel["cpu_ms_per_stream_s"]:
        out["cost_ratio"] = round(rel["cpu_ms_per_stream_s"] / sfu["cpu_ms_per_stream_s"], 1)
        # the relay re-encodes at aiortc's own bitrate and drops frames when it falls
        # behind, so its packets are not the clip's: per packet says that part too
        if sfu["cpu_us_per_packet"] and rel["cpu_us_per_packet"]:
            out["cost_ratio_per_packet"] = round(
                rel["cpu_us_per_packet"] / sfu["cpu_us_per_packet"], 1
            )
    return out


def _cat(parts: list[bytes]) -> np.ndarray[Any, Any]:
    return (
        np.concatenate([np.frombuffer(p, dtype=np.int64) for p in parts])
        if parts
        else np.zeros(0, dtype=np.int64)
    )


def _combine(
    published: list[dict[str, Any]],
    subscribed: list[dict[str, Any]],
    results: list[dict[str, Any]],
    t0: int,
    t1: int,
    cpu_window: float | None,
    rss_mb: float | None,
    baseline: dict[str, Any] | None,
    clip: Clip,
    total: int,
) -> ScenarioResult:
    wall = (t1 - t0) / NS
    errors: Counter[str] = Counter()
    for part in (*published, *subscribed, *results):
        errors.update(part["errors"])
    senders = [s for r in results for s in r["senders"]]
    receivers = [x for r in results for x in r["receivers"]]
    in_room: Counter[int] = Counter(x["room"] for x in receivers)
    pubs_in_room: Counter[int] = Counter(s["room"] for s in senders)

    send_keys = _cat([s["keys"] for s in senders])
    send_ns = _cat([s["times"] for s in senders])
    send_room = np.concatenate(
        [np.full(len(s["keys"]) // 8, s["room"], np.int64) for s in senders]
    ) if senders else np.zeros(0, np.int64)  # fmt: skip
    recv_keys = _cat([x["keys"] for x in receivers])
    recv_ns = _cat([x["times"] for x in receivers])
    recv_owner = np.concatenate(
        [np.full(len(x["keys"]) // 8, i, np.int64) for i, x in enumerate(receivers)]
    ) if receivers else np.zeros(0, np.int64)  # fmt: skip

    in_window = (send_ns >= t0) & (send_ns < t1)
    others = np.array([in_room[int(r)] - 1 for r in send_room], dtype=np.int64)
    expected = int(others[in_window].sum()) if others.size else 0
    m = match(send_keys, send_ns, recv_keys, recv_ns, recv_owner)
    first = first_receipts(m)
    counted = first & (m.send_ns >= t0) & (m.send_ns < t1)
    delivered = int(np.count_nonzero(counted))
    forwarded = int(np.count_nonzero((recv_ns >= t0) & (recv_ns < t1)))
    latency_ms = m.latency_ns[counted].astype(np.float64) / 1e6
    latency_at_s = (m.send_ns[counted] - t0).astype(np.float64) / 1e9
    lost = max(0, expected - delivered)
    streams = sum(2 * pubs_in_room[r] * n - 2 * pubs_in_room[r] for r, n in in_room.items())
    lag = _cat([r["lag_ns"] for r in results]).astype(np.float64) / 1e6

    extra: dict[str, Any] = {
        "publishers": len(senders),
        "receivers": len(receivers),
        "members_planned": total,
        "streams_delivered": streams,
        "streams_receiving": sum(int(x["streams"]) for x in receivers),
        "forwarded_packets_per_s": round(forwarded / wall, 1),
        "cpu_us_per_forwarded_packet": (
            round(cpu_window * 1e6 / forwarded, 2) if cpu_window is not None and forwarded else None
        ),
        "server_cpu_pct_of_core": (
            round(100 * cpu_window / wall, 1) if cpu_window is not None else None
        ),
        "delivery_ratio": round(delivered / expected, 5) if expected else None,
        "packets_sent_in_window": int(np.count_nonzero(in_window)),
        "deliveries_expected": expected,
        "deliveries": delivered,
        "unmatched_receipts": m.unmatched,
        "max_streams_80pct_core": (
            int(0.8 * wall * streams / cpu_window) if cpu_window and streams else None
        ),
        "cost_ratio_vs_transcode": baseline.get("cost_ratio") if baseline else None,
        "cost_ratio_vs_transcode_per_packet": (
            baseline.get("cost_ratio_per_packet") if baseline else None
        ),
        "baseline_1_to_4": {k: v for k, v in (baseline or {}).items() if k in ("sfu", "relay")},
        "server_peak_rss_mb_window": rss_mb,
        "clip": {
            "video": f"VP8 {clip.width}x{clip.height}@{clip.fps} {clip.video_kbps:.0f} kbps",
            "audio": f"Opus 20 ms {clip.audio_kbps:.0f} kbps",
            "seconds": clip.seconds,
        },
        "generator_loop_lag_ms": stats.percentiles(lag),
        "client_receive_stack_ms": stats.percentiles(
            _cat([x["stack_ns"] for x in receivers]).astype(np.float64) / 1e6
        ),
        "errors_by_kind": dict(errors) | ({"lost_packets": lost} if lost else {}),
    }
    return ScenarioResult(
        latency_label="added forwarding latency",
        latency_ms=latency_ms,
        latency_at_s=latency_at_s,
        throughput_per_s=round(forwarded / wall, 1),
        throughput_label="forwarded packets/s",
        errors=lost + sum(errors.values()),
        extra=extra,
    )
