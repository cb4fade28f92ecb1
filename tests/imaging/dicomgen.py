"""Build synthetic DICOM files for the imaging tests: a CT series with fake PHI, compressed
variants, and the hostile files pydicom 3.0.2 was measured to fail on.

Everything here is deterministic (fixed UIDs, seeded pixels) so two builds are byte-identical.
Other helpers' tests may import from here; only H1 edits it.
"""

from __future__ import annotations

import copy
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

ROOT = "1.2.826.0.1.3680043.10.1207"  # a test-only UID root; every generated UID is under it
CT_STUDY_UID = f"{ROOT}.1.1"
CT_SERIES_UID = f"{ROOT}.1.2"
CT_FRAME_OF_REFERENCE_UID = f"{ROOT}.1.3"

#: Fake PHI put in patient/visit attributes; none of these strings may survive de-id.
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
#: PHI put in places a top-level-only tool misses: a private block and nested sequences.
NESTED_PHI = ("PRIVATE DOE JANE", "NESTED DOE JANE", "REQ-ID-31337")


def _meta(sop_class: str, sop_instance: str, ts: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(ts)
    return meta


def phantom(rows: int = 512, cols: int = 512, seed: int = 0, index: int = 0) -> np.ndarray:
    """An int16 CT-like slice in stored values (HU + 1024): air, a body, lungs, a spine, noise."""
    rng = np.random.default_rng(seed + index)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, cx = rows / 2, cols / 2
    hu = np.full((rows, cols), -1000.0, dtype=np.float32)
    body = ((x - cx) / (0.42 * cols)) ** 2 + ((y - cy) / (0.33 * rows)) ** 2 <= 1
    hu[body] = 40.0
    for side in (-1, 1):  # lungs that shrink along the series
        r = 0.12 + 0.02 * np.sin(index / 7)
        lung = ((x - cx - side * 0.18 * cols) / (r * cols)) ** 2 + (
            (y - cy) / (0.2 * rows)
        ) ** 2 <= 1
        hu[lung] = -850.0
    spine = (x - cx) ** 2 + (y - cy - 0.22 * rows) ** 2 <= (0.04 * cols) ** 2
    hu[spine] = 700.0
    hu += rng.normal(0, 12, size=hu.shape).astype(np.float32)
    return np.clip(np.round(hu + 1024), -32768, 32767).astype(np.int16)


def ct_slice(
    index: int,
    *,
    rows: int = 512,
    cols: int = 512,
    study_uid: str = CT_STUDY_UID,
    series_uid: str = CT_SERIES_UID,
    phi: bool = True,
    seed: int = 0,
) -> Dataset:
    """Slice ``index`` of an axial CT series: 16-bit signed, slope 1, intercept -1024, 0.7 mm
    pixels, 1.25 mm apart, with fake PHI (top level, private block, nested) when ``phi``."""
    sop_uid = f"{series_uid}.{index + 1}"
    ds = Dataset()
    ds.file_meta = _meta(CTImageStorage, sop_uid, ExplicitVRLittleEndian)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = CT_FRAME_OF_REFERENCE_UID
    ds.Modality = "CT"
    ds.Manufacturer = "CONSULTD TEST"
    ds.BodyPartExamined = "CHEST"
    ds.SeriesNumber = 3
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
    if phi:
        for keyword, value in FAKE_PHI.items():
            setattr(ds, keyword, value)
        ds.PatientIdentityRemoved = "NO"
        block = ds.private_block(0x0009, "CONSULTD TEST PRIVATE", create=True)
        block.add_new(0x10, "LO", NESTED_PHI[0])
        request = Dataset()
        request.RequestedProcedureID = NESTED_PHI[2]
        request.ScheduledProcedureStepID = "SPS-777"
        request.RequestingPhysician = "NESTED^DOE JANE"
        ds.RequestAttributesSequence = Sequence([request])
        code = Dataset()  # a sequence the profile keeps, holding an attribute it removes
        code.CodeValue = "CTCHEST"
        code.CodingSchemeDesignator = "99LOCAL"
        code.CodeMeaning = "CT chest"
        code.PersonName = NESTED_PHI[1]
        ds.ProcedureCodeSequence = Sequence([code])
        if index > 0:  # links to the previous slice, to check references are remapped too
            ref = Dataset()
            ref.ReferencedSOPClassUID = CTImageStorage
            ref.ReferencedSOPInstanceUID = f"{series_uid}.{index}"
            ds.ReferencedImageSequence = Sequence([ref])
    ds.PixelData = phantom(rows, cols, seed, index).tobytes()
    ds.set_original_encoding(False, True)
    return ds


def implicit_vr(ds: Dataset) -> Dataset:
    """A copy of a native ``ds`` to be written as Implicit VR Little Endian."""
    out = copy.deepcopy(ds)
    out.file_meta = _meta(ds.SOPClassUID, ds.SOPInstanceUID, ImplicitVRLittleEndian)
    out.set_original_encoding(True, True)
    return out


def ct_series(n: int, **kwargs: object) -> list[Dataset]:
    return [ct_slice(i, **kwargs) for i in range(n)]  # type: ignore[arg-type]


def write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(datasets: Iterable[Dataset], folder: Path, prefix: str = "ct") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write(ds, folder / f"{prefix}{i:04d}.dcm") for i, ds in enumerate(datasets)]


