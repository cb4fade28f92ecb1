"""imaging: a 300-slice CT shared into a room, viewed, scrolled; render and decode costs;
Orthanc side by side (issue 6, "Bench").

Set-up: a synthetic 512 x 512 CT series (``bench.ctgen``: int16, rescale, positions, fake
PHI) written uncompressed and, in a process pool, as JPEG 2000 lossless (another series
UID); a few slices in each transfer syntax for the decode figures.

In process (``bench.imaging_local``): decode ms per slice per transfer syntax through
``pixels.read_frame``; render ms per slice (PNG, JPEG, WebP) from decoded frames beside a
naive pydicom + float + numpy + Pillow pipeline, timed in alternating rounds in a fresh
process with glibc's allocator pinned to the heap (``render_speedup_vs_naive``: naive CPU
ms / ours for JPEG; ``slices_per_s_per_core``: 1000 / our JPEG CPU ms).

Over HTTP (one host physician; ``--participants`` - 1 viewers who redeem a share code and
connect their socket):

1. Upload + view (room A): the host uploads the series, middle slice first then outwards,
   ``--upload-concurrency`` requests at a time (``--rate`` files/s at most, 0: unpaced).
   Each viewer hears ``imaging`` (``instance_added``) on its socket (or, when no event came
   for a second, polls QIDO) and fetches every slice as a rendered JPEG on one keep-alive
   connection, nearest the middle first. ``first_image_ms``: from the first upload request
   to the last viewer's first rendered image received; ``full_series_ms``: to every upload
   answered and every viewer holding all slices.
2. Ingest (room B, nobody watching): the same files again (another room: de-identified
   with another key, stored anew). ``ingest_cpu_ms_per_instance``: server CPU, its worker
   processes included (``ServerProbe``), over the uploads / instances stored.
3. ``series_metadata_ms``: p50 of ``--metadata-repeats`` series metadata requests in room
   A (gzip accepted and not inflated by the client, as a browser receives it).
4. Rendered JPEG, one keep-alive client, ``--duration`` s each, cycling over the series:
   ``cached`` (the window the viewers used: rendered-image cache hits; the headline
   latency and throughput) and ``uncached`` (each request a slice/window pair not rendered
   before: render from the decoded-frame cache).
5. JPEG 2000 (room B; skip with ``--no-j2k``): upload (ingest CPU), ``j2k_cold`` (one pass
   over the series: decode in a worker + render) and ``j2k_cached``.
6. Orthanc (``bench.orthanc``; skip with ``--no-orthanc``): the same original files into a
   fresh Orthanc on loopback, the same client loop on its DICOMweb ``.../frames/1/rendered``
   with the same window, its series metadata; ``orthanc_ratio_jpeg`` (ours cached req/s /
   Orthanc's), ``orthanc_ratio_metadata`` (Orthanc ms / ours), ``orthanc_ratio_j2k``.

Errors: failed or refused uploads, rendered images a viewer never got, failed requests of
consultd (Orthanc's failures are counted in ``extra.orthanc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil

from bench import ctgen, imaging_local, orthanc, stats
from bench.client import Physician, SioClient, new_session, redeem
from bench.httploop import LoopResult, keep_alive_session, request_loop
from bench.scenario import Defaults, Options, RunContext, ScenarioResult

NAME = "imaging"
SUMMARY = (
    "a 300-slice CT uploaded into a room and viewed (time to first image, full series), "
    "ingest CPU, series metadata, rendered JPEG over HTTP (one keep-alive client), "
    "in-process render/decode costs, Orthanc side by side"
)
DEFAULTS = Defaults(rooms=1, participants=2, rate=0, duration=5)

WINDOW = "40,400,linear"  # soft tissue; the same for consultd and Orthanc
SETTLE_S = 0.5
JOIN_TIMEOUT_S = 30.0
EVENT_WAIT_S = 1.0  # a viewer polls QIDO when no imaging event came for this long
UPLOAD_TIMEOUT_S = 120.0
ORTHANC_METADATA_REPEATS = 5
LOCAL_SLICES = 4


def add_arguments(parser: Options) -> None:
    parser.add_argument(
        "--slices",
        type=int,
        default=300,
        metavar="N",
        help="slices in the CT series (default %(default)s)",
    )
    parser.add_argument(
        "--upload-concurrency",
        type=int,
        default=4,
        metavar="C",
        help="upload requests in flight at once, as a browser sends a folder (default %(default)s)",
    )
    parser.add_argument(
        "--metadata-repeats",
        type=int,
        default=30,
        metavar="K",
        help="series metadata requests timed (default %(default)s)",
    )
    parser.add_argument(
        "--local-seconds",
        type=float,
        default=0.5,
        metavar="S",
        help="least time of each in-process decode/render measurement (default %(default)s)",
    )
    parser.add_argument(
        "--no-j2k",
        action="store_true",
        help="skip the JPEG 2000 series (its encoding takes ~50 ms of CPU a slice)",
    )
    parser.add_argument(
        "--no-orthanc",
        action="store_true",
        help="skip the Orthanc comparison (it is skipped anyway when Orthanc is not installed)",
    )


def time_budget_s(args: argparse.Namespace) -> float:
    n = int(args.slices)
    loops = float(args.duration) * (6 if args.no_orthanc else 9)
    return 240.0 + n * (0.8 if args.no_j2k else 1.2) + loops


# --- who takes part ----------------------------------------------------------------------


@dataclass
class Room:
    id: str
    token: str  # the host's participant token (uploads)


@dataclass
class Uploads:
    """The answers to one series' uploads, in upload order."""

    answers: list[dict[str, Any] | None]
    start_ns: int
    end_ns: int
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def stored(self) -> list[dict[str, Any]]:
        return [a for a in self.answers if a is not None]

    def summary(self, n: int) -> dict[str, Any]:
        seconds = (self.end_ns - self.start_ns) / 1e9
        return {
            "files": n,
            "stored": len(self.stored),
            "duplicates": sum(1 for a in self.stored if a.get("duplicate")),
            "errors": dict(self.errors),
            "seconds": round(seconds, 3),
            "files_per_s": round(len(self.stored) / seconds, 1) if seconds > 0 else None,
        }


