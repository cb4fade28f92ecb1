"""Ingest of well-formed files: synthetic CT (native and compressed), the real files shipped
with pydicom, pydicom-data and deid-data. What is stored is a valid Part 10 file whose
Pixel Data is the upload's, byte for byte; what is returned describes it."""

from __future__ import annotations

import hashlib
import os
import pickle
import statistics
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import deid_data  # type: ignore[import-untyped]
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from consultd.imaging.ingest import (
    PIXEL_DATA_URI,
    REFUSAL_CODES,
    Ingested,
    IngestPolicy,
    Refused,
    ingest_file,
)
from consultd.imaging.limits import ImagingLimits
from tests.imaging import dicomgen

SECRET = b"room-secret-for-tests"
POLICY = IngestPolicy(secret=SECRET)
DEID_DATA = Path(deid_data.__file__).parent / "data"


def read(path: Path | str, **kwargs: object) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, **kwargs)  # type: ignore[arg-type]


def ingest(src: Path | str, dst: Path, policy: IngestPolicy = POLICY) -> Ingested:
    result = ingest_file(str(src), str(dst), policy)
    assert isinstance(result, Ingested), result
    return result


def check_stored(result: Ingested, src: Path | str, dst: Path) -> Dataset:
    """The stored file against the result and the upload."""
    data = dst.read_bytes()
    assert data[:128] == bytes(128) and data[128:132] == b"DICM"
    assert result.bytes == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    out = read(dst)
    assert out.file_meta.TransferSyntaxUID == result.transfer_syntax
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID == result.sop_instance_uid
    assert out.StudyInstanceUID == result.study_uid
    assert out.SeriesInstanceUID == result.series_uid
    assert max(out.keys()) == 0x7FE00010  # nothing after Pixel Data
    original = read(src)
    assert out.PixelData[: len(original.PixelData)] == original.PixelData
    # The frame index points at each frame's bytes.
    assert len(result.frame_spans) == result.frames
    spans_bytes = [b"".join(data[o : o + n] for o, n in spans) for spans in result.frame_spans]
    if out.file_meta.TransferSyntaxUID.is_encapsulated:
        assert spans_bytes == list(generate_frames(out.PixelData, number_of_frames=result.frames))
    elif result.bits_allocated >= 8:
        frame_len = len(spans_bytes[0])
        assert b"".join(spans_bytes) == out.PixelData[: frame_len * result.frames]
    assert "InlineBinary" not in str(result.dicom_json.get("7FE00010"))
    assert result.dicom_json["7FE00010"]["BulkDataURI"] == PIXEL_DATA_URI
    assert pickle.loads(pickle.dumps(result)) == result
    return out


# -- synthetic CT ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ct")
    dicomgen.write_series(dicomgen.ct_series(4), folder)
    return folder


def test_ct_slice_is_described_and_stored(ct_dir: Path, tmp_path: Path) -> None:
    src = ct_dir / "ct0002.dcm"
    result = ingest(src, tmp_path / "out.dcm")
    out = check_stored(result, src, tmp_path / "out.dcm")
    assert (result.rows, result.columns, result.frames, result.samples_per_pixel) == (
        512,
        512,
        1,
        1,
    )
    assert (result.bits_allocated, result.bits_stored, result.pixel_representation) == (16, 16, 1)
    assert result.modality == "CT" and result.photometric == "MONOCHROME2"
    assert result.rescale_slope == 1.0 and result.rescale_intercept == -1024.0
    assert result.pixel_spacing == (0.7, 0.7) and result.slice_thickness == 1.25
    assert result.image_position == (-179.3, -179.3, -97.5)
    assert result.image_orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert result.window_center == (40.0, -600.0) and result.window_width == (400.0, 1500.0)
    assert result.instance_number == 3 and result.series_number == 3
    assert not result.burned_in and not result.lossy and result.deidentified
    assert result.transfer_syntax == "1.2.840.10008.1.2.1"
    assert np.array_equal(out.pixel_array, dicomgen.phantom(512, 512, 0, 2))
    assert out.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize("codec", sorted(dicomgen.COMPRESSED))
def test_compressed_ct_keeps_its_codestream(codec: str, tmp_path: Path) -> None:
    src = dicomgen.write(
        dicomgen.compressed(dicomgen.ct_slice(5), dicomgen.COMPRESSED[codec]), tmp_path / "in.dcm"
    )
    result = ingest(src, tmp_path / "out.dcm")
    out = check_stored(result, src, tmp_path / "out.dcm")
    assert result.transfer_syntax == dicomgen.COMPRESSED[codec]
    assert np.array_equal(out.pixel_array, dicomgen.phantom(512, 512, 0, 5))


def test_implicit_vr_and_jpeg_baseline(tmp_path: Path) -> None:
    src = dicomgen.write(dicomgen.implicit_vr(dicomgen.ct_slice(1)), tmp_path / "implicit.dcm")
    result = ingest(src, tmp_path / "out.dcm")
    check_stored(result, src, tmp_path / "out.dcm")
    assert result.transfer_syntax == "1.2.840.10008.1.2"

    src = dicomgen.write(dicomgen.jpeg_baseline(), tmp_path / "jpeg.dcm")
    result = ingest(src, tmp_path / "out2.dcm")
    check_stored(result, src, tmp_path / "out2.dcm")
    assert result.lossy
    assert result.burned_in and "burned_in_annotation_possible" in result.warnings


