"""The transcoding baseline of the media bench: aiortc's ``MediaRelay`` in its own process.

    python -m bench.media_relay --port PORT

What an aiortc server does when it does not forward RTP: it decodes each publisher's track
once and every subscriber's ``RTCRtpSender`` encodes it again (``MediaRelay`` fans the
decoded frames out). The bench runs it beside the SFU with the same clients, reads this
process's CPU with psutil and compares the CPU per delivered stream.

Signalling is one HTTP call, as in aiortc's own server example, on loopback only:
``POST /offer {"sdp", "role": "publish" | "subscribe"}`` -> ``{"sdp": answer}``. A
publisher's tracks are the relay's sources (the latest publisher wins); a subscriber's
``recvonly`` m-lines each get a relayed source of their kind. ``GET /healthz`` -> 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.rtcconfiguration import RTCBundlePolicy

from media import set_ice_host_addresses

SOURCE_TIMEOUT_S = 10.0
MAX_SDP = 65536


class RelayServer:
    """Peer connections and the relay's sources."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.sources: dict[str, MediaStreamTrack] = {}
        self.have_sources = asyncio.Event()
        self.pcs: set[RTCPeerConnection] = set()

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pcs.add(pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.pcs.discard(pc)
                await pc.close()

        return pc

    async def publish(self, sdp: str) -> str:
        pc = self._new_pc()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.sources[track.kind] = track
            if {"audio", "video"} <= set(self.sources):
                self.have_sources.set()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def subscribe(self, sdp: str) -> str:
        await asyncio.wait_for(self.have_sources.wait(), SOURCE_TIMEOUT_S)
        pc = self._new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for t in pc.getTransceivers():
            source = self.sources.get(t.kind)
            if source is not None and t.sender.track is None:
                pc.addTrack(self.relay.subscribe(source))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def close(self) -> None:
        pcs, self.pcs = list(self.pcs), set()
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)


async def _offer(request: web.Request) -> web.Response:
    server: RelayServer = request.app["relay"]
    try:
        body: Any = await request.json()
        sdp, role = body["sdp"], body["role"]
        if not isinstance(sdp, str) or not 0 < len(sdp) <= MAX_SDP:
            raise ValueError("sdp must be a non-empty string")
    except (ValueError, KeyError, TypeError) as exc:
        return web.json_response({"error": f"bad request: {exc}"}, status=400)
    try:
        if role == "publish":
            answer = await server.publish(sdp)
        elif role == "subscribe":
            answer = await server.subscribe(sdp)
        else:
            return web.json_response({"error": "role: publish or subscribe"}, status=400)
    except TimeoutError:
        return web.json_response({"error": "no publisher yet"}, status=409)
    except Exception as exc:  # aiortc raises whatever a bad offer provokes
        return web.json_response({"error": type(exc).__name__}, status=422)
    return web.json_response({"sdp": answer})


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def serve(port: int) -> None:
    set_ice_host_addresses(["127.0.0.1"])  # loopback only (aioice skips it otherwise)
    app = web.Application(client_max_size=2 * MAX_SDP)
    app["relay"] = server = RelayServer()
    app.router.add_post("/offer", _offer)
    app.router.add_get("/healthz", _healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.close(), 5)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="aiortc MediaRelay baseline on loopback")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