def middle_out(n: int) -> list[int]:
    """0-based indices from the middle outwards: 150, 149, 151, 148, ... for 300."""
    mid = (n - 1) // 2
    order = [mid]
    for d in range(1, n):
        for i in (mid - d, mid + d):
            if 0 <= i < n:
                order.append(i)
        if len(order) >= n:
            break
    return order[:n]


async def upload_series(
    base: str,
    upload_url: str,
    headers: dict[str, str],
    paths: Sequence[Path],
    concurrency: int,
    rate: float,
    on_answer: Callable[[], None],
    parse: Callable[[int, str], dict[str, Any] | None] | None = None,
) -> Uploads:
    """POST each file (raw body) with ``concurrency`` requests in flight, at most ``rate``
    files/s when positive. ``parse(status, text)`` turns an answer into a record (None: an
    error); by default consultd's ``{"ok": true, ...}``."""

    def consultd_answer(status: int, text: str) -> dict[str, Any] | None:
        data = json.loads(text) if text else None
        if status == 200 and isinstance(data, dict) and data.get("ok"):
            return data
        return None

    check = parse or consultd_answer
    out = Uploads([None] * len(paths), 0, 0)
    next_index = 0
    session = aiohttp.ClientSession(
        base,
        connector=aiohttp.TCPConnector(limit=concurrency),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT_S),
    )

    async def sender() -> None:
        nonlocal next_index
        while next_index < len(paths):
            k = next_index
            next_index += 1
            if rate > 0 and out.start_ns:
                delay = out.start_ns / 1e9 + k / rate - time.perf_counter_ns() / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
            body = paths[k].read_bytes()
            if not out.start_ns:
                out.start_ns = time.perf_counter_ns()
            try:
                async with session.post(upload_url, data=body, headers=headers) as resp:
                    text = await resp.text()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                out.errors[type(exc).__name__] += 1
                continue
            answer = check(status, text)
            if answer is None:
                code = ""
                with contextlib.suppress(ValueError, AttributeError):
                    code = str(json.loads(text).get("code", ""))
                out.errors[f"http_{status}{'_' + code if code else ''}"] += 1
            else:
                out.answers[k] = answer
            on_answer()

    try:
        await asyncio.gather(*(sender() for _ in range(max(1, concurrency))))
    finally:
        await session.close()
    out.end_ns = time.perf_counter_ns()
    return out


# --- the viewer ----------------------------------------------------------------------------