def test_keep_identity_stores_the_original_attributes(ct_dir: Path, tmp_path: Path) -> None:
    src = ct_dir / "ct0001.dcm"
    result = ingest(src, tmp_path / "out.dcm", IngestPolicy(secret=SECRET, keep_identity=True))
    out = check_stored(result, src, tmp_path / "out.dcm")
    original = read(src)
    assert not result.deidentified
    assert result.sop_instance_uid == original.SOPInstanceUID
    assert out.PatientName == dicomgen.FAKE_PHI["PatientName"]
    assert out.private_block(0x0009, "CONSULTD TEST PRIVATE")[0x10].value == dicomgen.NESTED_PHI[0]


def test_file_size_cap(ct_dir: Path, tmp_path: Path) -> None:
    policy = IngestPolicy(secret=SECRET, limits=ImagingLimits(max_file_bytes=100_000))
    result = ingest_file(str(ct_dir / "ct0000.dcm"), str(tmp_path / "out.dcm"), policy)
    assert isinstance(result, Refused) and result.code == "too_large"
    assert not (tmp_path / "out.dcm").exists()


def test_cpu_per_ct_slice_with_deid_is_bounded(ct_dir: Path, tmp_path: Path) -> None:
    """A gross bound only: the issue's 10 ms of CPU per 512x512 CT slice, de-id included,
    is the bench's (``ingest_cpu_ms_per_instance``: 8-11 ms with the server and its workers),
    since CPU time per call grows with what else a shared machine runs. This in-process
    figure is about 4 ms; 50 ms still catches a per-element Python loop or a pixel decode
    slipping into ingest."""
    sources = sorted(ct_dir.glob("*.dcm"))
    samples = []
    for i in range(40):
        t = time.process_time()
        ingest(sources[i % len(sources)], tmp_path / f"out{i}.dcm")
        samples.append(time.process_time() - t)
    median_ms = statistics.median(samples[5:]) * 1000
    print(f"ingest CPU per 512x512 CT slice: median {median_ms:.2f} ms")
    assert median_ms <= 50.0


# -- real files ------------------------------------------------------------------------------


def real_files() -> Iterator[str]:
    yield from sorted(f for f in get_testdata_files() if os.path.isfile(f))
    yield from sorted(str(p) for p in DEID_DATA.rglob("*.dcm"))


REAL = list(real_files())
MUST_INGEST = {
    # One or more per transfer syntax family, multi-frame, 1-bit, palette, YBR.
    "CT_small.dcm": "1.2.840.10008.1.2.1",
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "JPEG-LL.dcm": "1.2.840.10008.1.2.4.70",
    "JPGExtended.dcm": "1.2.840.10008.1.2.4.51",
    "SC_rgb_jpeg_dcmtk.dcm": "1.2.840.10008.1.2.4.50",
    "emri_small_jpeg_2k_lossless.dcm": "1.2.840.10008.1.2.4.90",
    "color3d_jpeg_baseline.dcm": "1.2.840.10008.1.2.4.50",
    "liver.dcm": "1.2.840.10008.1.2.1",
    "OBXXXX1A_rle_2frame.dcm": "1.2.840.10008.1.2.5",
    "SC_ybr_full_422_uncompressed.dcm": "1.2.840.10008.1.2.1",
    "GREYSCALE_IMAGE.dcm": "1.2.840.10008.1.2.1",  # deid-data: ultrasound with burned-in PHI
    "RGB_IMAGE.dcm": "1.2.840.10008.1.2.1",
    "ultrasound-multiframe.dcm": "1.2.840.10008.1.2.1",
    "ctbrain1.dcm": "1.2.840.10008.1.2.4.50",
}


def test_the_must_ingest_files_are_there() -> None:
    names = {os.path.basename(f) for f in REAL}
    assert set(MUST_INGEST) <= names
    assert len(REAL) > 200


@pytest.mark.parametrize("path", REAL, ids=lambda p: os.path.relpath(p, os.path.dirname(p)))
def test_real_file_is_ingested_or_refused_with_a_reason(path: str, tmp_path: Path) -> None:
    dst = tmp_path / "out.dcm"
    result = ingest_file(path, str(dst), POLICY)
    name = os.path.basename(path)
    if isinstance(result, Refused):
        assert result.code in REFUSAL_CODES and result.reason
        assert name not in MUST_INGEST, result
        assert not dst.exists()
        return
    if name in MUST_INGEST:
        assert result.transfer_syntax == MUST_INGEST[name]
    check_stored(result, path, dst)
    flag = str(read(path, stop_before_pixels=True).get("BurnedInAnnotation", "")).upper()
    if flag == "YES" or (flag != "NO" and result.modality == "US"):
        assert result.burned_in


def test_an_unreadable_upload_is_refused(tmp_path: Path) -> None:
    result = ingest_file(str(tmp_path), str(tmp_path / "out.dcm"), POLICY)
    assert isinstance(result, Refused) and result.code == "not_dicom"
    result = ingest_file(str(tmp_path / "missing.dcm"), str(tmp_path / "out.dcm"), POLICY)
    assert isinstance(result, Refused) and result.code == "not_dicom"


def test_a_dicomdir_is_named_as_such(tmp_path: Path) -> None:
    path = get_testdata_file("DICOMDIR")
    assert isinstance(path, str)
    result = ingest_file(path, str(tmp_path / "out.dcm"), POLICY)
    assert isinstance(result, Refused) and result.code == "dicomdir"