#: Encoders pydicom finds here (pylibjpeg-rle/openjpeg, pyjpegls); JPEG baseline has none in
#: pydicom, so :func:`jpeg_baseline` builds it with OpenCV.
COMPRESSED = {
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
}


def compressed(ds: Dataset, ts: str) -> Dataset:
    """A compressed copy of ``ds`` (``Dataset.compress``, lossless)."""
    out = copy.deepcopy(ds)
    out.file_meta = _meta(ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian)
    out.compress(UID(ts), encoding_plugin="pylibjpeg" if ts == RLELossless else "")
    return out


def jpeg_baseline(
    rows: int = 64, cols: int = 64, *, claim: tuple[int, int] | None = None
) -> Dataset:
    """An 8-bit secondary capture in JPEG Baseline (OpenCV encoder); ``claim`` overrides
    Rows/Columns in the header (to build a codestream/header mismatch)."""
    import cv2

    img = (np.add.outer(np.arange(rows), np.arange(cols)) % 256).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    sop = f"{ROOT}.2.1"
    ds = Dataset()
    ds.file_meta = _meta(SecondaryCaptureImageStorage, sop, JPEGBaseline8Bit)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = f"{ROOT}.2.2"
    ds.SeriesInstanceUID = f"{ROOT}.2.3"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = claim or (rows, cols)
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate_frames([jpg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.set_original_encoding(False, True)
    return ds


def encapsulate_frames(frames: list[bytes]) -> bytes:
    """Items (empty Basic Offset Table, one fragment per frame), no sequence delimiter."""
    from pydicom.encaps import encapsulate

    return encapsulate(frames)


SEQ_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def encapsulated_element(frames: list[bytes]) -> bytes:
    """A whole encapsulated Pixel Data element: header, items, sequence delimiter."""
    head = struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0\xff\xff\xff\xff"
    return head + encapsulate_frames(frames) + SEQ_DELIMITER


# --------------------------------------------------------------------------------------------
# Raw byte builders (for files pydicom would refuse to write)


def element(tag: int, vr: str, value: bytes, *, length: int | None = None) -> bytes:
    """One explicit VR little endian element; ``length`` overrides the encoded length."""
    n = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}:
        return head + b"\0\0" + struct.pack("<I", n) + value
    return head + struct.pack("<H", n) + value


def _text(value: str) -> bytes:
    raw = value.encode()
    return raw + (b"\0" if len(raw) % 2 else b"")


def _uid(value: str) -> bytes:
    return _text(value)


def part10(ts: str, body: bytes, *, sop_instance: str = f"{ROOT}.9.1") -> bytes:
    """Preamble, 'DICM', a minimal file meta group for ``ts``, then ``body`` as given."""
    meta = (
        element(0x00020001, "OB", b"\0\1")
        + element(0x00020002, "UI", _uid(SecondaryCaptureImageStorage))
        + element(0x00020003, "UI", _uid(sop_instance))
        + element(0x00020010, "UI", _uid(ts))
        + element(0x00020012, "UI", _uid(f"{ROOT}.0"))
    )
    group_length = element(0x00020000, "UL", struct.pack("<I", len(meta)))
    return b"\0" * 128 + b"DICM" + group_length + meta + body


def ids_body(sop_instance: str = f"{ROOT}.9.1") -> bytes:
    """SOP and study/series identity elements (explicit VR LE), the start of most bodies."""
    return (
        element(0x00080016, "UI", _uid(SecondaryCaptureImageStorage))
        + element(0x00080018, "UI", _uid(sop_instance))
        + element(0x00080060, "CS", _text("OT"))
        + element(0x0020000D, "UI", _uid(f"{ROOT}.9.2"))
        + element(0x0020000E, "UI", _uid(f"{ROOT}.9.3"))
    )


def image_body(rows: int, cols: int, bits: int = 8, samples: int = 1, frames: int = 1) -> bytes:
    """Image pixel module elements, in tag order after the identity elements."""
    body = element(0x00280002, "US", struct.pack("<H", samples))
    body += element(0x00280004, "CS", _text("MONOCHROME2" if samples == 1 else "RGB"))
    if frames != 1:
        body += element(0x00280008, "IS", _text(str(frames)))
    body += element(0x00280010, "US", struct.pack("<H", rows))
    body += element(0x00280011, "US", struct.pack("<H", cols))
    body += element(0x00280100, "US", struct.pack("<H", bits))
    body += element(0x00280101, "US", struct.pack("<H", bits))
    body += element(0x00280102, "US", struct.pack("<H", bits - 1))
    body += element(0x00280103, "US", struct.pack("<H", 0))
    return body


# --------------------------------------------------------------------------------------------
# The hostile files (each the shape pydicom 3.0.2 was measured to fail on)


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    code: str  # the refusal code ingest must give
    note: str


def huge_length() -> bytes:
    """~300 bytes whose one element claims 0xFFFFFFF0 bytes: pydicom reads it as one
    allocation (MemoryError under a memory limit)."""
    body = ids_body() + element(0x00100010, "UT", b"", length=0xFFFFFFF0) + b"DOE^JANE" * 4
    return part10(ExplicitVRLittleEndian, body)


def deep_sequence(depth: int = 400) -> bytes:
    """A sequence nested ``depth`` deep (undefined lengths): pydicom recurses per level and
    raises RecursionError."""
    head = b""
    tail = b""
    seq_tag = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + b"\xff\xff\xff\xff"
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    for _ in range(depth):
        head += seq_tag + item
        tail = item_end + seq_end + tail
    return part10(ExplicitVRLittleEndian, ids_body() + head + tail)


def _rle_frame(rows: int, cols: int) -> bytes:
    """One RLE frame with a single segment of ``rows*cols`` zero bytes (replicate runs)."""
    n = rows * cols
    runs = b""
    while n > 0:
        k = min(n, 128)
        runs += bytes([(257 - k) & 0xFF, 0])
        n -= k
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    return header + runs


def rle_huge(rows: int = 65535, cols: int = 65535) -> bytes:
    """RLE Lossless whose header claims ``rows`` x ``cols`` (pydicom would allocate 4 GiB at
    8 bits before decoding). The one segment is small: the claim is in Rows/Columns."""
    pixel = encapsulated_element([_rle_frame(64, 64)])
    return part10(RLELossless, ids_body() + image_body(rows, cols) + pixel)


def codestream(ts: str, rows: int = 64, cols: int = 64) -> bytes:
    """One real frame of an 8-bit gradient compressed with ``ts`` by pydicom's encoders."""
    from pydicom.encaps import generate_frames

    ds = jpeg_baseline(rows, cols)  # reuse its metadata; replace pixels with native, compress
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    img = (np.add.outer(np.arange(rows), np.arange(cols)) % 256).astype(np.uint8)
    ds.PixelData = img.tobytes()
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "00"
    ds.compress(UID(ts), encoding_plugin="pylibjpeg" if ts == RLELossless else "")
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def j2k_codestream(rows: int = 64, cols: int = 64) -> bytes:
    return codestream(JPEG2000Lossless, rows, cols)


def encapsulated_file(ts: str, header: tuple[int, int], frames: list[bytes]) -> bytes:
    """An 8-bit single-sample image in ``ts`` whose header says ``header`` (rows, cols)."""
    body = image_body(*header, frames=len(frames)) + encapsulated_element(frames)
    return part10(ts, ids_body() + body)


def patch_sof(stream: bytes, marker: bytes, rows: int, cols: int) -> bytes:
    """Rewrite the Y/X of a JPEG-family frame header (``marker`` e.g. b"\\xff\\xf7")."""
    at = stream.index(marker)
    out = bytearray(stream)
    struct.pack_into(">HH", out, at + 5, rows, cols)
    return bytes(out)


def patch_siz(codestream: bytes, rows: int, cols: int) -> bytes:
    """Rewrite a J2K SIZ marker to claim ``rows`` x ``cols`` (one tile of that size)."""
    at = codestream.index(b"\xff\x51")
    siz = bytearray(codestream)
    # SIZ: marker(2) Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4) XTsiz(4) YTsiz(4) ...
    struct.pack_into(">IIIIII", siz, at + 6, cols, rows, 0, 0, cols, rows)
    return bytes(siz)


def j2k_file(header: tuple[int, int], siz: tuple[int, int] | None = None) -> bytes:
    """JPEG 2000 file whose header says ``header`` (rows, cols) and whose SIZ says ``siz``."""
    stream = j2k_codestream()
    if siz is not None:
        stream = patch_siz(stream, *siz)
    return encapsulated_file(JPEG2000Lossless, header, [stream])


def jpegls_mismatch() -> bytes:
    """JPEG-LS whose SOF55 says 4096x4096 under a 64x64 header."""
    stream = patch_sof(codestream(JPEGLSLossless), b"\xff\xf7", 4096, 4096)
    return encapsulated_file(JPEGLSLossless, (64, 64), [stream])


def rle_segments_mismatch() -> bytes:
    """RLE whose segment table holds 3 segments (RGB) under an 8-bit monochrome header."""
    stream = bytearray(codestream(RLELossless))
    struct.pack_into("<I", stream, 0, 3)
    struct.pack_into("<II", stream, 8, 70, 80)
    return encapsulated_file(RLELossless, (64, 64), [bytes(stream)])


def deep_un_sequence(depth: int = 400) -> bytes:
    """Content Sequence encoded as UN with defined lengths, nested ``depth`` deep: pydicom
    converts UN to the dictionary's SQ lazily, so a walk of the dataset recurses per level."""
    inner = b""
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
        inner = struct.pack("<HHI", 0x0040, 0xA730, len(item)) + item  # implicit VR inside UN
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
    body = ids_body() + element(0x0040A730, "UN", item)
    return part10(
        ExplicitVRLittleEndian, body + image_body(8, 8) + element(0x7FE00010, "OB", bytes(64))
    )


def deflated_bomb(compressed_bytes: int = 2_000_000) -> bytes:
    """Deflated Explicit VR LE whose body inflates ~1000x (2 MB -> ~2 GB): pydicom inflates
    the whole body in memory before reading any element, stop_before_pixels or not.

    Built in milliseconds: one fully flushed deflate block of 1 MiB of zeros is
    self-contained, so copies of it concatenate into a valid stream."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(1 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)
    copies = max(1, compressed_bytes // len(block))
    body = block * copies + comp.flush(zlib.Z_FINISH)
    return part10(DeflatedExplicitVRLittleEndian, body)


def many_elements(n: int = 400_000) -> bytes:
    """``n`` tiny elements (8 bytes each, private groups): ~2 s of pydicom CPU to parse."""
    parts = [ids_body()]
    per_group = 0xFF00
    group = 0x0009
    done = 0
    while done < n:
        k = min(per_group, n - done)
        parts.append(b"".join(struct.pack("<HH", group, 0x0100 + e) + b"SH\0\0" for e in range(k)))
        done += k
        group += 2
    return part10(ExplicitVRLittleEndian, b"".join(parts))


def big_endian() -> bytes:
    """Explicit VR Big Endian (retired): refused by the transfer syntax allow-list."""
    body = struct.pack(">HH", 0x0008, 0x0016) + b"UI" + struct.pack(">H", 2) + b"1\0"
    return part10(ExplicitVRBigEndian, body)


def truncated_pixels() -> bytes:
    """Native 64x64 8-bit image whose Pixel Data stops half way."""
    pixel = element(0x7FE00010, "OB", bytes(64 * 64))[: -64 * 32]
    return part10(ExplicitVRLittleEndian, ids_body() + image_body(64, 64) + pixel)


def no_preamble() -> bytes:
    """A bare dataset without the Part 10 preamble and 'DICM'."""
    return ids_body() + image_body(8, 8) + element(0x7FE00010, "OB", bytes(64))


def jpeg_mismatch() -> bytes:
    """JPEG Baseline whose SOF says 64x64 while the header claims 4096x4096."""
    from io import BytesIO

    ds = jpeg_baseline(64, 64, claim=(4096, 4096))
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def path_uid() -> bytes:
    """A Study Instance UID that is a path, not a UID."""
    body = (
        element(0x00080016, "UI", _uid(SecondaryCaptureImageStorage))
        + element(0x00080018, "UI", _uid(f"{ROOT}.9.1"))
        + element(0x0020000D, "UI", _text("../../etc/passwd"))
        + element(0x0020000E, "UI", _uid(f"{ROOT}.9.3"))
        + image_body(8, 8)
        + element(0x7FE00010, "OB", bytes(64))
    )
    return part10(ExplicitVRLittleEndian, body)


def missing_study() -> bytes:
    body = (
        element(0x00080016, "UI", _uid(SecondaryCaptureImageStorage))
        + element(0x00080018, "UI", _uid(f"{ROOT}.9.1"))
        + element(0x0020000E, "UI", _uid(f"{ROOT}.9.3"))
        + image_body(8, 8)
        + element(0x7FE00010, "OB", bytes(64))
    )
    return part10(ExplicitVRLittleEndian, body)


def hostile_files() -> list[Hostile]:
    """Every hostile case with the refusal code ingest must give."""
    return [
        Hostile("huge_length", huge_length(), "malformed", "0xFFFFFFF0 element length"),
        Hostile("deep_sequence", deep_sequence(), "too_deep", "sequence nested 400 deep"),
        Hostile("rle_huge", rle_huge(), "pixel_budget", "RLE header claims 65535²"),
        Hostile("j2k_huge", j2k_file((65535, 65535), (65535, 65535)), "pixel_budget", "J2K 65535²"),
        Hostile(
            "j2k_siz_mismatch",
            j2k_file((64, 64), (65535, 65535)),
            "codestream_mismatch",
            "J2K SIZ claims 65535² under a 64² header",
        ),
        Hostile("deflated_bomb", deflated_bomb(), "transfer_syntax", "2 MB deflate → 2 GB"),
        Hostile("many_elements", many_elements(), "too_many_elements", "400 k tiny elements"),
        Hostile("big_endian", big_endian(), "transfer_syntax", "explicit VR big endian"),
        Hostile("truncated_pixels", truncated_pixels(), "pixel_data_truncated", "half a frame"),
        Hostile("no_preamble", no_preamble(), "not_dicom", "no preamble/DICM"),
        Hostile("jpeg_mismatch", jpeg_mismatch(), "codestream_mismatch", "SOF 64² vs 4096²"),
        Hostile("path_uid", path_uid(), "bad_uid", "a path as Study Instance UID"),
        Hostile("missing_study", missing_study(), "missing_attribute", "no Study Instance UID"),
        Hostile("deep_un_sequence", deep_un_sequence(), "too_deep", "UN sequence 400 deep"),
        Hostile("jpegls_mismatch", jpegls_mismatch(), "codestream_mismatch", "SOF55 4096²"),
        Hostile("rle_segments", rle_segments_mismatch(), "codestream_mismatch", "3 RLE segments"),
    ]


__all__ = [
    "COMPRESSED",
    "CT_SERIES_UID",
    "CT_STUDY_UID",
    "FAKE_PHI",
    "NESTED_PHI",
    "ROOT",
    "Hostile",
    "compressed",
    "ct_series",
    "ct_slice",
    "hostile_files",
    "jpeg_baseline",
    "phantom",
    "write",
    "write_series",
]