class Viewer:
    """A participant's viewer: learns of new slices from its socket (or QIDO), fetches each
    as a rendered JPEG, nearest the middle of the series first."""

    def __init__(self, base: str, room_id: str, token: str, n: int) -> None:
        self.base = base
        self.room_id = room_id
        self.token = token
        self.n = n
        self.middle = (n + 1) / 2
        self.headers = {"Authorization": f"Bearer {token}"}
        self.pending: dict[str, tuple[str, str, float]] = {}  # sop -> study, series, number
        self.known: set[str] = set()
        self.fetched: set[str] = set()
        self.changed = asyncio.Event()
        self.series_uid: str | None = None
        self.events = 0
        self.qido_polls = 0
        self.first_ns: int | None = None
        self.done_ns: int | None = None
        self.fetch_ns = array("q")
        self.errors: Counter[str] = Counter()
        self.client: SioClient | None = None
        self.session = keep_alive_session()

    def on_imaging(self, payload: Any) -> None:
        if not isinstance(payload, dict) or payload.get("kind") != "instance_added":
            return
        self.events += 1
        self._learn(
            str(payload.get("study_uid")),
            str(payload.get("series_uid")),
            str(payload.get("sop_uid")),
            payload.get("instance_number"),
        )

    def _learn(self, study: str, series: str, sop: str, number: Any) -> None:
        if self.series_uid is None:
            self.series_uid = series
        if series != self.series_uid or sop in self.known:
            return
        self.known.add(sop)
        place = float(number) if isinstance(number, int | float) else float(len(self.known))
        self.pending[sop] = (study, series, place)
        self.changed.set()

    async def connect(self, sio_session: aiohttp.ClientSession) -> None:
        joined: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_joined(payload: Any) -> None:
            if not joined.done():
                joined.set_result(payload)

        self.client = SioClient(
            sio_session,
            self.base,
            {"room": self.room_id, "token": self.token},
            {"joined": on_joined, "imaging": self.on_imaging},
        )
        await self.client.connect(JOIN_TIMEOUT_S)
        await asyncio.wait_for(joined, JOIN_TIMEOUT_S)

    def rendered_url(self, study: str, series: str, sop: str) -> str:
        return rendered_url(self.base, self.room_id, study, series, sop, WINDOW)

    async def _poll_qido(self) -> None:
        self.qido_polls += 1
        url = f"{self.base}/dicomweb/rooms/{self.room_id}/instances"
        try:
            async with self.session.get(url, headers=self.headers) as resp:
                raw = await resp.read()
                encoding = resp.headers.get("Content-Encoding", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.errors[f"qido_{type(exc).__name__}"] += 1
            return
        rows = json.loads(gzip.decompress(raw) if encoding == "gzip" else raw)
        for row in rows if isinstance(rows, list) else []:
            values = [
                (row.get(tag) or {}).get("Value", [None])[0]
                for tag in ("0020000D", "0020000E", "00080018", "00200013")
            ]
            if all(isinstance(v, str) for v in values[:3]):
                self._learn(str(values[0]), str(values[1]), str(values[2]), values[3])

    async def run(self, deadline: float, uploads_done: asyncio.Event) -> None:
        """Fetch until every slice is held or ``deadline`` (monotonic) passes."""
        while len(self.fetched) < self.n and time.monotonic() < deadline:
            if not self.pending:
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), EVENT_WAIT_S)
                except TimeoutError:
                    if uploads_done.is_set() or self.first_ns is None:
                        await self._poll_qido()
                continue
            sop = min(self.pending, key=lambda s: abs(self.pending[s][2] - self.middle))
            study, series, _ = self.pending.pop(sop)
            t0 = time.perf_counter_ns()
            try:
                async with self.session.get(
                    self.rendered_url(study, series, sop), headers=self.headers
                ) as resp:
                    body = await resp.read()
                    ok = resp.status == 200 and body[:2] == b"\xff\xd8"
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.errors[f"fetch_{type(exc).__name__}"] += 1
                self.pending[sop] = (study, series, 1e12)  # try again, last
                continue
            if not ok:
                self.errors[f"fetch_http_{status}"] += 1
                continue
            now = time.perf_counter_ns()
            self.fetch_ns.append(now - t0)
            self.fetched.add(sop)
            if self.first_ns is None:
                self.first_ns = now
        if len(self.fetched) == self.n:
            self.done_ns = time.perf_counter_ns()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        await self.session.close()


def rendered_url(base: str, room: str, study: str, series: str, sop: str, window: str) -> str:
    return (
        f"{base}/dicomweb/rooms/{room}/studies/{study}/series/{series}/instances/{sop}"
        f"/frames/1/rendered?window={window}&accept=image/jpeg"
    )


# --- the run -------------------------------------------------------------------------------


@dataclass
class Series:
    """A generated series: its files, with the UIDs they were written with."""

    files: list[ctgen.SliceFile]


@dataclass
class Stored:
    """A series as one room holds it: consultd's UIDs (de-identification remapped them)."""

    room: Room
    study: str = ""
    series: str = ""
    sops: list[str] = field(default_factory=list)  # stored slices, in slice order

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.room.token}"}


