"""consultd-bench annotations: a small spawned run, end to end (BENCH.md contract)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from annotations.document import AnnotationDocument
from annotations.sync import (
    AwarenessEntry,
    awareness_message,
    awareness_update,
    parse_awareness,
    parse_message,
)
from bench.scenarios.annotations import STROKE_UPDATES, Drawer, _pointer_stamps
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


def test_pointer_is_one_awareness_update_with_a_json_state() -> None:
    import json
    import random

    from annotations.sync import MessageKind, parse_awareness, parse_message

    pen = Drawer("w0r1p2", random.Random(1))
    msg = parse_message(pen.pointer())
    assert msg.kind is MessageKind.AWARENESS
    [entry] = parse_awareness(msg.payload)
    assert (entry.client, entry.clock) == (pen.client_id, 1)
    state = json.loads(entry.state)
    assert state["user"] == {"name": "w0r1p2", "color": pen.color}
    assert set(state["pointer"]) == {"x", "y"} and state["t"] == pen.last_t


def test_pointer_stamps_read_what_json_would() -> None:
    """The generator's shortcut against a full decode, on what the server relays: several
    clients' newest states merged into one update, a departed client (null) among them."""
    drawers = [Drawer(f"w0r1s{i}", random.Random(i)) for i in range(3)]
    entries = [parse_awareness(parse_message(d.pointer()).payload)[0] for d in drawers]
    entries.append(AwarenessEntry(99, 5, b"null"))
    merged = awareness_message(awareness_update(entries))
    by_json = [(e.client, json.loads(e.state)["t"]) for e in entries if not e.removed]
    assert _pointer_stamps(merged) == by_json
    assert len(by_json) == 3 and all(t > 0 for _, t in by_json)


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
