"""Synthetic 512 x 512 CT series for the imaging bench (no test code imported: the bench
runs from an installed package).

Adapted from tests/imaging/dicomgen.py: a 16-bit signed axial CT with correct rescale,
spacing and positions, and fake PHI at the top level, in a private block and in nested
sequences, so the server's de-identification does its full work on every upload. The
phantom is built from shapes and a noise field computed once per size, so 300 slices take
about a second to make (dicomgen's takes 20 ms a slice). Everything is deterministic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

ROOT = "1.2.826.0.1.3680043.8.498.71207"  # pydicom's root plus a bench-only arc
STUDY_UID = f"{ROOT}.1"
FRAME_OF_REFERENCE_UID = f"{ROOT}.3"
I16 = npt.NDArray[np.int16]

#: Fake PHI (the PS3.15 Basic profile removes or replaces all of it).
FAKE_PHI: dict[str, str] = {
    "PatientName": "DOE^JANE^QUINCY",
    "PatientID": "MRN00427781",
    "PatientBirthDate": "19610704",
    "PatientSex": "F",
    "PatientAge": "062Y",
    "PatientAddress": "12 RUE DE LA PAIX PARIS",
    "OtherPatientIDs": "ALTID5566",
    "InstitutionName": "SAINT EXAMPLE HOSPITAL",
    "InstitutionAddress": "1 HOSPITAL WAY",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "CUDDY^LISA",
    "OperatorsName": "WILSON^JAMES",
    "AccessionNumber": "ACC99887766",
    "StudyID": "STUDY4242",
    "StationName": "CTSTATION7",
    "DeviceSerialNumber": "SN-ABC-123",
    "StudyDescription": "CT CHEST DOE JANE",
    "SeriesDescription": "AXIAL 1.25 MM",
    "ProtocolName": "CHEST ROUTINE",
    "StudyDate": "20240131",
    "StudyTime": "101500",
    "SeriesDate": "20240131",
    "AcquisitionDate": "20240131",
    "ContentDate": "20240131",
}

#: Short names of the transfer syntaxes the bench writes, and their UIDs.
SYNTAXES: dict[str, UID] = {
    "uncompressed": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg_ls": JPEGLSLossless,
    "j2k_lossless": JPEG2000Lossless,
    "jpeg_baseline": JPEGBaseline8Bit,
}


@dataclass(frozen=True)
class SliceFile:
    """One written slice and the UIDs it was written with (before any de-identification)."""

    path: Path
    study_uid: str
    series_uid: str
    sop_uid: str
    instance_number: int


def series_uid(variant: int) -> str:
    return f"{ROOT}.2.{variant}"


def _meta(sop_class: str, sop_instance: str, ts: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(ts)
    return meta


@lru_cache(maxsize=2)
def _shapes(rows: int, cols: int) -> tuple[I16, npt.NDArray[np.float32], I16]:
    """Per size, once: the body without lungs (stored values), the lungs' ellipse terms
    (x part over cols², y part) and a noise field twice the size (sd 12 HU)."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, cx = rows / 2, cols / 2
    hu = np.full((rows, cols), -1000.0, dtype=np.float32)
    body = ((x - cx) / (0.42 * cols)) ** 2 + ((y - cy) / (0.33 * rows)) ** 2 <= 1
    hu[body] = 40.0
    spine = (x - cx) ** 2 + (y - cy - 0.22 * rows) ** 2 <= (0.04 * cols) ** 2
    hu[spine] = 700.0
    # both lungs' x term without the radius r: ((|x - cx| - 0.18 cols) / cols)²
    lung_x = ((np.abs(x - cx) - 0.18 * cols) / cols) ** 2
    lung_y = ((y - cy) / (0.2 * rows)) ** 2
    terms = np.stack([lung_x, lung_y]).astype(np.float32)
    rng = np.random.default_rng(1207)
    noise = np.round(rng.normal(0, 12, size=(2 * rows, 2 * cols))).astype(np.int16)
    base = np.round(hu + 1024).astype(np.int16)
    base.flags.writeable = False
    terms.flags.writeable = False
    noise.flags.writeable = False
    return base, terms, noise


def phantom(index: int, rows: int = 512, cols: int = 512) -> I16:
    """An int16 CT-like slice in stored values (HU + 1024): air, a body, lungs that change
    along the series, a spine, noise that differs from slice to slice."""
    base, (lung_x, lung_y), noise = _shapes(rows, cols)
    r = 0.12 + 0.02 * np.sin(index / 7)
    lungs = lung_x / np.float32(r * r) + lung_y <= 1
    img = base.copy()
    img[lungs] = 1024 - 850
    dy, dx = (index * 37) % rows, (index * 61) % cols
    img += noise[dy : dy + rows, dx : dx + cols]
    return img