class Run:
    """State shared by the phases of one run."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.args = ctx.args
        self.base = ctx.url
        self.n = int(ctx.args.slices)
        self.errors: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self.notes: list[str] = []
        self.generation_cpu_s = 0.0
        self.http_client_cpu_s = 0.0

    def server_cpu(self) -> Callable[[], float] | None:
        probe = self.ctx.probe
        return probe.cpu_s if probe is not None else None

    def cpu_split(self) -> tuple[float, float] | None:
        """CPU seconds so far of the server's own process and of its children (the imaging
        workers, reaped ones included), when the harness can see the server."""
        probe = self.ctx.probe
        if probe is None:
            return None
        try:
            proc = psutil.Process(probe.pid)
            t = proc.cpu_times()
            children = t.children_user + t.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    children += c.user + c.system
            return t.user + t.system, children
        except psutil.Error:
            return None

    def count_errors(self, prefix: str, errors: Counter[str] | dict[str, int]) -> None:
        for kind, count in errors.items():
            self.errors[f"{prefix}_{kind}"] += count


async def run(ctx: RunContext) -> ScenarioResult:
    args = ctx.args
    if int(args.slices) < 2 or int(args.participants) < 2 or float(args.duration) <= 0:
        raise ValueError("--slices and --participants must be at least 2, --duration positive")
    if int(args.participants) > 10:
        raise ValueError("--participants: at most 10 (1 uploader + 9 viewers)")
    if int(args.upload_concurrency) < 1 or int(args.metadata_repeats) < 1 or args.rate < 0:
        raise ValueError("--upload-concurrency and --metadata-repeats must be positive")
    work = Path(tempfile.mkdtemp(prefix="consultd-bench-imaging-"))
    state = Run(ctx)
    # shared machines: the load around the run says how far to trust its comparisons
    state.extra["machine"] = {"cpus": os.cpu_count(), "load_avg_start": _load()}
    try:
        result = await _run(state, work)
        result.extra["machine"]["load_avg_end"] = _load()
        return result
    finally:
        ctx.progress.close()
        shutil.rmtree(work, ignore_errors=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def _run(r: Run, work: Path) -> ScenarioResult:
    ctx, n = r.ctx, r.n
    plain, j2k, syntax_files = await _generate(r, work)

    # in process, while the server idles
    ctx.progress.phase("decode per transfer syntax", len(syntax_files), unit="syntax")
    local_s = float(r.args.local_seconds)
    decode = imaging_local.decode_costs(syntax_files, min_s=local_s)
    ctx.progress.update(len(syntax_files))
    ctx.progress.phase("render: ours vs naive", len(imaging_local.FORMATS), unit="format")
    render, allocator = imaging_local.render_throughput_isolated(
        syntax_files["uncompressed"], min_s=local_s, min_calls=20
    )
    ctx.progress.update(len(imaging_local.FORMATS))
    import cv2

    r.extra["decode_ms_per_slice"] = {k: v["wall_ms"] for k, v in decode.items()}
    r.extra["render_ms_per_slice"] = {f: v["ours"]["wall_ms"] for f, v in render.items()}
    r.extra["render_speedup_vs_naive"] = render["jpeg"]["speedup"]
    r.extra["slices_per_s_per_core"] = render["jpeg"]["slices_per_s_per_core"]

    session = new_session()
    viewers: list[Viewer] = []
    try:
        room_a, room_b, viewer_tokens = await _accounts(r, session)
        viewers = [Viewer(r.base, room_a.id, t, n) for t in viewer_tokens]
        for v in viewers:
            await v.connect(session)
        viewed = await _upload_and_view(r, room_a, plain, viewers)
        await _ingest(r, room_b, plain, "ingest", "ingest_cpu_ms_per_instance")
        # a viewer's token: what a participant's requests cost, not the uploader's
        await _metadata(r, viewed, viewers[0].headers)
        cached = await _http_loops(r, viewed, viewers[0].headers)
        if j2k is not None:
            stored = await _ingest(r, room_b, j2k, "ingest_j2k", "ingest_cpu_ms_per_instance_j2k")
            await _j2k_loops(r, stored)
        await _orthanc(r, plain, j2k)
    finally:
        await asyncio.gather(*(v.close() for v in viewers))
        await session.close()

    r.extra["decode"] = decode
    r.extra["render"] = render
    r.extra["targets"] = _targets(r.extra)
    r.extra["options"] = {
        "slices": n,
        "viewers": len(viewers),
        "upload_concurrency": int(r.args.upload_concurrency),
        "upload_rate": float(r.args.rate),
        "metadata_repeats": int(r.args.metadata_repeats),
        "window": WINDOW,
        "j2k": j2k is not None,
        "orthanc": not r.args.no_orthanc,
        "cv2_threads": cv2.getNumThreads(),
        "render_allocator": allocator,
    }
    r.extra["generator_cpu_s_http_loops"] = round(r.http_client_cpu_s, 3)
    r.extra["generation_cpu_s_pool"] = round(r.generation_cpu_s, 3)
    r.extra["notes"] = r.notes
    r.extra["error_kinds"] = dict(r.errors)
    return ScenarioResult(
        latency_label="rendered JPEG latency (cached)",
        latency_ms=cached.latency_ms(),
        latency_at_s=cached.at_s(),
        throughput_per_s=round(cached.req_per_s, 1),
        throughput_label="rendered JPEG req/s (one keep-alive client, cached)",
        errors=sum(r.errors.values()),
        worker_cpu_s=r.generation_cpu_s,
        extra=_ordered(r.extra),
    )


HEADLINE_KEYS = (
    "first_image_ms",
    "full_series_ms",
    "series_metadata_ms",
    "ingest_cpu_ms_per_instance",
    "render_speedup_vs_naive",
    "slices_per_s_per_core",
    "http_jpeg_req_per_s",
    "orthanc_ratio_jpeg",
    "orthanc_ratio_metadata",
    "orthanc_ratio_j2k",
)


def _ordered(extra: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures first, the details after."""
    head = {k: extra.get(k) for k in HEADLINE_KEYS}
    return head | {k: v for k, v in extra.items() if k not in head}


