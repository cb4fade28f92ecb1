"""consultd-bench imaging: the pieces, and a small spawned run end to end (BENCH.md contract)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from bench import ctgen, imaging_local, orthanc
from bench.scenarios.imaging import HEADLINE_KEYS, _targets, middle_out
from tests.bench.test_bench_cli import REPORT_KEYS, _bench


def test_middle_out_visits_every_slice_once_from_the_middle() -> None:
    assert middle_out(5) == [2, 1, 3, 0, 4]
    assert middle_out(4) == [1, 0, 2, 3]
    order = middle_out(300)
    assert order[0] == 149 and sorted(order) == list(range(300))


def test_interleaved_timing_alternates_rounds_and_wraps_each_turn() -> None:
    calls: list[str] = []
    events: list[tuple[str, bool]] = []
    fns: dict[str, Callable[[int], object]] = {
        "a": lambda k: calls.append("a"),
        "b": lambda k: calls.append("b"),
    }
    timings = imaging_local.time_interleaved(
        fns,
        rounds=3,
        min_calls={"a": 6, "b": 3},
        min_s={"a": 0.0, "b": 0.0},
        around={"b": lambda entering: events.append(("b", entering))},
    )
    # one warm-up call each, then per round a's share (2 calls) and b's (1 call), in turn
    assert "".join(calls) == "ab" + "aab" * 3
    assert timings["a"].calls == 6 and timings["b"].calls == 3  # timed calls only
    assert events == [("b", True), ("b", False)] * 4
    assert all(t.cpu_ms >= 0 and t.wall_ms >= 0 for t in timings.values())


def test_the_allocator_is_pinned_in_a_process_of_its_own() -> None:
    import subprocess
    import sys

    code = "from bench.imaging_local import pin_allocator; print(pin_allocator())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("glibc: mmap threshold 32 MiB"), out.stdout


def test_ct_slices_are_distinct_deterministic_and_readable(tmp_path: Path) -> None:
    files = ctgen.write_series(3, tmp_path)
    again = ctgen.write_series(3, tmp_path / "again")
    assert [f.path.read_bytes() for f in files] == [f.path.read_bytes() for f in again]
    ds = dcmread(files[1].path)
    assert (ds.Rows, ds.Columns, ds.PixelRepresentation) == (512, 512, 1)
    assert ds.PatientName == ctgen.FAKE_PHI["PatientName"]
    assert str(ds.SOPInstanceUID) == files[1].sop_uid and files[1].instance_number == 2
    hu = ds.pixel_array.astype(np.int32) - 1024
    assert hu.min() < -900 and 600 < hu.max() < 1000  # air and bone
    assert not np.array_equal(ds.pixel_array, dcmread(files[0].path).pixel_array)


def test_recompressed_slice_keeps_its_own_uids(tmp_path: Path) -> None:
    [src] = ctgen.write_series(1, tmp_path)
    out = ctgen.recompress_file(
        str(src.path), str(tmp_path / "j.dcm"), ctgen.SYNTAXES["rle"], variant=1
    )
    ds = dcmread(out.path)
    assert ds.file_meta.TransferSyntaxUID == ctgen.SYNTAXES["rle"]
    assert out.series_uid == ctgen.series_uid(1) != src.series_uid
    assert str(ds.SOPInstanceUID) == out.sop_uid == f"{ctgen.series_uid(1)}.1"
    assert np.array_equal(ds.pixel_array, dcmread(src.path).pixel_array)


def test_orthanc_config_keeps_it_to_loopback_and_http(tmp_path: Path) -> None:
    cfg = orthanc.config(tmp_path, 18042, [Path("/x/libOrthancDicomWeb.so")])
    assert cfg["HttpPort"] == 18042 and cfg["RemoteAccessAllowed"] is False
    assert cfg["DicomServerEnabled"] is False and cfg["WebDavEnabled"] is False
    assert cfg["LuaScripts"] == [] and cfg["AuthenticationEnabled"] is False
    assert cfg["StorageDirectory"].startswith(str(tmp_path))
    assert cfg["DicomWeb"]["Enable"] is True


def test_targets_are_judged_only_when_measured() -> None:
    out = _targets({"first_image_ms": 400.0, "orthanc_ratio_jpeg": None, "series_metadata_ms": 12})
    assert out["first_image_ms"]["met"] is True
    assert out["series_metadata_ms"]["met"] is False
    assert out["orthanc_ratio_jpeg"]["met"] is None


def test_help_lists_imaging_options() -> None:
    out = _bench("imaging", "--help", timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--slices", "--upload-concurrency", "--no-orthanc", "--no-j2k"):
        assert option in out.stdout


@pytest.mark.timeout(120)
def test_imaging_spawn_end_to_end(tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    run = _bench(
        "imaging", "--spawn", "--slices", "20", "--duration", "1", "--local-seconds", "0.05",
        "--metadata-repeats", "5", "--no-orthanc", "--json", str(out_json),
        "--plot", str(out_png), "--quiet",
        timeout=100,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rendered JPEG latency (cached)" in run.stdout
    report = json.loads(out_json.read_text())
    assert set(report) == REPORT_KEYS and report["scenario"] == "imaging"
    assert report["errors"] == 0, report["extra"]["error_kinds"]
    assert report["throughput_per_s"] > 0 and report["latency_ms"]["p50"] > 0
    assert report["server"]["cpu_s"] > 0
    extra = report["extra"]
    assert list(extra)[: len(HEADLINE_KEYS)] == list(HEADLINE_KEYS)
    for key in ("first_image_ms", "full_series_ms", "series_metadata_ms",
                "ingest_cpu_ms_per_instance", "render_speedup_vs_naive",
                "slices_per_s_per_core"):  # fmt: skip
        assert extra[key] > 0, key
    assert extra["first_image_ms"] <= extra["full_series_ms"]
    assert extra["orthanc_ratio_jpeg"] is None and "--no-orthanc" in extra["orthanc"]["note"]
    assert extra["upload_view"]["stored"] == extra["ingest"]["stored"] == 20
    assert extra["ingest_j2k"]["stored"] == 20
    assert extra["metadata"]["instances"] == 20
    assert set(extra["decode_ms_per_slice"]) >= {"uncompressed", "rle", "jpeg_ls", "j2k_lossless"}
    assert set(extra["render_ms_per_slice"]) == {"jpeg", "png", "webp"}
    for loop in ("cached", "uncached", "j2k_cold", "j2k_cached"):
        assert extra["http"][loop]["requests"] > 0, loop
    assert extra["http"]["j2k_cold"]["requests"] == 20
    assert out_png.stat().st_size > 10_000