def ct_slice(index: int, *, variant: int = 0, rows: int = 512, cols: int = 512) -> Dataset:
    """Slice ``index`` of axial CT series ``variant``: 16-bit signed, slope 1, intercept
    -1024, 0.7 mm pixels, 1.25 mm apart, with fake PHI."""
    series = series_uid(variant)
    sop_uid = f"{series}.{index + 1}"
    ds = Dataset()
    ds.file_meta = _meta(CTImageStorage, sop_uid, ExplicitVRLittleEndian)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
    ds.Modality = "CT"
    ds.Manufacturer = "CONSULTD BENCH"
    ds.BodyPartExamined = "CHEST"
    ds.SeriesNumber = 3 + variant
    ds.InstanceNumber = index + 1
    ds.AcquisitionNumber = 1
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    z = -100.0 + 1.25 * index
    ds.ImagePositionPatient = [-179.3, -179.3, round(z, 2)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = round(z, 2)
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [0.7, 0.7]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.BurnedInAnnotation = "NO"
    for keyword, value in FAKE_PHI.items():
        setattr(ds, keyword, value)
    ds.PatientIdentityRemoved = "NO"
    block = ds.private_block(0x0009, "CONSULTD BENCH PRIVATE", create=True)
    block.add_new(0x10, "LO", "PRIVATE DOE JANE")
    request = Dataset()
    request.RequestedProcedureID = "REQ-ID-31337"
    request.ScheduledProcedureStepID = "SPS-777"
    request.RequestingPhysician = "NESTED^DOE JANE"
    ds.RequestAttributesSequence = Sequence([request])
    if index > 0:  # a reference to the previous slice: de-identification remaps it too
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = f"{series}.{index}"
        ds.ReferencedImageSequence = Sequence([ref])
    ds.PixelData = phantom(index, rows, cols).tobytes()
    ds.set_original_encoding(False, True)
    return ds


def write(ds: Dataset, path: Path) -> SliceFile:
    ds.save_as(path, enforce_file_format=True)
    return SliceFile(
        path,
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
        int(ds.InstanceNumber),
    )


def write_series(n: int, folder: Path, variant: int = 0) -> list[SliceFile]:
    """``n`` uncompressed slices of series ``variant`` as ``folder/ct0000.dcm``..."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write(ct_slice(i, variant=variant), folder / f"ct{i:04d}.dcm") for i in range(n)]


def compressed(ds: Dataset, ts: str) -> Dataset:
    """A losslessly compressed copy of ``ds`` (pydicom's encoders: RLE, JPEG-LS, J2K)."""
    out = copy.deepcopy(ds)
    plugin = "pylibjpeg" if ts == RLELossless else ""
    out.compress(UID(ts), encoding_plugin=plugin, generate_instance_uid=False)
    return out


def jpeg_baseline(ds: Dataset, quality: int = 90) -> Dataset:
    """An 8-bit secondary capture of ``ds`` windowed at 40/400, in JPEG baseline (OpenCV's
    encoder; pydicom has none): how a lossy export of the slice would arrive."""
    import cv2

    hu = ds.pixel_array.astype(np.float32) - 1024.0
    grey = np.clip((hu - (40.0 - 200.0)) / 400.0 * 255.0, 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    from pydicom.encaps import encapsulate

    sop = str(ds.SOPInstanceUID) + ".8"
    out = Dataset()
    out.file_meta = _meta(SecondaryCaptureImageStorage, sop, JPEGBaseline8Bit)
    out.SOPClassUID = SecondaryCaptureImageStorage
    out.SOPInstanceUID = sop
    out.StudyInstanceUID = ds.StudyInstanceUID
    out.SeriesInstanceUID = str(ds.SeriesInstanceUID) + ".8"
    out.InstanceNumber = ds.InstanceNumber
    out.Modality = "OT"
    out.ConversionType = "WSD"
    out.SamplesPerPixel = 1
    out.PhotometricInterpretation = "MONOCHROME2"
    out.Rows, out.Columns = ds.Rows, ds.Columns
    out.BitsAllocated = 8
    out.BitsStored = 8
    out.HighBit = 7
    out.PixelRepresentation = 0
    out.LossyImageCompression = "01"
    out.PixelData = encapsulate([jpg.tobytes()])
    out["PixelData"].VR = "OB"
    out.set_original_encoding(False, True)
    return out


def variant_of(ds: Dataset, name: str) -> Dataset:
    """``ds`` in the transfer syntax called ``name`` (a key of ``SYNTAXES``)."""
    if name == "uncompressed":
        return ds
    if name == "jpeg_baseline":
        return jpeg_baseline(ds)
    return compressed(ds, SYNTAXES[name])


def recompress_file(src: str, dst: str, ts: str, variant: int) -> SliceFile:
    """Read an uncompressed slice, give it series ``variant``'s UIDs, compress it to ``ts``
    and write it to ``dst`` (a plain function for a process pool)."""
    ds = dcmread(src)
    series = series_uid(variant)
    sop = f"{series}.{int(ds.InstanceNumber)}"
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    ds.SeriesNumber = 3 + variant
    if "ReferencedImageSequence" in ds:
        del ds.ReferencedImageSequence
    return write(compressed(ds, ts), Path(dst))