async def _generate(r: Run, work: Path) -> tuple[Series, Series | None, dict[str, list[Path]]]:
    ctx, n = r.ctx, r.n
    ctx.progress.phase("generate CT series", n, unit="slice")
    plain_files = []
    folder = work / "plain"
    folder.mkdir()
    for i in range(n):
        plain_files.append(ctgen.write(ctgen.ct_slice(i), folder / f"ct{i:04d}.dcm"))
        if i % 20 == 19:
            ctx.progress.update(20)
            await asyncio.sleep(0)
    syntax_files, skipped = imaging_local.write_syntax_files(work / "syntaxes", LOCAL_SLICES)
    for name, why in skipped.items():
        r.notes.append(f"decode: {name} not measured: {why}")
    if r.args.no_j2k:
        return Series(plain_files), None, syntax_files
    ctx.progress.phase("encode JPEG 2000 series", n, unit="slice")
    (work / "j2k").mkdir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawn = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        futures = [
            loop.run_in_executor(
                pool,
                ctgen.recompress_file,
                str(f.path),
                str(work / "j2k" / f.path.name),
                str(ctgen.SYNTAXES["j2k_lossless"]),
                1,
            )
            for f in plain_files
        ]
        for fut in asyncio.as_completed(futures):
            await fut
            ctx.progress.update()
        j2k_files = [f.result() for f in futures]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r.generation_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Series(plain_files), Series(j2k_files), syntax_files


async def _accounts(r: Run, session: aiohttp.ClientSession) -> tuple[Room, Room, list[str]]:
    """A host physician with two rooms (lobby off) and their tokens; viewers' tokens in A."""
    ctx = r.ctx
    viewers = int(r.args.participants) - 1
    ctx.progress.phase("set-up", 4 + viewers, unit="step")
    stamp = f"{time.time_ns():x}"
    host = Physician(session, r.base)
    await host.register(
        "Bench Radiologist", f"bench-imaging-{stamp}@bench.consultd.org", f"bench-{stamp}-password"
    )
    ctx.progress.update()
    rooms = []
    for title in ("imaging bench: viewed", "imaging bench: ingest"):
        created = await host.create_room(title, lobby=False)
        admission = await host.join(str(created["id"]))
        rooms.append(Room(str(created["id"]), str(admission["token"])))
        ctx.progress.update()
    code = await host.create_code(rooms[0].id, max_uses=viewers)
    ctx.progress.update()
    tokens = []
    for i in range(viewers):
        admission = await redeem(session, r.base, rooms[0].id, str(code["code"]), f"Viewer {i}")
        tokens.append(str(admission["token"]))
        ctx.progress.update()
    return rooms[0], rooms[1], tokens


def _upload_target(r: Run, room: Room) -> tuple[str, dict[str, str]]:
    return (
        f"{r.base}/api/rooms/{room.id}/imaging/files",
        {"Authorization": f"Bearer {room.token}", "Content-Type": "application/dicom"},
    )


def _adopt(room: Room, uploads: Uploads, order: list[int]) -> Stored:
    """The room's UIDs of an uploaded series, in slice order."""
    by_slice: dict[int, dict[str, Any]] = {}
    for k, answer in zip(order, uploads.answers, strict=True):
        if answer is not None:
            by_slice[k] = answer
    out = Stored(room)
    for k in sorted(by_slice):
        answer = by_slice[k]
        out.study, out.series = str(answer["study_uid"]), str(answer["series_uid"])
        out.sops.append(str(answer["sop_uid"]))
    return out


