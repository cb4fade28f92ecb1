"""The load generator's side of the media bench: one worker process's participants.

Each ``Member`` redeems a share code, connects its socket (``bench.client.SioClient``),
``media_join``s and offers through a ``MediaPeer`` (``bench.media_peers``); the worker
reports to the parent (``bench.scenarios.media``) over its pipe: ``published``,
``subscribed``, then, at ``stop``, its send and receive logs; then any ``baseline`` rounds
(worker 0 runs them, 1 publisher -> 4 subscribers through the SFU or the MediaRelay).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections import Counter
from collections.abc import Mapping
from functools import partial
from typing import Any

import aiohttp

from bench.client import (
    AddressSessions,
    ApiError,
    ConnectError,
    SioClient,
    redeem,
)
from bench.media_clip import Clip
from bench.media_peers import MediaPeer, SignalError, as_int64
from bench.pool import Message, WorkerLink, run_loop
from bench.scenarios.join_chat import serve_worker
from media import set_ice_host_addresses

NS = 1_000_000_000
JOIN_TIMEOUT_S = 30.0
FIRST_PACKET_TIMEOUT_S = 15.0
PROGRESS_EVERY_S = 0.2
PLAN_TIMEOUT_S = 600.0
BASELINE_SUBSCRIBERS = 4
KEEP_BEFORE_S = 2.0  # sends kept from before the window, to match its first receipts


def worker_main(link: WorkerLink) -> None:
    """Entry point of a worker process (spawn context)."""
    run_loop(_serve(link))


async def _serve(link: WorkerLink) -> None:
    set_ice_host_addresses(["127.0.0.1"])
    await serve_worker(link, Worker)


class Member:
    """One simulated participant: its socket and its peer connection."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.gid: int = spec["gid"]
        self.room: int = spec["room"]
        self.room_id: str = spec["room_id"]
        self.code: str = spec["code"]
        self.role: str = spec["role"]
        self.name: str = spec["name"]
        self.client: SioClient | None = None
        self.peer: MediaPeer | None = None
        self.joined: asyncio.Future[Any] | None = None
        self.pending = [0, 0]  # media_negotiate before the first offer
        self.ok = False


