"""Fuzzing ingest through the worker pool: mutated bytes of small valid files are refused
cleanly or ingested into a file pydicom reads back; never an unhandled exception, never a
worker limit, always in bounded time."""

from __future__ import annotations

import asyncio
import os
import struct
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from consultd.imaging.ingest import REFUSAL_CODES, Ingested, IngestPolicy, Refused, ingest_file
from consultd.imaging.limits import ImagingLimits
from consultd.imaging.sandbox import WorkerPool
from tests.imaging import dicomgen

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POLICY = IngestPolicy(secret=b"fuzz-room")
#: Generous: a clean refusal or a small ingest takes milliseconds.
TASK_S = 5.0


def _seed(name: str) -> bytes:
    import io

    if name == "native":
        ds = dicomgen.ct_slice(1, rows=32, cols=32)
    elif name == "rle":
        ds = dicomgen.compressed(dicomgen.ct_slice(1, rows=32, cols=32), dicomgen.COMPRESSED["rle"])
    else:
        ds = dicomgen.jpeg_baseline(16, 16)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


SEEDS = {name: _seed(name) for name in ("native", "rle", "jpeg")}
INTERESTING_U32 = [0, 1, 2, 7, 8, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFE, 0xFFFFFFFF]

# A mutation (kind, where, arg); "where" is a fraction of the length, so the same mutation
# applies to every seed: overwrite a byte, write an interesting 32-bit value (lengths!), cut the
# file, insert bytes, duplicate a run.
Mutation = tuple[str, float, int | bytes]
where = st.floats(0.0, 1.0, allow_nan=False)
mutation: st.SearchStrategy[Mutation] = st.one_of(
    st.tuples(st.just("byte"), where, st.integers(0, 255)),
    st.tuples(st.just("u32"), where, st.sampled_from(INTERESTING_U32)),
    st.tuples(st.just("cut"), where, st.just(0)),
    st.tuples(st.just("insert"), where, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("dup"), where, st.integers(1, 64)),
)


def mutate(data: bytes, ops: list[Mutation]) -> bytes:
    out = bytearray(data)
    for kind, fraction, arg in ops:
        at = min(int(fraction * len(out)), max(len(out) - 1, 0))
        if kind == "byte" and out and isinstance(arg, int):
            out[at] = arg
        elif kind == "u32" and at + 4 <= len(out) and isinstance(arg, int):
            struct.pack_into("<I", out, at, arg)
        elif kind == "cut":
            del out[at:]
        elif kind == "insert" and isinstance(arg, bytes):
            out[at:at] = arg
        elif kind == "dup" and isinstance(arg, int):
            out[at:at] = out[at : at + arg]
    return bytes(out)


@pytest.fixture(scope="module")
def pool_loop() -> Iterator[tuple[asyncio.AbstractEventLoop, WorkerPool]]:
    loop = asyncio.new_event_loop()
    pool = WorkerPool(2, ImagingLimits(task_timeout_s=TASK_S))
    loop.run_until_complete(pool.start())
    yield loop, pool
    loop.run_until_complete(pool.close())
    loop.close()


@settings(
    max_examples=150,
    deadline=None,
    derandomize=CI,
    database=None if CI else settings().database,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.sampled_from(sorted(SEEDS)), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_files_are_refused_or_ingested_cleanly(
    seed: str,
    ops: list[Mutation],
    pool_loop: tuple[asyncio.AbstractEventLoop, WorkerPool],
    tmp_path: Path,
) -> None:
    loop, pool = pool_loop
    src = tmp_path / "fuzz.dcm"
    dst = tmp_path / "fuzz-out.dcm"
    dst.unlink(missing_ok=True)
    src.write_bytes(mutate(SEEDS[seed], ops))
    t = time.monotonic()
    result = loop.run_until_complete(pool.run(ingest_file, str(src), str(dst), POLICY))
    assert time.monotonic() - t < TASK_S
    if isinstance(result, Refused):
        assert result.code in REFUSAL_CODES and result.reason
        assert not dst.exists()
    else:
        assert isinstance(result, Ingested)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = pydicom.dcmread(dst)
        assert stored.SOPInstanceUID == result.sop_instance_uid
        assert dst.stat().st_size == result.bytes
    stats = pool.stats()
    assert (stats.memory, stats.time, stats.crash) == (0, 0, 0), stats