async def _upload_and_view(r: Run, room: Room, plain: Series, viewers: list[Viewer]) -> Stored:
    ctx, n = r.ctx, r.n
    order = middle_out(n)
    ctx.progress.phase("upload + view (room A)", n * (1 + len(viewers)), unit="file")
    url, headers = _upload_target(r, room)
    uploads_done = asyncio.Event()
    cpu = r.server_cpu()
    cpu0 = cpu() if cpu is not None else None
    deadline = time.monotonic() + UPLOAD_TIMEOUT_S + n * 0.5

    async def watch() -> None:
        tasks = [asyncio.create_task(v.run(deadline, uploads_done)) for v in viewers]
        last = 0
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.1)
            now = sum(len(v.fetched) for v in viewers)
            ctx.progress.update(now - last)
            last = now
        await asyncio.gather(*tasks)

    watching = asyncio.create_task(watch())
    try:
        uploads = await upload_series(
            r.base,
            url,
            headers,
            [plain.files[k].path for k in order],
            int(r.args.upload_concurrency),
            float(r.args.rate),
            ctx.progress.update,
        )
        uploads_done.set()
        await watching
    finally:
        watching.cancel()
    stored_series = _adopt(room, uploads, order)
    r.count_errors("upload_view", uploads.errors)
    t0 = uploads.start_ns
    firsts = [v.first_ns for v in viewers]
    dones = [v.done_ns for v in viewers]
    first = max(f for f in firsts if f is not None) if None not in firsts else None
    done = (
        max([uploads.end_ns, *(d for d in dones if d is not None)]) if None not in dones else None
    )
    for i, v in enumerate(viewers):
        r.count_errors(f"viewer{i}", v.errors)
        missing = n - len(v.fetched)
        if missing:
            r.errors[f"viewer{i}_missing_slices"] += missing
    used = cpu() - cpu0 if cpu is not None and cpu0 is not None else None
    stored = len(uploads.stored)
    r.extra["first_image_ms"] = round((first - t0) / 1e6, 1) if first else None
    r.extra["full_series_ms"] = round((done - t0) / 1e6, 1) if done else None
    fetch = np.concatenate([np.frombuffer(v.fetch_ns, dtype=np.int64) for v in viewers])
    r.extra["upload_view"] = {
        **uploads.summary(n),
        "first_image_ms_per_viewer": [round((f - t0) / 1e6, 1) if f else None for f in firsts],
        "viewer_fetch_ms": stats.percentiles(fetch.astype(np.float64) / 1e6),
        "imaging_events": [v.events for v in viewers],
        "qido_polls": [v.qido_polls for v in viewers],
        "server_cpu_ms_per_instance_with_viewers": (
            round(used * 1e3 / stored, 2) if used is not None and stored else None
        ),
    }
    return stored_series


async def _ingest(r: Run, room: Room, series: Series, key: str, cpu_key: str) -> Stored:
    """Upload ``series`` into ``room`` with nobody watching; server CPU per instance."""
    ctx, n = r.ctx, r.n
    order = middle_out(n)
    ctx.progress.phase(f"{key.replace('_', ' ')} (room B)", n, unit="file")
    url, headers = _upload_target(r, room)
    cpu = r.server_cpu()
    await asyncio.sleep(SETTLE_S)
    cpu0 = cpu() if cpu else None
    split0 = r.cpu_split()
    uploads = await upload_series(
        r.base,
        url,
        headers,
        [series.files[k].path for k in order],
        int(r.args.upload_concurrency),
        float(r.args.rate),
        ctx.progress.update,
    )
    await asyncio.sleep(SETTLE_S)  # the index rows' group commit, the audit events
    used = (cpu() - cpu0) if cpu is not None and cpu0 is not None else None
    split1 = r.cpu_split()
    r.count_errors(key, uploads.errors)
    stored = len(uploads.stored)
    per = round(used * 1e3 / stored, 2) if used is not None and stored else None
    r.extra[cpu_key] = per
    r.extra[key] = {**uploads.summary(n), "server_cpu_s": round(used, 3) if used else None}
    if split0 is not None and split1 is not None and stored:
        # where it goes: the server's process (HTTP, hashing, index, database) and workers
        r.extra[key]["cpu_ms_per_instance_main_process"] = round(
            (split1[0] - split0[0]) * 1e3 / stored, 2
        )
        r.extra[key]["cpu_ms_per_instance_workers"] = round(
            (split1[1] - split0[1]) * 1e3 / stored, 2
        )
    return _adopt(room, uploads, order)


async def _metadata(r: Run, series: Stored, headers: dict[str, str]) -> None:
    ctx = r.ctx
    repeats = int(r.args.metadata_repeats)
    ctx.progress.phase("series metadata", repeats, unit="req")
    url = (
        f"{r.base}/dicomweb/rooms/{series.room.id}/studies/{series.study}"
        f"/series/{series.series}/metadata"
    )
    wanted = {**headers, "Accept": "application/dicom+json", "Accept-Encoding": "gzip"}
    async with keep_alive_session() as session:
        loop = await request_loop(
            session,
            lambda _: url,
            headers=wanted,
            content_type="application/dicom+json",
            duration_s=None,
            max_requests=repeats,
            progress=ctx.progress,
        )
    r.count_errors("metadata", loop.errors)
    body = loop.last_body
    with contextlib.suppress(OSError, EOFError):
        body = gzip.decompress(body)
    items = json.loads(body) if body else []
    if len(items) != len(series.sops):
        r.errors["metadata_wrong_count"] += 1
    lat = stats.percentiles(loop.latency_ms())
    r.extra["series_metadata_ms"] = lat["p50"]
    r.extra["metadata"] = {
        "instances": len(items),
        "ms": lat,
        # the first answer after the uploads builds (and gzips) the cached JSON
        "first_ms": round(loop.lat_ns[0] / 1e6, 3) if loop.lat_ns else None,
        "wire_bytes": len(loop.last_body),
        "json_bytes": len(body),
    }


