"""Hostile files: each is refused with its own code, cheaply, before the work it would cause;
through the worker pool no worker breaks a limit and the pool keeps serving. A naive
pydicom read of the same files shows the hazards are real, and that the worker limits
contain them when a check is missing."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pydicom
import pytest

from consultd.imaging.ingest import Ingested, IngestPolicy, Refused, ingest_file
from consultd.imaging.limits import GiB, ImagingLimits
from consultd.imaging.sandbox import WorkerLimitExceeded, WorkerPool
from tests.imaging import dicomgen

POLICY = IngestPolicy(secret=b"hostile-room")
HOSTILE = dicomgen.hostile_files()


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for h in HOSTILE:
        (folder / f"{h.name}.dcm").write_bytes(h.data)
    dicomgen.write(dicomgen.ct_slice(0), folder / "good.dcm")
    return folder


@pytest.mark.parametrize("case", HOSTILE, ids=lambda h: h.name)
def test_each_hostile_file_is_refused_with_its_code(
    case: dicomgen.Hostile, hostile_dir: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "out.dcm"
    t = time.process_time()
    result = ingest_file(str(hostile_dir / f"{case.name}.dcm"), str(dst), POLICY)
    cpu = time.process_time() - t
    assert isinstance(result, Refused), result
    assert result.code == case.code, (case.note, result)
    assert result.reason and "DOE" not in result.reason
    assert not dst.exists()
    # Refused before the cost: the 400 k element file is the most expensive to look at.
    assert cpu < (0.5 if case.name == "many_elements" else 0.05), cpu


async def test_hostile_files_through_the_pool_then_a_good_one(
    hostile_dir: Path, tmp_path: Path
) -> None:
    async with WorkerPool(2, ImagingLimits(task_timeout_s=10.0)) as pool:
        for h in HOSTILE:
            result = await pool.run(
                ingest_file, str(hostile_dir / f"{h.name}.dcm"), str(tmp_path / "o.dcm"), POLICY
            )
            assert isinstance(result, Refused) and result.code == h.code, (h.name, result)
        good = await pool.run(
            ingest_file, str(hostile_dir / "good.dcm"), str(tmp_path / "good.dcm"), POLICY
        )
        assert isinstance(good, Ingested)
        stats = pool.stats()
        assert (stats.memory, stats.time, stats.crash, stats.replaced) == (0, 0, 0, 0)


# -- the hazards, unchecked ------------------------------------------------------------------


def naive_read(path: str) -> int:
    """What a server without the checks would do: read, serialise, decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=False)
        ds.to_json_dict()
        return int(ds.pixel_array.nbytes)


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("huge_length", "memory"),  # one 4 GiB read
        ("rle_huge", "memory"),  # a 4 GiB output array
        ("deflated_bomb", "memory"),  # ~2 GB inflated before any element is read
        ("many_elements", "time"),  # ~2 s of CPU against a 1 s RLIMIT_CPU
        ("deep_sequence", RecursionError),
        ("deep_un_sequence", RecursionError),
    ],
)
async def test_naive_pydicom_fails_and_the_worker_limits_contain_it(
    name: str, outcome: str | type[BaseException], hostile_dir: Path
) -> None:
    # A 1 s CPU limit for the CPU case only: under load, inflating the bomb up to the memory
    # limit can itself take over a second.
    cpu = 1 if outcome == "time" else 20
    limits = ImagingLimits(worker_address_space_bytes=1 * GiB, worker_cpu_seconds=cpu)
    async with WorkerPool(1, limits, preload=()) as pool:
        expected: type[BaseException] = (
            outcome if not isinstance(outcome, str) else WorkerLimitExceeded
        )
        with pytest.raises(expected) as info:
            await pool.run(naive_read, str(hostile_dir / f"{name}.dcm"))
        if isinstance(outcome, str):
            assert isinstance(info.value, WorkerLimitExceeded) and info.value.kind == outcome
        # The pool replaced the worker (or kept it, after an ordinary exception) and serves.
        good = await pool.run(naive_read, str(hostile_dir / "good.dcm"))
        assert good == 512 * 512 * 2
