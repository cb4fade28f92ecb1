"""Server CPU per forwarded RTP packet: the SFU in this process, the clients in another.

    .venv/bin/python -m bench.media_forwarding --subscribers 100 --uvloop --compare-prototype

A child process runs the aiortc clients: publishers encode a 320x240 noise video (so VP8
fills its 500 kbps: ~1 kB packets) and a tone; subscribers count packets without decoding
(their receivers are claimed through the same bridge, so the child stays light). The server
process measures ``time.process_time()`` over a fixed window after warm-up, divided by the
packets its consumers forwarded in that window; everything the server process does is
included (ICE, DTLS/SRTP in and out, RTCP, asyncio). Not a pytest test: run it by hand.

``--compare-prototype`` measures the prototype's forwarding side by side, in one run with
the same clients: the window is cut into rounds that alternate between ``Consumer.forward``
(a patched copy of the producer's bytes) and the prototype's way (a new aiortc
``RtpPacket`` per consumer, serialised with the consumer's extension map, sent through
aiortc's ``RTCDtlsTransport._send_rtp``: SRTP protect, then the ICE transport's awaited
send chain). ``--prototype-send bridge`` sends the prototype's packets through our
``DtlsBridge.send_rtp`` instead, which isolates the per-consumer rewrite. The ratio is
measured on one machine in one run, so it does not depend on the machine's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing
import os
import pickle
import struct
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
from aiortc.clock import current_ntp_time
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media import Consumer, NegotiationRequest, Router, Transport, set_ice_host_addresses
from media import _aiortc_bridge as bridge
from media.rtp import RtpHeader


class _Pipe:
    """Length-prefixed pickles over a multiprocessing connection's socket, both ways
    non-blocking on the asyncio loop (the loop makes the descriptor non-blocking, so
    ``Connection.send``/``recv`` could stop half-way through a message)."""

    def __init__(self, conn: Connection, handle: Any) -> None:
        self.conn = conn
        self._fd = conn.fileno()
        os.set_blocking(self._fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)
        self._handle = handle
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in = bytearray()
        self._out = bytearray()
        self._writing = False

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # the other side is gone
            self._loop.remove_reader(self._fd)
            return
        self._in += chunk
        while len(self._in) >= 4:
            (n,) = struct.unpack_from("!I", self._in)
            if len(self._in) < 4 + n:
                break
            msg = pickle.loads(bytes(self._in[4 : 4 + n]))
            del self._in[: 4 + n]
            task = asyncio.ensure_future(self._handle(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def send(self, *msg: Any) -> None:
        data = pickle.dumps(msg)
        self._out += struct.pack("!I", len(data)) + data
        self._flush()

    def _flush(self) -> None:
        while self._out:
            try:
                n = os.write(self._fd, self._out)
            except BlockingIOError:
                if not self._writing:
                    self._loop.add_writer(self._fd, self._flush)
                    self._writing = True
                return
            del self._out[:n]
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False


#: Unmeasured pause after switching the forwarding of a --compare-prototype round.
SETTLE_S = 0.3


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

            def on_state() -> None:
                if pc.connectionState == "connected":
                    connected.set()

            pc.on("connectionstatechange", on_state)
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


# --- the prototype's per-consumer forwarding, for --compare-prototype ---------------------


def _extensions_map(extensions: dict[int, str]) -> HeaderExtensionsMap:
    ids = HeaderExtensionsMap()
    ids.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in extensions.items()
            ]
        )
    )
    return ids


class PrototypeForwarding:
    """The prototype's way, installed as ``Consumer.forward``: parse the producer's packet
    into an aiortc ``RtpPacket`` (once per packet, shared by its consumers), then per
    consumer build a new ``RtpPacket`` with its SSRC, sequence number, timestamp, payload
    type and extensions (MID, abs-send-time, audio level) and serialise it."""

    def __init__(self, aiortc_send: bool = True) -> None:
        self._aiortc_send = aiortc_send
        self._maps: dict[int, HeaderExtensionsMap] = {}
        self._parsed: tuple[bytes, RtpPacket] | None = None
        self._ours = Consumer.forward

    def _map(self, extensions: dict[int, str]) -> HeaderExtensionsMap:
        key = id(extensions)
        ids = self._maps.get(key)
        if ids is None:
            ids = self._maps[key] = _extensions_map(extensions)
        return ids

    def install(self, prototype: bool) -> None:
        forwarding = self

        def forward(
            consumer: Consumer, data: bytes, header: RtpHeader, abs_send_time: bytes | None
        ) -> None:
            forwarding.forward(consumer, data, header)

        setattr(Consumer, "forward", forward if prototype else self._ours)  # noqa: B010

    def forward(self, consumer: Any, data: bytes, header: RtpHeader) -> None:
        b1 = consumer._table[header.b1]
        if b1 < 0:
            consumer.dropped += 1
            return
        parsed = self._parsed
        if parsed is None or parsed[0] is not data:
            parsed = (data, RtpPacket.parse(data, self._map(consumer.producer.extensions)))
            self._parsed = parsed
        source = parsed[1]
        packet = RtpPacket(
            payload_type=b1 & 0x7F,
            marker=b1 >> 7,
            sequence_number=(source.sequence_number + consumer._seq_off) & 0xFFFF,
            timestamp=(source.timestamp + consumer._ts_off) & 0xFFFFFFFF,
            ssrc=consumer._ssrc,
            payload=source.payload,
        )
        packet.extensions.mid = consumer.mid
        packet.extensions.abs_send_time = (current_ntp_time() >> 14) & 0x00FFFFFF
        packet.extensions.audio_level = source.extensions.audio_level
        consumer._last = header
        data = packet.serialize(self._map(consumer.extensions))
        if self._aiortc_send:
            sent = _send_through_aiortc(consumer._send.__self__._dtls, data)
        else:
            sent = consumer._send(data)
        if sent:
            consumer.packets_sent += 1
            consumer.octets_sent += len(packet.payload)
        else:
            consumer.dropped += 1


def _send_through_aiortc(dtls: Any, data: bytes) -> bool:
    # The prototype awaited ``_send_rtp`` per consumer; nothing in that chain suspends
    # (SRTP protect, then aioice's send -> the datagram transport's sendto), so driving
    # the coroutine one step runs it whole, as an ``await`` inside a coroutine would.
    coroutine = dtls._send_rtp(data)
    try:
        coroutine.send(None)
    except StopIteration:
        return True
    except ConnectionError:
        return False
    coroutine.close()  # it suspended: not the chain measured here
    return False


# --- the parent: the SFU --------------------------------------------------------------------


async def _serve(
    publishers: int,
    subscribers: int,
    seconds: float,
    profile: str | None = None,
    compare: bool = False,
    rounds: int = 6,
    prototype_send: str = "aiortc",
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

    async def window(seconds: float, profiler: cProfile.Profile | None = None) -> dict[str, Any]:
        rx0, fwd0 = await received(), forwarded()
        times0 = os.times()
        cpu0, wall0 = time.process_time(), time.monotonic()
        if profiler is not None:
            profiler.enable()
        await asyncio.sleep(seconds)
        if profiler is not None:
            profiler.disable()
        cpu1, wall1 = time.process_time(), time.monotonic()
        times1 = os.times()
        fwd1 = forwarded()
        rx1 = await received()
        return {
            "seconds": wall1 - wall0,
            "cpu": cpu1 - cpu0,
            "user": times1.user - times0.user,
            "system": times1.system - times0.system,
            "packets": fwd1 - fwd0,
            "received": rx1 - rx0,
        }

    def figures(w: dict[str, Any]) -> dict[str, Any]:
        packets = max(w["packets"], 1)
        return {
            "seconds": round(w["seconds"], 2),
            "forwarded_packets": w["packets"],
            "forwarded_packets_per_s": round(w["packets"] / w["seconds"]),
            "server_cpu_pct_of_core": round(100 * w["cpu"] / w["seconds"], 1),
            "cpu_us_per_forwarded_packet": round(1e6 * w["cpu"] / packets, 2),
            "of_which_user_us": round(1e6 * w["user"] / packets, 2),
            "of_which_system_us": round(1e6 * w["system"] / packets, 2),
            "delivery_ratio_approx": round(w["received"] / packets, 4),
        }

    result: dict[str, Any] = {
        "publishers": publishers,
        "subscribers": subscribers,
        "streams_forwarded": expected,
    }
    if not compare:
        profiler = cProfile.Profile() if profile else None
        result.update(figures(await window(seconds, profiler)))
        if profiler is not None:
            profiler.dump_stats(str(profile))
    else:
        # ABBA rounds, so a drift in the machine's speed weighs on both sides alike.
        prototype = PrototypeForwarding(aiortc_send=prototype_send == "aiortc")
        totals: dict[bool, dict[str, Any]] = {}
        slot = seconds / (2 * rounds)
        order = [r % 2 == 1 for r in range(rounds)]  # False, True, False, ...
        for proto_first in order:
            for use_prototype in (proto_first, not proto_first):
                prototype.install(use_prototype)
                await asyncio.sleep(SETTLE_S)  # packets in flight belong to the other side
                w = await window(slot)
                total = totals.setdefault(use_prototype, dict.fromkeys(w, 0.0))
                for key, value in w.items():
                    total[key] += value
        prototype.install(False)
        ours, theirs = figures(totals[False]), figures(totals[True])
        result["consultd"] = ours
        result["prototype"] = theirs
        result["rounds"] = rounds
        result["prototype_send"] = prototype_send
        result["prototype_over_consultd_cpu_per_packet"] = round(
            theirs["cpu_us_per_forwarded_packet"] / ours["cpu_us_per_forwarded_packet"], 3
        )
        result["consultd_over_prototype_cpu_per_packet"] = round(
            ours["cpu_us_per_forwarded_packet"] / theirs["cpu_us_per_forwarded_packet"], 3
        )
    result["consumer_drops_total"] = sum(c.dropped for c in consumers())
    pipe.send("quit")
    await asyncio.sleep(0.5)
    await router.close()
    child.join(10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", help="write cProfile stats of the window to this file")
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop, as consultd does")
    parser.add_argument(
        "--compare-prototype",
        action="store_true",
        help="alternate rounds with the prototype's forwarding (a new RtpPacket per consumer)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each side (compare)")
    parser.add_argument(
        "--prototype-send",
        choices=("aiortc", "bridge"),
        default="aiortc",
        help="the prototype's packets go out through aiortc's _send_rtp (as the prototype"
        " did) or through consultd's DtlsBridge.send_rtp (only the rewrite differs)",
    )
    args = parser.parse_args()
    serve = _serve(
        args.publishers,
        args.subscribers,
        args.seconds,
        args.profile,
        args.compare_prototype,
        max(1, args.rounds),
        args.prototype_send,
    )
    if args.uvloop:
        import uvloop

        result = uvloop.run(serve)
    else:
        result = asyncio.run(serve)
    result["loop"] = "uvloop" if args.uvloop else "asyncio"
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
