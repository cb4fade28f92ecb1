"""annotations.sr: a room image's measurements as a TID 1500 Measurement Report that a
third-party reader (highdicom's own parser, pydicom) reads back with the values, units,
regions and references the viewer shows."""

from __future__ import annotations

import io
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from annotations.measure import Calibration, ImageInfo, measure
from annotations.schema import validate_annotation
from annotations.sr import NothingToReport, measurement_report, report_bytes
from tests.annotations.test_render import note
from tests.imaging.dicomgen import ct_slice

ROOM, DOC = "room-1", "1.2.3:1"


@pytest.fixture(scope="module")
def ct() -> pydicom.Dataset:
    ds = ct_slice(0, rows=64, cols=64, phi=False)
    ds.PatientName = "ANON^CASE"
    ds.PatientID = "case-1"
    return ds


def image_of(ds: pydicom.Dataset) -> ImageInfo:
    pixels = np.frombuffer(ds.PixelData, dtype=np.int16).reshape(ds.Rows, ds.Columns)
    return ImageInfo(
        Calibration.from_pixel_spacing([float(v) for v in ds.PixelSpacing]),
        pixels,
        float(ds.RescaleSlope),
        float(ds.RescaleIntercept),
        "CT",
    )


def read_back(report: pydicom.Dataset) -> hd.sr.ComprehensiveSR:
    data = report_bytes(report)
    return hd.sr.ComprehensiveSR.from_dataset(pydicom.dcmread(io.BytesIO(data)))


def values(group: Any) -> dict[str, tuple[float, str]]:
    return {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}


SHAPES = [
    note("line", [[10, 10], [40, 10]], ident="len"),
    note("ellipse", [[20, 20], [44, 36]], ident="ell", created=2),
    note("rectangle", [[5, 40], [25, 60]], ident="box", created=3),
    note("angle", [[10, 30], [20, 30], [20, 20]], ident="ang", created=4),
    note("point", [[3, 3]], ident="pt", created=5),
    note("freehand", [[40, 40], [60, 40], [60, 60], [40, 60]], closed=True, ident="fh", created=6),
]


def test_report_holds_each_measurement_with_its_unit_region_and_source(
    ct: pydicom.Dataset,
) -> None:
    annotations = [validate_annotation(n) for n in SHAPES]
    image = image_of(ct)
    report = measurement_report(annotations, ct, image, room_id=ROOM, doc_id=DOC)
    sr = read_back(report)
    assert sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    assert (sr.StudyInstanceUID, sr.PatientID) == (ct.StudyInstanceUID, "case-1")
    assert sr.SeriesInstanceUID != ct.SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID

    content = sr.content
    assert content.get_observer_contexts()[0].observer_type == codes.DCM.Device
    planar = {g.tracking_identifier: g for g in content.get_planar_roi_measurement_groups()}
    image_level = {g.tracking_identifier: g for g in content.get_image_measurement_groups()}
    assert set(planar) == {"ell", "box", "fh"}, "regions, not the point"
    assert set(image_level) == {"len", "ang"}

    expected = {a.id: measure(a, image) for a in annotations}
    length = values(image_level["len"])
    assert length == {"Length": (pytest.approx(expected["len"]["length"]), "mm")}
    assert length["Length"][0] == pytest.approx(30 * 0.7)
    assert values(image_level["ang"]) == {"Angle": (pytest.approx(90.0), "deg")}

    for ident in ("ell", "box", "fh"):
        got, want = values(planar[ident]), expected[ident]
        assert got["Area"] == (pytest.approx(want["area"]), "mm2")
        assert got["Mean"] == (pytest.approx(want["mean"]), "[hnsf'U]")
        assert got["Standard Deviation"][0] == pytest.approx(want["sd"])
        assert got["Minimum"][0] == pytest.approx(want["min"])
        assert got["Maximum"][0] == pytest.approx(want["max"])

    ellipse = planar["ell"].roi
    assert ellipse.graphic_type == hd.sr.GraphicTypeValues.ELLIPSE
    # major axis first: the box is 24 wide and 16 high, centred at (32, 28)
    assert ellipse.value.tolist() == [[20, 28], [44, 28], [32, 20], [32, 36]]
    source = ellipse.ContentSequence[0].ReferencedSOPSequence[0]
    assert source.ReferencedSOPInstanceUID == ct.SOPInstanceUID
    box = planar["box"].roi
    assert box.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    assert box.value.tolist() == [[5, 40], [25, 40], [25, 60], [5, 60], [5, 40]]
    assert planar["fh"].roi.value.tolist()[-1] == [40, 40], "a closed region ends where it began"


def test_tracking_uids_are_stable_across_exports(ct: pydicom.Dataset) -> None:
    annotations = [validate_annotation(SHAPES[0])]
    first, second = (
        read_back(measurement_report(annotations, ct, image_of(ct), room_id=ROOM, doc_id=DOC))
        for _ in range(2)
    )
    uid = [g.tracking_uid for g in first.content.get_image_measurement_groups()]
    assert uid == [g.tracking_uid for g in second.content.get_image_measurement_groups()]
    assert first.SOPInstanceUID != second.SOPInstanceUID


def test_uncalibrated_lengths_are_in_pixels_and_say_so(ct: pydicom.Dataset) -> None:
    annotations = [validate_annotation(SHAPES[0])]
    sr = read_back(measurement_report(annotations, ct, ImageInfo(), room_id=ROOM, doc_id=DOC))
    group = sr.content.get_image_measurement_groups()[0]
    (m,) = group.get_measurements()
    assert (m.value, m.unit.value) == (30.0, "{pixels}")
    assert m.method.value == "UNCALIBRATED"


def test_an_image_without_measurements_has_no_report(ct: pydicom.Dataset) -> None:
    text = note("text", [[1, 1]], text="x", ident="t")
    annotations = [validate_annotation(SHAPES[4]), validate_annotation(text)]
    with pytest.raises(NothingToReport):
        measurement_report(annotations, ct, image_of(ct), room_id=ROOM, doc_id=DOC)
