"""One image's measurements as a DICOM Structured Report: a TID 1500 Measurement Report.

highdicom builds the SR tree and checks it against the templates; this module only maps
annotations onto them (PS3.16 TID 1500, 1501, 1410; PS3.3 C.18.6 for coordinates):

- ``line``, ``arrow``, ``polyline``, open ``freehand``: a TID 1501 measurement group
  holding ``Length`` (SCT 410668003), inferred from the SCOORD POLYLINE it was measured
  along (TID 300 row 8);
- ``angle``: the same with ``Angle`` (SCT 1483009) in degrees over its three points;
- ``rectangle``, ``ellipse``, closed ``freehand``: a TID 1410 planar ROI whose region is
  the shape (a closed POLYLINE; an ELLIPSE by the end points of its two axes) with
  ``Area`` and, when the image's values are known, ``Mean``, ``Standard Deviation``,
  ``Minimum`` and ``Maximum`` in the image's unit (Hounsfield units for CT);
- ``point`` and ``text`` carry no measurement and are left out.

Coordinates are the annotation's own: image pixels, origin at the top-left corner of the
top-left pixel, which is DICOM's convention for SCOORD too. Values are the ones
``annotations.measure`` gives the viewer and the JSON export (lengths from Pixel Spacing,
else Imager Pixel Spacing, else in pixels, unit ``{pixels}``); the calibration source is
stated in each group's ``Measurement Method``. Each group is tracked by the annotation's
id, with a UID derived from room, image and id so that two exports of an unchanged
annotation name it alike.

Patient and study attributes are copied by highdicom from the source image, which the
room stores de-identified: the report holds nothing the room's image does not.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any, Final

import highdicom as hd
import numpy as np
from pydicom import Dataset, dcmwrite
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from annotations.measure import (
    IMAGER_PIXEL_SPACING,
    PIXEL_SPACING,
    ImageInfo,
    Measurement,
    measure,
)
from annotations.schema import Annotation, Kind, in_drawing_order

__all__ = ["NothingToReport", "measurement_report", "report_bytes"]

MANUFACTURER: Final = "consultd"
#: Series number of the reports (a series of their own beside the images).
SERIES_NUMBER: Final = 9001

_PIXELS: Final = hd.sr.CodedConcept("{pixels}", "UCUM", "pixels")
_SQUARE_PIXELS: Final = hd.sr.CodedConcept("{pixels}2", "UCUM", "square pixels")
_UNITS: Final[dict[str, Any]] = {
    "mm": codes.UCUM.Millimeter,
    "mm2": codes.UCUM.SquareMillimeter,
    "px": _PIXELS,
    "px2": _SQUARE_PIXELS,
    "HU": codes.UCUM.HounsfieldUnit,
    "": codes.UCUM.NoUnits,
}
#: How each length was calibrated (Measurement Method, TID 300 row 3).
_METHODS: Final[dict[str, Any]] = {
    PIXEL_SPACING: hd.sr.CodedConcept("PIXEL_SPACING", "99CONSULTD", "Pixel Spacing"),
    IMAGER_PIXEL_SPACING: hd.sr.CodedConcept(
        "IMAGER_PIXEL_SPACING", "99CONSULTD", "Imager Pixel Spacing (at the detector)"
    ),
}
_UNCALIBRATED = hd.sr.CodedConcept("UNCALIBRATED", "99CONSULTD", "Uncalibrated (pixels)")
_STATS: Final = (
    ("mean", codes.SCT.Mean),
    ("sd", codes.SCT.StandardDeviation),
    ("min", codes.SCT.Minimum),
    ("max", codes.SCT.Maximum),
)
_LINEAR: Final = (Kind.LINE, Kind.ARROW, Kind.POLYLINE)
_REGIONS: Final = (Kind.RECTANGLE, Kind.ELLIPSE)


class NothingToReport(ValueError):
    """No annotation of the image carries a measurement."""


def _unit(name: str | None) -> Any:
    unit = _UNITS.get(name or "")
    if unit is None:  # a unit from the image (Real World Value Mapping): UCUM as given
        return hd.sr.CodedConcept(str(name), "UCUM", str(name))
    return unit


def _method(m: Measurement) -> Any:
    return _METHODS.get(str(m.get("calibration")), _UNCALIBRATED)


def _region(annotation: Annotation) -> tuple[hd.sr.GraphicTypeValues, np.ndarray[Any, Any]]:
    """The ROI of a region kind as (graphic type, (column, row) points)."""
    pts = np.asarray(annotation.geometry.points, dtype=np.float64)
    if annotation.kind in _REGIONS:
        (x0, y0), (x1, y1) = np.min(pts[:2], axis=0), np.max(pts[:2], axis=0)
        if annotation.kind is Kind.RECTANGLE:
            box = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
            return hd.sr.GraphicTypeValues.POLYLINE, np.asarray(box)
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        horizontal = [[cx - rx, cy], [cx + rx, cy]]
        vertical = [[cx, cy - ry], [cx, cy + ry]]
        axes = horizontal + vertical if rx >= ry else vertical + horizontal
        return hd.sr.GraphicTypeValues.ELLIPSE, np.asarray(axes)
    if not np.array_equal(pts[0], pts[-1]):  # a closed freehand: SCOORD wants it closed
        pts = np.vstack([pts, pts[:1]])
    return hd.sr.GraphicTypeValues.POLYLINE, pts


def _tracking(room_id: str, doc_id: str, annotation: Annotation) -> hd.sr.TrackingIdentifier:
    uid = generate_uid(entropy_srcs=["consultd-annotation", room_id, doc_id, annotation.id])
    return hd.sr.TrackingIdentifier(uid=uid, identifier=annotation.id)


def _group(
    annotation: Annotation,
    m: Measurement,
    source: Dataset,
    frame: int,
    tracking: hd.sr.TrackingIdentifier,
) -> Any:
    """The measurement group of one annotation, or ``None`` when it measures nothing."""
    frames = [frame] if int(getattr(source, "NumberOfFrames", 1) or 1) > 1 else None
    method = _method(m)
    kind = annotation.kind
    if kind in _LINEAR or kind is Kind.ANGLE or kind is Kind.FREEHAND:
        closed = kind is Kind.FREEHAND and annotation.geometry.closed
        if not closed:
            if kind is Kind.ANGLE:
                value, name, unit = m.get("angle_deg"), codes.SCT.Angle, codes.UCUM.Degree
            else:
                value, name, unit = m.get("length"), codes.SCT.Length, _unit(str(m["length_unit"]))
            if value is None:
                return None
            coordinates = hd.sr.CoordinatesForMeasurement(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=np.asarray(annotation.geometry.points, dtype=np.float64),
                source_image=hd.sr.SourceImageForRegion.from_source_image(source, frames),
            )
            measurement = hd.sr.Measurement(
                name=name,
                value=float(value),
                unit=unit,
                method=method if kind is not Kind.ANGLE else None,
                referenced_coordinates=[coordinates],
            )
            return hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(
                    source, frames
                )],
                measurements=[measurement],
            )  # fmt: skip
    if "area" not in m or m["area"] is None:
        return None
    graphic_type, points = _region(annotation)
    measurements = [
        hd.sr.Measurement(
            name=codes.SCT.Area,
            value=float(m["area"]),
            unit=_unit(str(m["area_unit"])),
            method=method,
        )
    ]
    for key, name in _STATS:
        value = m.get(key)
        if value is not None:
            measurements.append(
                hd.sr.Measurement(name=name, value=float(value), unit=_unit(str(m["unit"])))
            )
    region = hd.sr.ImageRegion(
        graphic_type=graphic_type,
        graphic_data=points,
        source_image=hd.sr.SourceImageForRegion.from_source_image(source, frames),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, referenced_region=region, measurements=measurements
    )


#: Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1):
#: highdicom copies them from the source image, and de-identification may have removed
#: them; a report must have them, empty if unknown.
_TYPE2: Final = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _header(source: Dataset) -> Dataset:
    """A copy of ``source`` without pixel data, with the Type 2 attributes above present."""
    header = Dataset()
    for element in source:
        if element.tag.group < 0x7FE0:
            header.add(element)
    for keyword in _TYPE2:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def measurement_report(
    annotations: Iterable[Annotation | Mapping[str, Any]],
    source: Dataset,
    image: ImageInfo,
    *,
    room_id: str,
    doc_id: str,
    frame: int = 1,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """A Comprehensive SR holding a TID 1500 report of the measurable ``annotations`` (typed
    or JSON values) drawn on ``frame`` of ``source`` (its header is enough; the values
    come from ``image``).

    Raises ``NothingToReport`` when none of them measures anything.
    """
    source = _header(source)
    groups: list[Any] = []
    for annotation in in_drawing_order(annotations):
        try:
            m = measure(annotation, image)
        except ValueError:  # e.g. non-finite values inside the ROI: geometry only
            m = measure(annotation, ImageInfo(calibration=image.calibration))
        if not m:
            continue
        group = _group(annotation, m, source, frame, _tracking(room_id, doc_id, annotation))
        if group is not None:
            groups.append(group)
    if not groups:
        raise NothingToReport("no annotation on this image carries a measurement")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["consultd-device"]),
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
    )


def report_bytes(report: Dataset) -> bytes:
    """The report as a DICOM Part 10 file."""
    out = io.BytesIO()
    dcmwrite(out, report, enforce_file_format=True)
    return out.getvalue()
