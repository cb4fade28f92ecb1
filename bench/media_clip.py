"""A pre-encoded camera and microphone for the media bench's publishers.

Encoding in the load generator would cost far more CPU than the server spends forwarding,
so a few seconds of VP8 and Opus are encoded once with PyAV (``encode_clip``) and replayed
in a loop by ``ReplayTrack``. Its ``recv`` returns ``av.Packet``: aiortc's sender then only
packetizes (``Vp8Encoder.pack``, ``OpusEncoder.pack``), it never creates an encoder.

The video has one key frame, its first, and the loop goes back to the frame after it: as
from a browser, key frames come only when a receiver asks (PLI), which jumps the replay
back to it. A decoder (aiortc's ``MediaRelay`` in ``bench.media_relay``) sees a smear at
each wrap, not an error; the SFU never looks.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
AUDIO_FRAME = 960  # 20 ms at 48 kHz, as browsers send Opus


@dataclass(frozen=True)
class Clip:
    """Encoded frames of one loop: VP8 at ``fps`` and Opus every 20 ms."""

    video: tuple[bytes, ...]
    audio: tuple[bytes, ...]
    fps: int
    width: int
    height: int

    def with_voice(self, voice: int, audio_kbps: int = 40) -> Clip:
        """The same video with this publisher's own audio (about 60 ms of CPU)."""
        return replace(self, audio=tuple(encode_audio(self.seconds, audio_kbps, voice)))

    @property
    def seconds(self) -> float:
        return len(self.video) / self.fps

    @property
    def video_kbps(self) -> float:
        return sum(map(len, self.video)) * 8 / self.seconds / 1000

    @property
    def audio_kbps(self) -> float:
        return sum(map(len, self.audio)) * 8 / (len(self.audio) * AUDIO_FRAME / AUDIO_CLOCK) / 1000


def _picture(width: int, height: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A moving gradient with a noisy block: motion and detail for the encoder to spend
    its bitrate on, as a camera gives it (flat colour would make packets too few)."""
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    r = 127 + 100 * np.sin((x + 6 * n) / 40.0) * np.cos(y / 30.0)
    g = 127 + 100 * np.sin((y + 4 * n) / 25.0) + 0 * x
    b = np.full((height, width), (n * 3) % 256, np.float32)
    rgb = np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)
    bh, bw = height // 3, width // 3
    top, left = (n * 5) % (height - bh), (n * 7) % (width - bw)
    rgb[top : top + bh, left : left + bw] = rng.integers(0, 255, (bh, bw, 3), np.uint8)
    return rgb


def encode_video(seconds: float, width: int, height: int, fps: int, kbps: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = kbps * 1000
    frames = max(1, round(seconds * fps))
    codec.gop_size = frames  # one key frame, the first
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(7)
    out: list[bytes] = []
    for n in range(frames):
        frame = av.VideoFrame.from_ndarray(_picture(width, height, n, rng), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = n
        frame.time_base = codec.time_base
        out.extend(bytes(p) for p in codec.encode(frame))
    out.extend(bytes(p) for p in codec.encode(None))
    if len(out) != frames:
        raise RuntimeError(f"libvpx gave {len(out)} packets for {frames} frames")
    return out


def encode_audio(seconds: float, kbps: int, voice: int = 0) -> list[bytes]:
    """Opus every 20 ms; each ``voice`` is another pitch, so two publishers' packets differ
    (``bench.media_peers`` tells packets apart by their payload)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_CLOCK
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = kbps * 1000
    codec.time_base = fractions.Fraction(1, AUDIO_CLOCK)
    frames = max(1, round(seconds * AUDIO_CLOCK / AUDIO_FRAME))
    t = np.arange(frames * AUDIO_FRAME, dtype=np.float64) / AUDIO_CLOCK
    # a voice-like warble: a tone whose pitch and loudness drift (silence would shrink Opus)
    pitch = 180 + (voice * 37) % 400
    tone = np.sin(2 * math.pi * (pitch + 60 * np.sin(2 * math.pi * 0.7 * t)) * t)
    tone *= 0.3 + 0.2 * np.sin(2 * math.pi * 2.0 * t)
    pcm = (tone * 12000).astype(np.int16)
    out: list[bytes] = []
    for n in range(frames):
        chunk = pcm[n * AUDIO_FRAME : (n + 1) * AUDIO_FRAME]
        frame = av.AudioFrame.from_ndarray(
            np.repeat(chunk, 2)[None, :], format="s16", layout="stereo"
        )
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = n * AUDIO_FRAME
        frame.time_base = codec.time_base
        out.extend(bytes(p) for p in codec.encode(frame))
    out.extend(bytes(p) for p in codec.encode(None))
    return out[:frames] if len(out) >= frames else out


def encode_clip(
    seconds: float = 4.0,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    video_kbps: int = 800,
    audio_kbps: int = 40,
) -> Clip:
    """Encode the clip (about a second of CPU for the defaults)."""
    video = encode_video(seconds, width, height, fps, video_kbps)
    audio = encode_audio(seconds, audio_kbps)
    if not audio:
        raise RuntimeError("libopus produced no packets")
    return Clip(tuple(video), tuple(audio), fps, width, height)


class ReplayTrack(MediaStreamTrack):
    """Replays encoded frames in a loop, in real time, as ``av.Packet``.

    ``request_keyframe`` restarts the loop at its key frame, as a browser's encoder answers
    a PLI with a key frame (``MediaPeer`` routes its sender's PLI/FIR here).
    """

    def __init__(
        self, kind: str, frames: Sequence[bytes], clock_rate: int, ticks: int, loop_from: int = 0
    ) -> None:
        super().__init__()
        self._loop_from = loop_from  # where the loop goes on after its last frame
        self.kind = kind
        self._frames = frames
        self._time_base = fractions.Fraction(1, clock_rate)
        self._ticks = ticks
        self._period = ticks / clock_rate
        self._start: float | None = None
        self._n = 0  # frames sent: the clock
        self._pos = 0  # where in the clip
        self._keyframe = False
        self.keyframes_requested = 0

    @classmethod
    def video(cls, clip: Clip) -> ReplayTrack:
        return cls("video", clip.video, VIDEO_CLOCK, VIDEO_CLOCK // clip.fps, loop_from=1)

    @classmethod
    def audio(cls, clip: Clip) -> ReplayTrack:
        return cls("audio", clip.audio, AUDIO_CLOCK, AUDIO_FRAME)

    def request_keyframe(self) -> None:
        self._keyframe = True
        self.keyframes_requested += 1

    async def recv(self) -> av.Packet[Any]:
        n = self._n
        self._n += 1
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + n * self._period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._keyframe:
            self._keyframe = False
            if self._pos:
                self._pos = 0
        elif self._pos >= len(self._frames):
            self._pos = min(self._loop_from, len(self._frames) - 1)
        packet = av.Packet(self._frames[self._pos])
        self._pos += 1
        packet.pts = n * self._ticks
        packet.time_base = self._time_base
        return packet
