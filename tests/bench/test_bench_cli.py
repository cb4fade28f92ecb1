"""consultd-bench: the command line (BENCH.md contract), the light client, the statistics."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgpack  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pytest
import socketio
from aiohttp import web
from socketio.msgpack_packet import MsgPackPacket

from bench import report, stats
from bench.client import (
    ACK,
    CONNECT,
    EVENT,
    ConnectError,
    SioClient,
    connect_error,
    decode_packet,
    encode_packet,
    new_session,
    parse_open,
)
from bench.scenario import ScenarioResult

ROOT = Path(__file__).resolve().parents[2]
REPORT_KEYS = {"scenario", "params", "latency_ms", "throughput_per_s", "errors", "server", "extra"}


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# --- command line ----------------------------------------------------------------------


def test_help_lists_scenarios() -> None:
    out = _bench("--help", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "join-chat" in out.stdout


def test_scenario_help_lists_its_options() -> None:
    out = _bench("join-chat", "--help", timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--url", "--spawn", "--rooms", "--participants", "--rate", "--duration",
                   "--json", "--plot", "--quiet", "--join-rate", "--workers"):  # fmt: skip
        assert option in out.stdout


def test_refuses_a_target_off_loopback() -> None:
    out = _bench("join-chat", "--url", "http://192.0.2.1:8080", "--quiet", timeout=60)
    assert out.returncode != 0
    assert "loopback" in out.stderr


def test_needs_url_or_spawn() -> None:
    assert _bench("join-chat", timeout=60).returncode == 2
    assert _bench("no-such-scenario", "--spawn", timeout=60).returncode == 2


@pytest.mark.timeout(300)
def test_join_chat_spawn_end_to_end(tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    run = _bench(
        "join-chat", "--spawn", "--rooms", "2", "--participants", "3", "--rate", "20",
        "--duration", "2", "--json", str(out_json), "--plot", str(out_png), "--quiet",
        timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "chat end-to-end latency" in run.stdout
    report = json.loads(out_json.read_text())
    assert set(report) == REPORT_KEYS
    assert report["scenario"] == "join-chat"
    assert report["params"] == {"rooms": 2, "participants": 3, "rate": 20, "duration": 2}
    assert set(report["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert all(v > 0 for v in report["latency_ms"].values()), report["latency_ms"]
    assert report["throughput_per_s"] > 0
    assert report["errors"] == 0, report["extra"]
    assert report["server"]["cpu_s"] > 0 and report["server"]["peak_rss_mb"] > 0
    extra = report["extra"]
    assert extra["connected"] == 6
    assert extra["messages_sent"] == 40
    # every message reaches the two other members of its room
    assert extra["deliveries"] == extra["deliveries_expected"] == 2 * extra["messages_sent"]
    assert extra["join_ms"]["p50"] > 0 and extra["ack_ms"]["p50"] > 0
    assert extra["generator_cpu_s"] > 0
    assert isinstance(extra["rss_kb_per_idle_conn"], float)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- light client: wire format ---------------------------------------------------------


def test_encode_matches_python_socketio() -> None:
    ours = encode_packet(EVENT, ["chat", {"id": "w0-1", "text": "bench 1"}], ack_id=7)
    theirs = MsgPackPacket(encoded_packet=ours)
    assert theirs.packet_type == EVENT
    assert theirs.namespace == "/"
    assert theirs.id == 7
    assert theirs.data == ["chat", {"id": "w0-1", "text": "bench 1"}]
    assert msgpack.unpackb(encode_packet(CONNECT, {"room": "r1"})) == {
        "type": CONNECT, "nsp": "/", "data": {"room": "r1"}
    }  # fmt: skip


def test_decode_reads_python_socketio() -> None:
    frame = MsgPackPacket(packet_type=ACK, data=[{"ok": True}], namespace="/", id=3).encode()
    assert decode_packet(frame) == (ACK, "/", [{"ok": True}], 3)
    event = MsgPackPacket(packet_type=EVENT, data=["joined", {"last_seq": 0}], namespace="/")
    assert decode_packet(event.encode()).id is None


@pytest.mark.parametrize(
    "frame", [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"nsp": "/"})]
)
def test_decode_refuses_garbage(frame: bytes) -> None:
    with pytest.raises(ValueError):
        decode_packet(frame)


def test_connect_error_shapes() -> None:
    documented = connect_error({"code": "gone", "message": "the room has ended"})
    assert (documented.code, str(documented)) == ("gone", "gone: the room has ended")
    assert connect_error({"message": "no", "data": {"code": "forbidden"}}).code == "forbidden"
    assert connect_error({"message": "Connection rejected by server"}).code == "error"
    assert connect_error(None).code == "error"


def test_parse_open() -> None:
    info = parse_open('0{"sid":"abc","upgrades":[],"pingInterval":10000,"pingTimeout":5000}')
    assert info["sid"] == "abc"
    for bad in ("2", '0{"nosid":1}', "0[]"):
        with pytest.raises(ValueError):
            parse_open(bad)


# --- light client against the reference server implementation --------------------------


async def _reference_server() -> tuple[web.AppRunner, str, socketio.AsyncServer]:
    sio = socketio.AsyncServer(async_mode="aiohttp", serializer="msgpack")
    app = web.Application()
    sio.attach(app)

    async def connect(sid: str, environ: Any, auth: Any) -> None:
        if not isinstance(auth, dict) or auth.get("token") != "good":
            raise socketio.exceptions.ConnectionRefusedError("bad token", {"code": "unauthorized"})
        await sio.emit("joined", {"room": auth["room"]}, to=sid)

    async def chat(sid: str, data: Any) -> Any:
        await sio.emit("chat", {"echo": data["text"]}, to=sid)
        return {"ok": True, "message": {"id": data["id"]}}

    sio.on("connect", handler=connect)
    sio.on("chat", handler=chat)

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", sio


async def test_client_connects_emits_and_gets_acks() -> None:
    runner, url, _ = await _reference_server()
    try:
        async with new_session() as session:
            got: dict[str, Any] = {}
            joined: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            chat_seen = asyncio.Event()

            def on_chat(payload: Any) -> None:
                got["chat"] = payload
                chat_seen.set()

            client = SioClient(
                session, url, {"room": "r1", "token": "good"},
                {"joined": joined.set_result, "chat": on_chat},
            )  # fmt: skip
            await client.connect(5)
            assert await asyncio.wait_for(joined, 5) == {"room": "r1"}
            ack = await asyncio.wait_for(await client.call("chat", {"id": "m1", "text": "hi"}), 5)
            assert ack == {"ok": True, "message": {"id": "m1"}}
            await asyncio.wait_for(chat_seen.wait(), 5)
            assert got["chat"] == {"echo": "hi"}
            await client.close()
            assert client.closed
            with pytest.raises(ConnectionError):
                await client.call("chat", {"id": "m2", "text": "late"})
    finally:
        await runner.cleanup()


async def test_client_reports_connect_error() -> None:
    runner, url, _ = await _reference_server()
    try:
        async with new_session() as session:
            client = SioClient(session, url, {"room": "r1", "token": "bad"}, {})
            with pytest.raises(ConnectError) as err:
                await client.connect(5)
            assert err.value.code == "unauthorized"
            await client.close()
    finally:
        await runner.cleanup()


async def test_client_bound_to_a_loopback_source_address() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.remote)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with new_session("127.42.0.7") as session:
            async with session.get(f"http://127.0.0.1:{runner.addresses[0][1]}/") as resp:
                assert resp.status == 200
        assert seen == ["127.42.0.7"]
    finally:
        await runner.cleanup()


# --- statistics ------------------------------------------------------------------------


@pytest.mark.parametrize(("lag_p99", "flagged"), [(3.0, False), (34.6, True)])
def test_report_flags_an_overloaded_generator(lag_p99: float, flagged: bool) -> None:
    result = ScenarioResult(
        latency_label="x",
        latency_ms=np.array([1.0, 2.0]),
        latency_at_s=np.array([0.0, 0.5]),
        throughput_per_s=2.0,
        throughput_label="x/s",
        errors=0,
        extra={"generator_loop_lag_ms": {"p50": 1.0, "p95": 2.0, "p99": lag_p99, "max": 40.0}},
    )
    args = argparse.Namespace(rooms=1, participants=2, rate=2.0, duration=1.0)
    extra = report.build("annotations", args, result, None, 1.5)["extra"]
    assert ("generator_overloaded" in extra) is flagged
    if flagged:
        assert "34.6 ms at p99" in extra["generator_overloaded"]
        assert "generator_overloaded: its event loop lagged" in report.summary(
            report.build("annotations", args, result, None, 1.5), result
        )


def test_percentiles() -> None:
    values = np.arange(1, 101, dtype=float)  # 1..100
    p = stats.percentiles(values)
    assert p == {"p50": 50.5, "p95": 95.05, "p99": 99.01, "max": 100.0}
    assert stats.percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0}
    assert stats.percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}


def test_aiohttp_is_recent_enough_for_the_client() -> None:
    assert hasattr(aiohttp, "ClientWSTimeout")
