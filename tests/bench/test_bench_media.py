"""consultd-bench media: the clip, the packet logs and their join, a small spawned run."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from bench.media_clip import ReplayTrack, encode_audio
from bench.media_peers import RecvLog, as_int64, first_receipts, match, payload_key
from tests.bench.test_bench_cli import REPORT_KEYS, _bench


def _rtp(payload: bytes, *, ssrc: int = 1, seq: int = 0, ext: bytes = b"", pad: int = 0) -> bytes:
    b0 = 0x80 | (0x10 if ext else 0) | (0x20 if pad else 0)
    head = struct.pack("!BBHII", b0, 96, seq, 1234, ssrc)
    if ext:
        head += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    tail = (b"\0" * (pad - 1) + bytes([pad])) if pad else b""
    return head + payload + tail


def test_payload_key_ignores_what_the_sfu_rewrites() -> None:
    payload = b"\x90\x80\x12vp8 frame bytes"
    key = payload_key(_rtp(payload))
    assert key == payload_key(_rtp(payload, ssrc=77, seq=9, ext=b"\x10\xaa\x00\x00"))
    assert key == payload_key(_rtp(payload, pad=4))
    assert key != payload_key(_rtp(payload + b"!"))
    assert payload_key(b"\x80\x60") == 0  # truncated
    assert payload_key(_rtp(b"", ext=b"\x10\xaa\x00\x00")) == 0


def test_recv_log_counts_streams_and_times() -> None:
    log = RecvLog()
    for ssrc in (1, 2, 1):
        log.receive_rtp(_rtp(b"x", ssrc=ssrc))
    assert log.packets == 3 and log.ssrcs == {1, 2}
    times = as_int64(log.times)
    assert list(np.diff(times) >= 0) == [True, True]
    log.receive_rtp(_rtp(b"y"))  # the copy above did not pin the array
    assert log.count_between(int(times[0]), int(times[-1]) + 1) == 3


def test_match_takes_the_latest_send_of_a_repeated_payload() -> None:
    # payload 5 sent at 100 and again at 1000 (a looped clip), payload 6 at 200
    send_keys = np.array([5, 6, 5], dtype=np.int64)
    send_ns = np.array([100, 200, 1000], dtype=np.int64)
    recv_keys = np.array([5, 5, 6, 5, 9], dtype=np.int64)
    recv_ns = np.array([130, 1010, 260, 1500, 300], dtype=np.int64)
    owner = np.array([0, 0, 0, 0, 1], dtype=np.int64)
    m = match(send_keys, send_ns, recv_keys, recv_ns, owner)
    assert list(m.latency_ns) == [30, 10, 60, 500]
    assert list(m.send_index) == [0, 2, 1, 2]
    assert m.unmatched == 1  # payload 9 was never sent
    # the second receipt of send 2 by receiver 0 is a duplicate
    assert list(first_receipts(m)) == [True, True, True, False]


def test_match_of_nothing() -> None:
    empty = np.zeros(0, dtype=np.int64)
    m = match(empty, empty, np.array([1]), np.array([5]), np.array([0]))
    assert m.unmatched == 1 and m.latency_ns.size == 0


async def test_replay_track_sends_its_key_frame_when_asked_only() -> None:
    frames = [b"key", b"d1", b"d2", b"d3"]
    track = ReplayTrack("video", frames, 90_000, 90, loop_from=1)  # 1 ms a frame
    got = [bytes(await track.recv()) for _ in range(6)]
    assert got == [b"key", b"d1", b"d2", b"d3", b"d1", b"d2"]  # no key frame unasked
    track.request_keyframe()
    got = [bytes(await track.recv()) for _ in range(2)]
    assert got == [b"key", b"d1"]
    packet = await track.recv()
    assert packet.pts == 8 * 90 and packet.time_base.denominator == 90_000


def test_each_voice_gives_other_opus_packets() -> None:
    a, b = encode_audio(0.2, 40, voice=1), encode_audio(0.2, 40, voice=2)
    assert len(a) == len(b) == 10
    assert a != b and a == encode_audio(0.2, 40, voice=1)


def test_help_lists_media_options() -> None:
    out = _bench("media", "--help", timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--publishers", "--participants", "--baseline-seconds", "--workers"):
        assert option in out.stdout
    listed = _bench("--help", timeout=60)
    assert "media" in listed.stdout


@pytest.mark.timeout(90)
def test_media_spawn_end_to_end(tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    run = _bench(
        "media", "--spawn", "--rooms", "1", "--publishers", "1", "--participants", "2",
        # 3 s of baseline: the SFU's 1 -> 4 is ~2 % of a core, and process CPU times come
        # in 10 ms ticks; a 1 s window read 0 on a busy machine (no ratio then).
        "--duration", "2", "--baseline-seconds", "3", "--clip-seconds", "1",
        "--json", str(out_json), "--quiet",
        timeout=100,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "added forwarding latency" in run.stdout
    report = json.loads(out_json.read_text())
    assert set(report) == REPORT_KEYS
    assert report["scenario"] == "media"
    assert report["params"] == {"rooms": 1, "participants": 2, "rate": 0, "duration": 2}
    assert report["server"]["cpu_s"] > 0
    extra = report["extra"]
    assert extra["deliveries"] > 0 and extra["packets_sent_in_window"] > 0
    assert extra["streams_receiving"] == 4  # two subscribers, audio + video each
    assert 0 < extra["delivery_ratio"] <= 1
    assert report["latency_ms"]["p50"] > 0
    for key in (
        "cpu_us_per_forwarded_packet",
        "forwarded_packets_per_s",
        "max_streams_80pct_core",
        "cost_ratio_vs_transcode",
        "generator_cpu_s",
    ):
        assert extra[key] is not None and extra[key] > 0, (key, extra)
    assert extra["baseline_1_to_4"]["relay"]["streams"] == 8


async def test_the_aiortc_names_the_bench_reaches_exist() -> None:
    """The bench's peers reach past aiortc's API (bench/media_peers.py); the SFU's own reach
    is pinned in tests/media/test_bridge_pin.py. Fail here, not mid-run, if one is gone."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        t = pc.addTransceiver("video", direction="sendrecv")
        dtls = t.receiver.transport
        connection = dtls.transport._connection
        reached = {
            "RTCDtlsTransport._send_rtp": dtls,
            "RTCRtpSender._send_keyframe": t.sender,
            "aioice.Connection._protocols": connection,
            "aioice.Connection.data_received": connection,
        }
        missing = [n for n, owner in reached.items() if not hasattr(owner, n.rsplit(".", 1)[1])]
        assert not missing, f"aiortc/aioice no longer have: {missing}"
    finally:
        await pc.close()
