"""consultd-bench annotations: a small spawned run, end to end (BENCH.md contract)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from annotations.document import AnnotationDocument
from bench.scenarios.annotations import STROKE_UPDATES, Drawer, awareness_update
from tests.bench.test_bench_cli import REPORT_KEYS, _bench


def test_drawer_updates_pass_the_server_checks() -> None:
    pen = Drawer("t", random.Random(1))
    pen.author = "p1"
    server = AnnotationDocument()
    for _ in range(STROKE_UPDATES + 1):
        applied = server.apply(pen.next_update(), author="p1", is_host=False)
        assert applied.changed
    notes = server.annotations()
    assert len(notes) == 2 and all(n["kind"] == "freehand" for n in notes.values())
    server.close()


def test_awareness_update_layout() -> None:
    # count 1, clientID 300 (varUint 0xac 0x02), clock 2, then the JSON state as a varString
    assert awareness_update(300, 2, {"a": 1}) == b"\x01\xac\x02\x02\x07" + b'{"a":1}'


def test_help_lists_annotations_options() -> None:
    out = _bench("annotations", "--help", timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--late-join-annotations", "--awareness-hz", "--workers", "--join-rate"):
        assert option in out.stdout


@pytest.mark.timeout(120)
def test_annotations_spawn_end_to_end(tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    run = _bench(
        "annotations", "--spawn", "--rooms", "2", "--participants", "3", "--rate", "30",
        "--duration", "2", "--late-join-annotations", "300", "--json", str(out_json),
        "--quiet",
        timeout=90,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "update end-to-end latency" in run.stdout
    report = json.loads(out_json.read_text())
    assert set(report) == REPORT_KEYS
    assert report["scenario"] == "annotations"
    assert report["params"] == {"rooms": 2, "participants": 3, "rate": 30, "duration": 2}
    assert report["errors"] == 0, report["extra"]
    assert all(v > 0 for v in report["latency_ms"].values()), report["latency_ms"]
    assert report["throughput_per_s"] > 0
    extra = report["extra"]
    assert extra["connected"] == 6
    assert extra["updates_sent"] == extra["updates_acked"] == 60
    # every update reaches the two other members of its room
    assert extra["deliveries"] == extra["deliveries_expected"] == 2 * extra["updates_sent"]
    assert extra["late_join_10k_ms"] > 0
    assert extra["late_join"]["annotations"] == 300
    assert extra["doc_bytes"] > 0 and extra["doc_bytes_source"].startswith("sqlite")
    assert extra["cpu_us_per_update"] > 0
    assert extra["awareness_sent_per_s"] > 0 and extra["awareness_last_missing"] == 0
    assert extra["awareness_ms"]["p50"] > 0
