"""One image's measurements as a DICOM SR, through the real server: drawn over socket.io on
an uploaded CT, fetched as a file that highdicom parses back as a TID 1500 report with the
viewer's values; members only; JSON errors; an audit event with ids only."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from contextlib import closing as closing_db
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom

from consultd.transport.http import build_api
from tests.annotate.test_export_png import ct_room, red_line
from tests.imaging import dicomgen
from tests.utils import ServerProcess, http, register


def report(room_id: str, doc: str) -> str:
    return f"/api/rooms/{room_id}/annotations/{doc}/report.dcm"


async def test_report_of_measurements_on_an_uploaded_ct(
    server: ServerProcess, tmp_path: Path
) -> None:
    async with ct_room(server, tmp_path) as ct:
        dr, room, doc, drawer = ct.dr, ct.room, ct.doc, ct.drawer
        adm, stored = ct.admission, ct.stored
        anchor = ct.anchor()
        # No measurement yet: a text label only.
        label = {**red_line(adm["participant_id"]), "id": "t1", "kind": "text", "anchor": anchor}
        label["geometry"] = {"points": [[5.0, 5.0]], "text": "see here"}
        await drawer.draw("t1", label)
        async with dr.session.get(report(room["id"], doc)) as r:
            assert r.status == 422 and r.content_type == "application/json"
            assert (await r.json())["error"]["code"] == "validation_error"

        line = {**red_line(adm["participant_id"]), "anchor": anchor}  # 50 px along row 20
        box = {**line, "id": "r1", "kind": "rectangle", "created": 2.0, "updated": 2.0}
        box["geometry"] = {"points": [[10.0, 30.0], [50.0, 60.0]]}
        await drawer.draw("l1", line)
        await drawer.draw("r1", box)
        async with dr.session.get(report(room["id"], doc)) as r:
            assert r.status == 200, await r.text()
            assert r.content_type == "application/dicom"
            assert r.headers["Cache-Control"] == "private, no-store"
            data = await r.read()

    sr = hd.sr.ComprehensiveSR.from_dataset(pydicom.dcmread(io.BytesIO(data)))
    assert sr.StudyInstanceUID == stored["study_uid"]
    # The room's image is de-identified, and so is the report built from it.
    assert "DOE" not in str(sr.PatientName).upper()
    assert str(sr.PatientName) not in {str(v) for v in dicomgen.FAKE_PHI.values()}
    (length,) = sr.content.get_image_measurement_groups()
    (region,) = sr.content.get_planar_roi_measurement_groups()
    assert (length.tracking_identifier, region.tracking_identifier) == ("l1", "r1")
    (m,) = length.get_measurements()
    assert (m.name.meaning, m.unit.value) == ("Length", "mm")
    assert abs(m.value - 50 * 0.7) < 1e-6, "from Pixel Spacing 0.7 mm"
    got = {x.name.meaning: x for x in region.get_measurements()}
    assert abs(got["Area"].value - 40 * 30 * 0.49) < 1e-6
    assert got["Mean"].unit.value == "[hnsf'U]", "CT values in Hounsfield units"
    assert region.roi.value.tolist() == [[10, 30], [50, 30], [50, 60], [10, 60], [10, 30]]

    rows: list[Any] = []
    for _ in range(50):  # the audit event is in the next group commit
        with closing_db(sqlite3.connect(server.data_dir / "consultd.sqlite3")) as db:
            rows = db.execute(
                "SELECT actor, target, detail FROM audit_events WHERE action = ?",
                ("annotations.exported",),
            ).fetchall()
        if rows:
            break
        await asyncio.sleep(0.05)
    assert [(target, detail) for _, target, detail in rows] == [(doc, '{"as": "sr"}')]
    assert rows[0][0] == dr.user["id"], "the signed-in physician who fetched it"

    # Members only; a malformed image key or an image the room does not hold: JSON errors.
    stranger = await register(server.url, "Dr Stranger")
    for session in (stranger.session, http(server.url)):
        async with session.get(report(room["id"], doc)) as r:
            assert r.status in (401, 403, 404) and r.content_type == "application/json"
    for bad, status in (("bad%20doc", 400), ("1.2.3:1", 404)):
        async with dr.session.get(report(room["id"], bad)) as r:
            assert r.status == status, (bad, r.status)
            assert r.content_type == "application/json"


def test_the_report_is_in_the_openapi_document() -> None:
    doc = build_api(65536).openapi()
    op = doc["paths"]["/api/rooms/{room_id}/annotations/{doc_id}/report.dcm"]["get"]
    assert op["operationId"] == "annotation_report"
    assert "422" in op["responses"] and "404" in op["responses"]