def _series_urls(r: Run, series: Stored, window: Callable[[int], str]) -> Callable[[int], str]:
    """URL of request k: slice k mod n (in order), with ``window(k)``."""
    base = [
        f"{r.base}/dicomweb/rooms/{series.room.id}/studies/{series.study}/series/{series.series}"
        f"/instances/{sop}/frames/1/rendered?accept=image/jpeg&window="
        for sop in series.sops
    ]
    return lambda k: base[k % len(base)] + window(k)


async def _loop(
    r: Run,
    name: str,
    url_of: Callable[[int], str],
    headers: dict[str, str],
    duration: float | None,
    requests: int | None = None,
    server_cpu: Callable[[], float] | None = None,
    errors_prefix: str | None = None,
) -> LoopResult:
    ctx = r.ctx
    ctx.progress.phase(
        name,
        duration if duration is not None else float(requests or 0),
        unit="s" if duration is not None else "req",
    )
    async with keep_alive_session() as session:
        out = await request_loop(
            session,
            url_of,
            headers={**headers, "Accept": "image/jpeg"},
            content_type="image/jpeg",
            duration_s=duration,
            max_requests=requests,
            progress=ctx.progress,
            server_cpu=server_cpu,
        )
    r.http_client_cpu_s += out.client_cpu_s
    if errors_prefix is not None:
        r.count_errors(errors_prefix, out.errors)
    return out


async def _http_loops(r: Run, series: Stored, headers: dict[str, str]) -> LoopResult:
    duration = float(r.args.duration)
    n = max(1, len(series.sops))
    cached = await _loop(
        r,
        "rendered JPEG, cached",
        _series_urls(r, series, lambda _: WINDOW),
        headers,
        duration,
        server_cpu=r.server_cpu(),
        errors_prefix="http_cached",
    )
    # every pass over the series with a window not asked before: render misses
    uncached = await _loop(
        r,
        "rendered JPEG, uncached",
        _series_urls(r, series, lambda k: f"{41 + k // n},400,linear"),
        headers,
        duration,
        server_cpu=r.server_cpu(),
        errors_prefix="http_uncached",
    )
    r.extra["http_jpeg_req_per_s"] = round(cached.req_per_s, 1)
    r.extra.setdefault("http", {})
    r.extra["http"]["cached"] = cached.summary()
    r.extra["http"]["uncached"] = uncached.summary()
    return cached


async def _j2k_loops(r: Run, series: Stored) -> None:
    headers = series.auth()
    n = max(1, len(series.sops))
    urls = _series_urls(r, series, lambda _: WINDOW)
    cold = await _loop(
        r,
        "JPEG 2000: first pass",
        urls,
        headers,
        None,
        n,
        server_cpu=r.server_cpu(),
        errors_prefix="http_j2k_cold",
    )
    cached = await _loop(
        r,
        "JPEG 2000: cached",
        urls,
        headers,
        float(r.args.duration),
        server_cpu=r.server_cpu(),
        errors_prefix="http_j2k_cached",
    )
    r.extra.setdefault("http", {})
    r.extra["http"]["j2k_cold"] = cold.summary()
    r.extra["http"]["j2k_cached"] = cached.summary()


# --- Orthanc -------------------------------------------------------------------------------


def _orthanc_answer(status: int, text: str) -> dict[str, Any] | None:
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if (
            status == 200
            and isinstance(data, dict)
            and data.get("Status")
            in (
                "Success",
                "AlreadyStored",
            )
        ):
            return data
    return None


