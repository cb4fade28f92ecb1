"""In-process figures of the imaging bench: decode cost per transfer syntax, and render
throughput of consultd's pipeline beside a naive one, on the same 512 x 512 CT slices.

Decode: ``consultd.imaging.pixels.read_frame`` (what the server's workers call), cycling
over a few files per transfer syntax; the header parse is cached per file in
``read_frame`` as in a worker, so the figure is the frame's decode.

Render: ``consultd.imaging.render.render`` from decoded frames held in memory (the
server's decoded-frame cache), window 40/400, quality 90 (JPEG and WebP; PNG has no
quality), with OpenCV's thread count as the server sets it (``ours``) and with one thread.
Beside it, on the same slices, naive pipelines: ``naive`` reads each file (``dcmread`` +
``pixel_array``), rescales in float64, windows with numpy, casts to uint8 and encodes with
Pillow (PNG at Pillow's default level); ``naive_from_decoded`` is the same from the arrays
already in memory; ``naive_pydicom_luts`` uses pydicom's ``apply_modality_lut`` +
``apply_voi_lut`` instead of the hand-written window.

Per slice: wall ms (median of the calls) and CPU ms (process CPU / calls, which counts
every thread an encoder uses, so ``slices_per_s_per_core = 1000 / cpu_ms``). The
pipelines of one format are timed in alternating rounds (:func:`time_interleaved`) and
the CPU figure is the median of the rounds': on a shared machine a burst of load then
falls on ours and the naive pipeline alike instead of on whichever ran at that moment
(timed one after the other, the same configuration measured twice in one run gave 0.74
and 0.57 ms).

The naive figure also depends on glibc's allocator: its 2 MB float64 temporaries cost
two to three times as much when they come from fresh mmaps (page faults) as from a warm
heap, and which of the two a process is in depends on what it allocated before (the same
naive JPEG measured 1.7 to 3.3 ms inside bench runs, 5.5 to 6.9 ms in a fresh process).
So :func:`render_throughput_isolated` times in a fresh process whose allocator is pinned
to the heap (:func:`pin_allocator`), the faster of the two states for the naive pipeline:
the ratio is the conservative one, and one that repeats.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from bench import ctgen

FORMATS: tuple[Literal["jpeg", "png", "webp"], ...] = ("jpeg", "png", "webp")
WINDOW = (40.0, 400.0)
QUALITY = 90
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


@dataclass(frozen=True)
class Timing:
    """Calls of one function: median wall ms per call, CPU ms per call, how many."""

    wall_ms: float
    cpu_ms: float
    calls: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "wall_ms": round(self.wall_ms, 3),
            "cpu_ms": round(self.cpu_ms, 3),
            "calls": self.calls,
        }


def time_calls(
    fn: Callable[[int], object], *, min_calls: int, min_s: float, max_calls: int = 100_000
) -> Timing:
    """Call ``fn(k)`` for k = 0, 1, ... at least ``min_calls`` times and ``min_s`` seconds
    (after one warm-up call)."""
    fn(0)
    walls: list[float] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    k = 0
    while k < max_calls and (k < min_calls or time.perf_counter() - start < min_s):
        t0 = time.perf_counter()
        fn(k)
        walls.append(time.perf_counter() - t0)
        k += 1
    cpu = time.process_time() - cpu0
    return Timing(statistics.median(walls) * 1e3, cpu / k * 1e3, k)


def time_interleaved(
    fns: dict[str, Callable[[int], object]],
    *,
    rounds: int,
    min_calls: dict[str, int],
    min_s: dict[str, float],
    around: dict[str, Callable[[bool], None]] | None = None,
) -> dict[str, Timing]:
    """Time several functions in ``rounds`` alternating rounds: in each, every function in
    turn for at least ``min_calls[name] / rounds`` calls and ``min_s[name] / rounds``
    seconds. Wall ms is the median of all calls; CPU ms the median over the rounds of each
    round's CPU per call. ``around[name](True)`` / ``(False)`` run before / after each of
    that function's turns (e.g. an OpenCV thread setting), untimed."""
    around = around or {}
    walls: dict[str, list[float]] = {name: [] for name in fns}
    cpus: dict[str, list[float]] = {name: [] for name in fns}
    ks = dict.fromkeys(fns, 0)
    for name, fn in fns.items():  # one warm-up call each
        if name in around:
            around[name](True)
        try:
            fn(0)
        finally:
            if name in around:
                around[name](False)
    for _ in range(rounds):
        for name, fn in fns.items():
            if name in around:
                around[name](True)
            try:
                least = max(1, -(-min_calls[name] // rounds))
                span = min_s[name] / rounds
                k0 = ks[name]
                cpu0 = time.process_time()
                start = time.perf_counter()
                k = k0
                while k - k0 < least or time.perf_counter() - start < span:
                    t0 = time.perf_counter()
                    fn(k)
                    walls[name].append(time.perf_counter() - t0)
                    k += 1
                cpus[name].append((time.process_time() - cpu0) / (k - k0))
                ks[name] = k
            finally:
                if name in around:
                    around[name](False)
    return {
        name: Timing(
            statistics.median(walls[name]) * 1e3, statistics.median(cpus[name]) * 1e3, ks[name]
        )
        for name in fns
    }


# --- decode ------------------------------------------------------------------------------


def write_syntax_files(
    folder: Path, slices: int = 4
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """``slices`` CT slices in each transfer syntax of ``ctgen.SYNTAXES``; the syntaxes
    that could not be written are returned with the reason."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [ctgen.ct_slice(40 + 3 * i, variant=9) for i in range(slices)]
    files: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    for name in ctgen.SYNTAXES:
        try:
            paths = []
            for i, ds in enumerate(sources):
                path = folder / f"{name}{i}.dcm"
                ctgen.write(ctgen.variant_of(ds, name), path)
                paths.append(path)
            files[name] = paths
        except Exception as exc:  # an encoder missing here: report it, measure the rest
            skipped[name] = f"{type(exc).__name__}: {exc}"[:200]
    return files, skipped


def decode_costs(
    files: dict[str, list[Path]], *, min_calls: int = 12, min_s: float = 0.4
) -> dict[str, dict[str, float | int]]:
    """ms per 512² slice for ``pixels.read_frame`` per transfer syntax."""
    from consultd.imaging.pixels import read_frame

    out: dict[str, dict[str, float | int]] = {}
    for name, paths in files.items():
        names = [str(p) for p in paths]
        for p in names:  # the header cache, as a worker has it after the first frame
            read_frame(p, 0)

        def decode(k: int, names: list[str] = names) -> object:
            return read_frame(names[k % len(names)], 0)

        out[name] = time_calls(decode, min_calls=min_calls, min_s=min_s).as_dict()
    return out


# --- render ------------------------------------------------------------------------------


def naive_render(
    pixels: npt.NDArray[Any], slope: float, intercept: float, fmt: str, quality: int = QUALITY
) -> bytes:
    """The straightforward pipeline: float64 modality values, numpy window, Pillow encode."""
    from PIL import Image

    center, width = WINDOW
    hu = pixels.astype(np.float64) * slope + intercept
    low = center - width / 2.0
    grey = (np.clip((hu - low) / width, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {} if fmt == "png" else {"quality": quality}
    Image.fromarray(grey).save(buf, format=_PIL_FORMATS[fmt], **kwargs)
    return buf.getvalue()


def naive_pydicom_luts(path: Path, fmt: str, quality: int = QUALITY) -> bytes:
    """The naive pipeline with pydicom's own helpers: ``apply_modality_lut`` and
    ``apply_voi_lut`` (the file's first window), min..max to uint8, Pillow encode."""
    from PIL import Image
    from pydicom import dcmread
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    ds = dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0)
    low, high = float(values.min()), float(values.max())
    grey = ((values - low) / max(high - low, 1e-9) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {} if fmt == "png" else {"quality": quality}
    Image.fromarray(grey).save(buf, format=_PIL_FORMATS[fmt], **kwargs)
    return buf.getvalue()


def pin_allocator() -> str:
    """Have glibc serve allocations up to 32 MiB from the heap and keep 128 MiB of it
    before trimming (fixed thresholds: no dynamic mmap threshold). What it did, for the
    report; nothing off glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "default (not glibc)"
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    if mallopt(m_mmap_threshold, 32 << 20) != 1 or mallopt(m_trim_threshold, 128 << 20) != 1:
        return "default (mallopt refused)"
    return "glibc: mmap threshold 32 MiB, trim threshold 128 MiB"


def _isolated(
    paths: list[str], min_calls: int, min_s: float, rounds: int
) -> tuple[dict[str, dict[str, Any]], str]:
    allocator = pin_allocator()
    out = render_throughput(
        [Path(p) for p in paths], min_calls=min_calls, min_s=min_s, rounds=rounds
    )
    return out, allocator


def render_throughput_isolated(
    paths: Sequence[Path], *, min_calls: int = 20, min_s: float = 0.5, rounds: int = 5
) -> tuple[dict[str, dict[str, Any]], str]:
    """:func:`render_throughput` in a fresh (spawned) process with :func:`pin_allocator`,
    and what the allocator was set to."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        out, allocator = pool.submit(
            _isolated, [str(p) for p in paths], min_calls, min_s, rounds
        ).result()
    return out, allocator


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b > 0 else None


def render_throughput(
    paths: Sequence[Path], *, min_calls: int = 20, min_s: float = 0.5, rounds: int = 5
) -> dict[str, dict[str, Any]]:
    """Per format: consultd's render from decoded frames (OpenCV with the server's thread
    count, and with one thread), beside the naive pipelines (module docstring), timed in
    alternating rounds; ``speedup`` is naive CPU ms / ours CPU ms."""
    import cv2
    from pydicom import dcmread

    from consultd.imaging.pixels import read_frame
    from consultd.imaging.render import RenderParams, render

    decoded = [read_frame(str(p), 0) for p in paths]
    datasets = [dcmread(p) for p in paths]
    arrays = [ds.pixel_array for ds in datasets]
    slope = float(datasets[0].RescaleSlope)
    intercept = float(datasets[0].RescaleIntercept)
    n = len(paths)
    few = max(5, min_calls // 4)
    threads = cv2.getNumThreads()

    def one_thread(entering: bool) -> None:
        cv2.setNumThreads(1 if entering else threads)

    out: dict[str, dict[str, Any]] = {}
    for fmt in FORMATS:
        params = RenderParams(
            window_center=WINDOW[0], window_width=WINDOW[1], format=fmt, quality=QUALITY
        )

        def ours(k: int, params: RenderParams = params) -> bytes:
            return render(*decoded[k % n], params)

        def naive(k: int, fmt: str = fmt) -> bytes:
            return naive_render(dcmread(paths[k % n]).pixel_array, slope, intercept, fmt)

        def naive_decoded(k: int, fmt: str = fmt) -> bytes:
            return naive_render(arrays[k % n], slope, intercept, fmt)

        def naive_luts(k: int, fmt: str = fmt) -> bytes:
            return naive_pydicom_luts(paths[k % n], fmt)

        t = time_interleaved(
            {
                "ours": ours,
                "ours_cv2_1_thread": ours,
                "naive": naive,
                "naive_from_decoded": naive_decoded,
                "naive_pydicom_luts": naive_luts,
            },
            rounds=rounds,
            min_calls={
                "ours": min_calls,
                "ours_cv2_1_thread": min_calls,
                "naive": few,
                "naive_from_decoded": few,
                "naive_pydicom_luts": few,
            },
            min_s={
                "ours": min_s,
                "ours_cv2_1_thread": min_s,
                "naive": min_s,
                "naive_from_decoded": min_s / 2,
                "naive_pydicom_luts": min_s / 2,
            },
            around={"ours_cv2_1_thread": one_thread},
        )
        t_ours, t_naive = t["ours"], t["naive"]
        t_decoded, t_luts = t["naive_from_decoded"], t["naive_pydicom_luts"]
        out[fmt] = {
            **{name: timing.as_dict() for name, timing in t.items()},
            "speedup": _ratio(t_naive.cpu_ms, t_ours.cpu_ms),
            "speedup_wall": _ratio(t_naive.wall_ms, t_ours.wall_ms),
            "speedup_from_decoded": _ratio(t_decoded.cpu_ms, t_ours.cpu_ms),
            "speedup_vs_pydicom_luts": _ratio(t_luts.cpu_ms, t_ours.cpu_ms),
            "slices_per_s_per_core": round(1e3 / t_ours.cpu_ms, 1) if t_ours.cpu_ms else None,
            "bytes": {"ours": len(ours(0)), "naive": len(naive_decoded(0))},
            "quality": QUALITY if fmt != "png" else None,
            "rounds": rounds,
        }
    return out