class Worker:
    """The members dealt to one worker process."""

    def __init__(self, link: WorkerLink, plan: dict[str, Any]) -> None:
        self.link = link
        self.url: str = plan["url"]
        self.clip: Clip = plan["clip"]
        self.sessions = AddressSessions(plan["addr_group"], plan["per_address"])
        self.join_rate: float = plan["join_rate"]
        self.publishers: int = plan["publishers"]
        self.members = [Member(spec) for spec in plan["members"]]
        self.errors: Counter[str] = Counter()
        self.lag_ns = array("q")
        self.done = 0
        self.closing = False

    async def run(self) -> None:
        pubs = [m for m in self.members if m.role == "pub"]
        subs = [m for m in self.members if m.role == "sub"]
        await self._join_all(pubs, 0)
        self.link.send("published", {"ok": sum(m.ok for m in pubs), "errors": self._take()})
        await self.link.recv("subscribe", PLAN_TIMEOUT_S)
        await self._join_all(subs, len(pubs), 2 * self.publishers)
        self.link.send("subscribed", {"ok": sum(m.ok for m in subs), "errors": self._take()})
        lag_task = asyncio.create_task(self._watch_lag())
        try:
            window = await self.link.recv("stop", PLAN_TIMEOUT_S)
        finally:
            lag_task.cancel()
        self.closing = True
        result = self._result(window["t0"])
        await self._close_members(self.members)
        result["errors"] = self._take()
        self.link.send("result", result)
        while True:
            kind, spec = await _recv_any(self.link, PLAN_TIMEOUT_S)
            if kind != "baseline":
                return
            if self.link.index == 0:
                await self._baseline(spec)
            else:  # one worker runs the baseline; the others answer for the pool's gather
                self.link.send("baseline_ready", {"errors": {}})
                await self.link.recv("baseline_stop", PLAN_TIMEOUT_S)
                self.link.send("baseline_result", {"packets": 0, "streams": 0, "errors": {}})

    def _take(self) -> dict[str, int]:
        out, self.errors = dict(self.errors), Counter()
        return out

    def _result(self, t0: int) -> dict[str, Any]:
        keep_send = t0 - int(KEEP_BEFORE_S * NS)
        senders, receivers = [], []
        for m in self.members:
            peer = m.peer
            if peer is None or not m.ok:
                continue
            if peer.sent is not None:
                times = as_int64(peer.sent.times)
                keep = times >= keep_send
                keys = as_int64(peer.sent.keys)
                senders.append({
                    "room": m.room, "keys": keys[keep].tobytes(), "times": times[keep].tobytes(),
                })  # fmt: skip
            times = as_int64(peer.recv.times)
            keep = times >= t0
            keys = as_int64(peer.recv.keys)
            stack = as_int64(peer.recv.stack_ns)
            receivers.append({
                "room": m.room, "keys": keys[keep].tobytes(), "times": times[keep].tobytes(),
                "stack_ns": stack[keep].tobytes(), "streams": len(peer.recv.ssrcs),
            })  # fmt: skip
            for err in peer.errors:
                self.errors[err] += 1
        return {"senders": senders, "receivers": receivers, "lag_ns": self.lag_ns.tobytes()}

    async def _join_all(self, members: list[Member], offset: int, streams: int = 0) -> None:
        """Join members at the worker's pace; a subscriber is in once ``streams`` flow."""
        interval = 1.0 / self.join_rate if self.join_rate > 0 else 0.0
        start = time.monotonic()
        tasks = []
        reported = self.done
        for i, member in enumerate(members):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            session = self.sessions.get(offset + i)
            tasks.append(asyncio.create_task(self._join(member, session, streams)))
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=PROGRESS_EVERY_S)
            self.link.send("progress", self.done - reported)
            reported = self.done

    async def _join(self, member: Member, session: aiohttp.ClientSession, streams: int) -> None:
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_S + FIRST_PACKET_TIMEOUT_S):
                await self._connect_socket(member, session, self.url)
                peer = await self._media_join(member, self.clip if member.role == "pub" else None)
                if member.role == "sub":
                    await peer.recv.wait_streams(streams)
            member.ok = True
        except ApiError as exc:
            self.errors[f"redeem_{exc.code}"] += 1
        except ConnectError as exc:
            self.errors[f"connect_{exc.code}"] += 1
        except SignalError as exc:
            self.errors[f"media_{exc.code}"] += 1
        except TimeoutError:
            self.errors[f"{member.role}_timeout"] += 1
        except (aiohttp.ClientError, OSError, KeyError, ValueError, TypeError) as exc:
            self.errors[f"{member.role}_{type(exc).__name__}"] += 1
        finally:
            self.done += 1

    async def _connect_socket(
        self, member: Member, session: aiohttp.ClientSession, url: str
    ) -> None:
        admission = await redeem(session, url, member.room_id, member.code, member.name)
        if admission.get("state") != "admitted":
            raise ConnectError("not_admitted", str(admission.get("state")))
        member.joined = asyncio.get_running_loop().create_future()
        member.client = SioClient(
            session,
            url,
            {"room": member.room_id, "token": admission["token"]},
            {
                "joined": partial(self._on_joined, member),
                "media_negotiate": partial(self._on_negotiate, member),
                "media_closed": partial(self._on_closed, member),
            },
        )
        await member.client.connect(JOIN_TIMEOUT_S)
        await member.joined

    async def _media_join(self, member: Member, clip: Clip | None) -> MediaPeer:
        client = member.client
        assert client is not None
        ack = await _ack(client, "media_join", {})
        tracks = [t for t in ack.get("tracks") or [] if isinstance(t, dict)]
        audio = sum(1 for t in tracks if t.get("kind") == "audio")
        video = sum(1 for t in tracks if t.get("kind") == "video")
        if clip is not None:
            clip = clip.with_voice(member.gid)

        async def signal(sdp: str, sources: Mapping[str, str]) -> str:
            answer = await _ack(client, "media_offer", {"sdp": sdp, "sources": dict(sources)})
            return str(answer["sdp"])

        peer = MediaPeer(signal, clip)
        member.peer = peer
        await peer.connect(audio + member.pending[0], video + member.pending[1])
        return peer

    def _on_joined(self, member: Member, _: Any) -> None:
        if member.joined is not None and not member.joined.done():
            member.joined.set_result(None)

    def _on_negotiate(self, member: Member, payload: Any) -> None:
        try:
            audio, video = int(payload.get("audio", 0)), int(payload.get("video", 0))
        except (AttributeError, TypeError, ValueError):
            self.errors["bad_media_negotiate"] += 1
            return
        if member.peer is None:
            member.pending[0] += audio
            member.pending[1] += video
        else:
            member.peer.negotiation_needed(audio, video)

    def _on_closed(self, member: Member, payload: Any) -> None:
        if not self.closing:
            reason = payload.get("reason") if isinstance(payload, dict) else None
            self.errors[f"media_closed_{reason}"] += 1

    async def _watch_lag(self, tick_s: float = 0.01) -> None:
        while True:
            t0 = time.perf_counter_ns()
            await asyncio.sleep(tick_s)
            self.lag_ns.append(time.perf_counter_ns() - t0 - int(tick_s * NS))

    async def _close_members(self, members: list[Member]) -> None:
        async def close(member: Member) -> None:
            if member.client is not None and not member.client.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(await member.client.call("media_leave", {}), 2)
            if member.peer is not None:
                await member.peer.close()
            if member.client is not None:
                await member.client.close()

        if members:
            await asyncio.wait([asyncio.create_task(close(m)) for m in members], timeout=15)

    async def close(self) -> None:
        self.closing = True
        await self._close_members(self.members)
        await self.sessions.close()

    # baseline ---------------------------------------------------------------------------

    async def _baseline(self, spec: dict[str, Any]) -> None:
        """1 publisher -> 4 subscribers through the SFU or the relay, until told to stop."""
        pub = Member({"gid": 1_000_000, "room": -1, "room_id": spec["room_id"],
                      "code": spec["code"], "role": "pub", "name": "Bench baseline"})  # fmt: skip
        subs = [
            Member({"gid": 1_000_001 + i, "room": -1, "room_id": spec["room_id"],
                    "code": spec["code"], "role": "sub", "name": f"Bench baseline sub {i}"})
            for i in range(BASELINE_SUBSCRIBERS)
        ]  # fmt: skip
        self.closing = False
        if spec["target"] == "sfu":
            await self._join_all([pub], 10_000)
            await self._join_all(subs, 10_001, 2)
        else:
            relay_session = self.sessions.get(20_000)
            await self._relay_join(pub, relay_session, spec["relay_url"], "publish")
            await asyncio.gather(
                *(self._relay_join(s, relay_session, spec["relay_url"], "subscribe") for s in subs)
            )
        self.link.send("baseline_ready", {"errors": self._take()})
        window = await self.link.recv("baseline_stop", PLAN_TIMEOUT_S)
        t0, t1 = window["t0"], window["t1"]
        counts = [s.peer.recv.count_between(t0, t1) if s.peer else 0 for s in subs]
        streams = sum(len(s.peer.recv.ssrcs) if s.peer else 0 for s in subs)
        self.closing = True
        await self._close_members([pub, *subs])
        self.link.send("baseline_result", {
            "packets": sum(counts), "streams": streams, "errors": self._take(),
        })  # fmt: skip

    async def _relay_join(
        self, member: Member, session: aiohttp.ClientSession, url: str, role: str
    ) -> None:
        async def signal(sdp: str, sources: Mapping[str, str]) -> str:
            async with session.post(
                url + "/offer",
                json={"sdp": sdp, "role": role},
                timeout=aiohttp.ClientTimeout(total=JOIN_TIMEOUT_S),
            ) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise SignalError(f"relay_http_{resp.status}", str(body.get("error")))
                return str(body["sdp"])  # fmt: skip

        clip = self.clip.with_voice(member.gid) if role == "publish" else None
        member.peer = MediaPeer(signal, clip)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_S + FIRST_PACKET_TIMEOUT_S):
                await member.peer.connect(0 if clip else 1, 0 if clip else 1)
                if clip is None:
                    await member.peer.recv.wait_streams(2)
            member.ok = True
        except (SignalError, TimeoutError, aiohttp.ClientError, OSError, ConnectionError) as exc:
            self.errors[f"relay_{getattr(exc, 'code', type(exc).__name__)}"] += 1


async def _recv_any(link: WorkerLink, timeout_s: float) -> Message:
    """The parent's next message, whatever its kind."""
    deadline = time.monotonic() + timeout_s
    while not link.conn.poll():
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker {link.index}: no message from the parent")
        await asyncio.sleep(0.01)
    kind, payload = link.conn.recv()
    return str(kind), payload


async def _ack(client: SioClient, event: str, payload: Any) -> dict[str, Any]:
    """Send ``event``, wait for its ack; ``SignalError`` on ``{ok: false}``."""
    fut = await client.call(event, payload)
    answer = await asyncio.wait_for(fut, JOIN_TIMEOUT_S)
    if not isinstance(answer, dict):
        raise SignalError("malformed_ack", f"{event}: {answer!r}"[:200])
    if not answer.get("ok"):
        err = answer.get("error")
        if not isinstance(err, dict):
            err = {}
        raise SignalError(str(err.get("code", "error")), str(err.get("message", ""))[:200])
    return answer
