"""Server CPU per forwarded RTP packet: the SFU in this process, the clients in another.

    PYTHONPATH=. .venv/bin/python -m tests.media.bench_forwarding --subscribers 20 --seconds 10

A child process runs the aiortc clients: publishers encode a 320x240 noise video (so VP8
fills its 500 kbps: ~1 kB packets) and a tone; subscribers count packets without decoding
(their receivers are claimed through the same bridge, so the child stays light). The server
process measures ``time.process_time()`` over a fixed window after warm-up, divided by the
packets its consumers forwarded in that window; everything the server process does is
included (ICE, DTLS/SRTP in and out, RTCP, asyncio). Not a pytest test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from typing import Any

import av
import numpy as np
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.rtcconfiguration import RTCBundlePolicy

from media import NegotiationRequest, Router, Transport, set_ice_host_addresses
from media import _aiortc_bridge as bridge


class _Pipe:
    """Messages over a multiprocessing connection, read from the asyncio loop."""

    def __init__(self, conn: Connection, handle: Any) -> None:
        self.conn = conn
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable)
        self._handle = handle
        self._tasks: set[asyncio.Task[Any]] = set()

    def _readable(self) -> None:
        while True:
            try:
                if not self.conn.poll():
                    return
                msg = self.conn.recv()
            except (EOFError, OSError):  # the other side is gone
                asyncio.get_running_loop().remove_reader(self.conn.fileno())
                return
            task = asyncio.ensure_future(self._handle(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def send(self, *msg: Any) -> None:
        self.conn.send(msg)


# --- the child: clients ---------------------------------------------------------------------


class NoiseTrack(VideoStreamTrack):
    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(1)
        self._frames = [rng.integers(0, 255, (240, 320, 3), np.uint8) for _ in range(8)]
        self._n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self._frames[self._n % 8], format="rgb24")
        self._n += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


class _Counter:
    def __init__(self) -> None:
        self.packets = 0

    def receive_rtp(self, data: bytes) -> None:
        self.packets += 1

    def receive_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        pass


async def _clients(conn: Connection, publishers: int, subscribers: int) -> None:
    set_ice_host_addresses(["127.0.0.1"])
    pcs: dict[str, RTCPeerConnection] = {}
    locks: dict[str, asyncio.Lock] = {}
    answers: dict[str, asyncio.Future[str]] = {}
    counter = _Counter()
    done = asyncio.get_running_loop().create_future()

    async def negotiate(name: str, audio: int = 0, video: int = 0) -> None:
        pc = pcs[name]
        async with locks[name]:
            for kind, n in (("audio", audio), ("video", video)):
                for _ in range(n):
                    t = pc.addTransceiver(kind, direction="recvonly")
                    bridge.DtlsBridge.of(t.receiver.transport).claim_receiver(t.receiver, counter)
            await pc.setLocalDescription(await pc.createOffer())
            answers[name] = asyncio.get_running_loop().create_future()
            pipe.send("offer", name, pc.localDescription.sdp)
            sdp = await answers[name]
            connected = asyncio.Event()
            pc.on(
                "connectionstatechange",
                lambda: pc.connectionState == "connected" and connected.set(),
            )
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            if pc.connectionState != "connected":
                await connected.wait()

    async def handle(msg: tuple[Any, ...]) -> None:
        if msg[0] == "answer":
            answers[msg[1]].set_result(msg[2])
        elif msg[0] == "renegotiate":
            await negotiate(msg[1], msg[2], msg[3])
        elif msg[0] == "count":
            pipe.send("count", counter.packets)
        elif msg[0] == "quit":
            done.set_result(None)

    pipe = _Pipe(conn, handle)
    names = [f"pub{i}" for i in range(publishers)] + [f"sub{i}" for i in range(subscribers)]
    for name in names:
        pcs[name] = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        locks[name] = asyncio.Lock()
        pipe.send("join", name, name.startswith("pub"))
    for name in names[:publishers]:
        pcs[name].addTrack(NoiseTrack())
        pcs[name].addTrack(AudioStreamTrack())
        await negotiate(name)
    pipe.send("published")
    await done
    for pc in pcs.values():
        await pc.close()


def _child(conn: Connection, publishers: int, subscribers: int) -> None:
    asyncio.run(_clients(conn, publishers, subscribers))


# --- the parent: the SFU --------------------------------------------------------------------


async def _serve(
    publishers: int, subscribers: int, seconds: float, profile: str | None = None
) -> dict[str, Any]:
    set_ice_host_addresses(["127.0.0.1"])
    ctx = multiprocessing.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe()
    child = ctx.Process(target=_child, args=(child_conn, publishers, subscribers), daemon=True)
    child.start()
    router = Router("bench")
    transports: dict[str, Transport] = {}
    published = asyncio.get_running_loop().create_future()
    counts: asyncio.Queue[int] = asyncio.Queue()

    def needed(name: str) -> Any:
        def ask(request: NegotiationRequest) -> None:
            pipe.send("renegotiate", name, request.audio, request.video)

        return ask

    async def handle(msg: tuple[Any, ...]) -> None:
        if msg[0] == "join":
            transports[msg[1]] = router.create_transport(
                msg[1], can_publish=msg[2], on_negotiation_needed=needed(msg[1])
            )
        elif msg[0] == "offer":
            pipe.send("answer", msg[1], await transports[msg[1]].apply_offer(msg[2]))
        elif msg[0] == "published":
            published.set_result(None)
        elif msg[0] == "count":
            counts.put_nowait(msg[1])

    pipe = _Pipe(parent_conn, handle)

    def consumers() -> list[Any]:
        return [c for t in transports.values() for c in t.consumers]

    def forwarded() -> int:
        return sum(c.packets_sent for c in consumers())

    async def received() -> int:
        pipe.send("count")
        return await counts.get()

    await published
    expected = 2 * publishers * subscribers + 2 * publishers * (publishers - 1)
    deadline = time.monotonic() + 60
    while sum(1 for c in consumers() if c.packets_sent > 0) < expected:
        if time.monotonic() > deadline:
            raise SystemExit("not every consumer started within 60 s")
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)  # warm-up

    rx0, fwd0 = await received(), forwarded()
    profiler = cProfile.Profile() if profile else None
    times0 = os.times()
    cpu0, wall0 = time.process_time(), time.monotonic()
    if profiler is not None:
        profiler.enable()
    await asyncio.sleep(seconds)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    cpu1, wall1 = time.process_time(), time.monotonic()
    times1 = os.times()
    fwd1 = forwarded()
    rx1 = await received()
    dropped = sum(c.dropped for c in consumers())
    pipe.send("quit")
    await asyncio.sleep(0.5)
    await router.close()
    child.join(10)
    packets = fwd1 - fwd0
    return {
        "publishers": publishers,
        "subscribers": subscribers,
        "streams_forwarded": expected,
        "seconds": round(wall1 - wall0, 2),
        "forwarded_packets": packets,
        "forwarded_packets_per_s": round(packets / (wall1 - wall0)),
        "server_cpu_pct_of_core": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
        "cpu_us_per_forwarded_packet": round(1e6 * (cpu1 - cpu0) / max(packets, 1), 2),
        "of_which_user_us": round(1e6 * (times1.user - times0.user) / max(packets, 1), 2),
        "of_which_system_us": round(1e6 * (times1.system - times0.system) / max(packets, 1), 2),
        "delivery_ratio_approx": round((rx1 - rx0) / max(packets, 1), 4),
        "consumer_drops_total": dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", help="write cProfile stats of the window to this file")
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop, as consultd does")
    args = parser.parse_args()
    serve = _serve(args.publishers, args.subscribers, args.seconds, args.profile)
    if args.uvloop:
        import uvloop

        result = uvloop.run(serve)
    else:
        result = asyncio.run(serve)
    result["loop"] = "uvloop" if args.uvloop else "asyncio"
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