async def _orthanc(r: Run, plain: Series, j2k: Series | None) -> None:
    for key in ("orthanc_ratio_jpeg", "orthanc_ratio_metadata", "orthanc_ratio_j2k"):
        r.extra[key] = None
    if r.args.no_orthanc:
        r.extra["orthanc"] = {"note": "skipped (--no-orthanc)"}
        return
    why = orthanc.missing()
    if why is not None:
        r.extra["orthanc"] = {"note": f"skipped: {why}"}
        return
    server = orthanc.Orthanc()
    info: dict[str, Any] = {}
    errors: Counter[str] = Counter()
    r.extra["orthanc"] = info
    try:
        r.ctx.progress.phase("Orthanc: start", 1, unit="step")
        server.start()
        await server.wait_ready()
        info["version"] = server.version
        info["plugins"] = [p.name for p in server.plugins]
        info["pid"] = server.pid
        r.ctx.progress.update()
        await _orthanc_series(r, server, plain, "jpeg", info, errors)
        ours_jpeg = r.extra["http"]["cached"]["req_per_s"]
        theirs = info["jpeg"]["req_per_s"]
        r.extra["orthanc_ratio_jpeg"] = round(ours_jpeg / theirs, 2) if theirs else None
        ours_uncached = r.extra["http"]["uncached"]["req_per_s"]
        info["ratio_jpeg_uncached"] = round(ours_uncached / theirs, 2) if theirs else None
        ours_md, theirs_md = r.extra.get("series_metadata_ms"), info.get("metadata_ms", {})
        if ours_md and theirs_md.get("p50"):
            r.extra["orthanc_ratio_metadata"] = round(theirs_md["p50"] / ours_md, 1)
        if j2k is not None:
            await _orthanc_series(r, server, j2k, "j2k", info, errors, metadata=False)
            ours_j2k = r.extra["http"]["j2k_cached"]["req_per_s"]
            theirs_j2k = info["j2k"]["req_per_s"]
            r.extra["orthanc_ratio_j2k"] = round(ours_j2k / theirs_j2k, 2) if theirs_j2k else None
            cold = r.extra["http"]["j2k_cold"]["req_per_s"]
            info["ratio_j2k_cold"] = round(cold / theirs_j2k, 2) if theirs_j2k else None
        info["rss_mb"] = round(server.rss_mb(), 1)
    except (RuntimeError, OSError, aiohttp.ClientError, TimeoutError, KeyError) as exc:
        info["note"] = f"failed: {type(exc).__name__}: {exc}"[:500]
        r.notes.append("Orthanc comparison incomplete: " + info["note"])
    finally:
        server.stop()
        info["errors"] = dict(errors)


async def _orthanc_series(
    r: Run,
    server: orthanc.Orthanc,
    series: Series,
    key: str,
    info: dict[str, Any],
    errors: Counter[str],
    *,
    metadata: bool = True,
) -> None:
    ctx, n = r.ctx, r.n
    ctx.progress.phase(f"Orthanc: upload ({key})", n, unit="file")
    cpu0 = server.cpu_s()
    uploads = await upload_series(
        server.url,
        server.url + "/instances",
        {"Content-Type": "application/dicom"},
        [f.path for f in series.files],
        int(r.args.upload_concurrency),
        float(r.args.rate),
        ctx.progress.update,
        parse=_orthanc_answer,
    )
    used = server.cpu_s() - cpu0
    errors.update({f"upload_{key}_{k}": v for k, v in uploads.errors.items()})
    stored = len(uploads.stored)
    info[f"ingest_{key}"] = {
        **uploads.summary(n),
        "cpu_ms_per_instance": round(used * 1e3 / stored, 2) if stored else None,
    }
    files = series.files
    urls = [
        server.rendered_url(f.study_uid, f.series_uid, f.sop_uid) + f"?window={WINDOW}"
        for f in files
    ]
    loop = await _loop(
        r,
        f"Orthanc: rendered JPEG ({key})",
        lambda k: urls[k % len(urls)],
        {},
        float(r.args.duration),
        server_cpu=server.cpu_s,
    )
    errors.update({f"http_{key}_{k}": v for k, v in loop.errors.items()})
    info[key] = loop.summary()
    if not metadata:
        return
    first = files[0]
    url = server.metadata_url(first.study_uid, first.series_uid)
    ctx.progress.phase("Orthanc: series metadata", ORTHANC_METADATA_REPEATS, unit="req")
    async with keep_alive_session() as session:
        md = await request_loop(
            session,
            lambda _: url,
            headers={"Accept": "application/dicom+json", "Accept-Encoding": "gzip"},
            content_type="application/dicom+json",
            duration_s=None,
            max_requests=ORTHANC_METADATA_REPEATS,
            progress=ctx.progress,
        )
    errors.update({f"metadata_{k}": v for k, v in md.errors.items()})
    info["metadata_ms"] = stats.percentiles(md.latency_ms())
    info["metadata_wire_bytes"] = len(md.last_body)


# --- targets -------------------------------------------------------------------------------

TARGETS: tuple[tuple[str, str, float], ...] = (
    ("render_speedup_vs_naive", ">=", 5.0),
    ("slices_per_s_per_core", ">=", 800.0),
    ("http_jpeg_req_per_s", ">=", 300.0),
    ("orthanc_ratio_jpeg", ">=", 1.4),
    ("orthanc_ratio_j2k", ">=", 10.0),
    ("series_metadata_ms", "<=", 10.0),
    ("ingest_cpu_ms_per_instance", "<=", 10.0),
    ("first_image_ms", "<", 1000.0),
    ("full_series_ms", "<", 10000.0),
)


def _targets(extra: dict[str, Any]) -> dict[str, Any]:
    """Each figure of the issue beside its target (``met``: None when not measured)."""
    out: dict[str, Any] = {}
    for key, op, bound in TARGETS:
        value = extra.get(key)
        met: bool | None = None
        if isinstance(value, int | float):
            met = {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]
        out[key] = {"value": value, "target": f"{op} {bound:g}", "met": met}
    return out
