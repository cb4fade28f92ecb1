"""consultd.imaging.pixels: one frame decoded to stored values, for every supported syntax."""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, get_frame
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from consultd.imaging import pixels as px
from consultd.imaging.pixels import PixelDataError, read_frame, read_info, read_raw_frame
from consultd.imaging.render import RenderParams, render_pixels
from tests.imaging.reference import (
    colour_image,
    ct_dataset,
    ct_pixels,
    jpeg_baseline_dataset,
    save,
)


def data_file(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:  # pydicom-data missing: the file list below names what is expected
        pytest.skip(f"{name} not available offline")
    return str(path)


def pydicom_raw(path: str, index: int) -> npt.NDArray[np.generic]:
    """pydicom's own decode of one frame with no colour conversion: the comparison baseline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pixel_array(path, index=index, raw=True)


# Every transfer syntax and photometric interpretation read_frame supports, from the files that
# ship with pydicom and pydicom-data. (file, stored photometric, expected decoded photometric)
NON_BASELINE = [
    ("CT_small.dcm", "MONOCHROME2", "MONOCHROME2"),  # explicit LE, signed 16
    ("MR_small_implicit.dcm", "MONOCHROME2", "MONOCHROME2"),  # implicit LE
    ("MR_small_expb.dcm", "MONOCHROME2", "MONOCHROME2"),  # explicit big endian
    ("MR_small_RLE.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("MR_small_jpeg_ls_lossless.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("MR_small_jp2klossless.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("emri_small.dcm", "MONOCHROME2", "MONOCHROME2"),  # 10 frames, 12 bits stored
    ("emri_small_RLE.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("emri_small_jpeg_ls_lossless.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("emri_small_jpeg_2k_lossless.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("JPEGLSNearLossless_16.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("JPEG2000.dcm", "MONOCHROME2", "MONOCHROME2"),  # J2K lossy, signed
    ("693_J2KI.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("JPEG-LL.dcm", "MONOCHROME2", "MONOCHROME2"),  # JPEG lossless SV1, signed 16
    ("JPGExtended.dcm", "MONOCHROME2", "MONOCHROME2"),  # JPEG extended 12-bit
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("RG3_UNCR.dcm", "MONOCHROME1", "MONOCHROME1"),
    ("RG3_J2KR.dcm", "MONOCHROME1", "MONOCHROME1"),
    ("liver.dcm", "MONOCHROME2", "MONOCHROME2"),  # 1 bit allocated, 3 frames
    ("rtdose.dcm", "MONOCHROME2", "MONOCHROME2"),  # 32-bit, 15 frames
    ("rtdose_rle.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("eCT_Supplemental.dcm", "MONOCHROME2", "MONOCHROME2"),  # enhanced, 2 frames
    ("mlut_18.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("vlut_04.dcm", "MONOCHROME2", "MONOCHROME2"),
    ("SC_rgb.dcm", "RGB", "RGB"),
    ("SC_rgb_2frame.dcm", "RGB", "RGB"),
    ("SC_rgb_rle_2frame.dcm", "RGB", "RGB"),
    ("SC_rgb_16bit_2frame.dcm", "RGB", "RGB"),
    ("SC_rgb_32bit.dcm", "RGB", "RGB"),
    ("SC_rgb_expb_16bit.dcm", "RGB", "RGB"),
    ("color-pl.dcm", "RGB", "RGB"),  # planar configuration 1
    ("SC_rgb_gdcm_KY.dcm", "RGB", "RGB"),  # J2K lossy RGB
    ("SC_rgb_jls_lossy_line.dcm", "RGB", "RGB"),
    ("SC_rgb_jpeg_gdcm.dcm", "RGB", "RGB"),  # JPEG lossless RGB
    ("SC_jpeg_no_color_transform.dcm", "RGB", "RGB"),  # baseline, no transform: pylibjpeg
    ("SC_ybr_full_uncompressed.dcm", "YBR_FULL", "YBR_FULL"),
    ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422", "YBR_FULL"),  # upsampled
    ("US1_J2KR.dcm", "YBR_RCT", "RGB"),  # openjpeg undoes the RCT
    ("US1_J2KI.dcm", "YBR_ICT", "RGB"),
    ("GDCMJ2K_TextGBR.dcm", "YBR_RCT", "RGB"),
    ("OBXXXX1A.dcm", "PALETTE COLOR", "PALETTE COLOR"),
    ("OBXXXX1A_rle_2frame.dcm", "PALETTE COLOR", "PALETTE COLOR"),
    ("gdcm-US-ALOKA-16.dcm", "PALETTE COLOR", "PALETTE COLOR"),  # 16-bit, segmented LUT
]

JPEG_BASELINE_YBR = [
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # YBR_FULL_422
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "color3d_jpeg_baseline.dcm",  # 120 frames, YBR_FULL_422
    "examples_ybr_color.dcm",
]


def frames_to_check(path: str) -> list[int]:
    n = read_info(path).number_of_frames
    return sorted({0, n - 1})


@pytest.mark.parametrize(("name", "stored", "decoded"), NON_BASELINE)
def test_frame_matches_pydicom(name: str, stored: str, decoded: str) -> None:
    path = data_file(name)
    for index in frames_to_check(path):
        pixels, info = read_frame(path, index)
        expected = pydicom_raw(path, index)
        assert pixels.dtype.isnative and pixels.flags.c_contiguous
        assert pixels.dtype == expected.dtype.newbyteorder("=")
        np.testing.assert_array_equal(pixels, expected)
        assert (info.stored_photometric, info.photometric) == (stored, decoded)
        assert info.frame == index
        assert info.bits_allocated == pixels.dtype.itemsize * 8
        assert pixels.shape[:2] == (info.rows, info.columns)


@pytest.mark.parametrize("name", JPEG_BASELINE_YBR)
def test_jpeg_baseline_ybr_both_decoders(name: str) -> None:
    path = data_file(name)
    index = frames_to_check(path)[-1]
    slow, slow_info = read_frame(path, index, fast_jpeg=False)
    np.testing.assert_array_equal(slow, pydicom_raw(path, index))
    assert slow_info.photometric == "YBR_FULL"  # stored YBR, left as YBR (422 upsampled)
    fast, fast_info = read_frame(path, index)
    assert fast_info.photometric == "RGB"  # libjpeg-turbo applied the JFIF (= YBR_FULL) transform
    a = render_pixels(fast, fast_info, RenderParams()).astype(int)
    b = render_pixels(slow, slow_info, RenderParams()).astype(int)
    # two IDCTs and chroma upsamplers: equal but for rounding and edge interpolation
    assert np.abs(a - b).mean() < 0.5
    assert np.abs(a - b).max() <= 16


def test_jpeg_baseline_rgb_is_left_to_pylibjpeg() -> None:
    path = data_file("SC_jpeg_no_color_transform.dcm")
    pixels, info = read_frame(path)
    np.testing.assert_array_equal(pixels, pydicom_raw(path, 0))
    assert info.photometric == "RGB"


# --- synthetic 512² CT: every codec we can write here ----------------------------------------


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("ct")
    files = {"native": save(ct_dataset(), tmp / "native.dcm")}
    variants: list[tuple[str, str, dict[str, Any]]] = [
        (RLELossless, "rle", {}),
        (JPEGLSLossless, "jls", {}),
        (JPEGLSNearLossless, "jls_near", {"jls_error": 2}),
        (JPEG2000Lossless, "j2k", {}),
        (JPEG2000, "j2k_lossy", {"j2k_cr": [15]}),
    ]
    for uid, name, kw in variants:
        ds = ct_dataset()
        ds.compress(uid, **kw)
        files[name] = save(ds, tmp / f"{name}.dcm")
    stack = ct_dataset(frames=3)
    files["multi_native"] = save(stack, tmp / "multi_native.dcm")
    stack.compress(RLELossless)
    files["multi_rle"] = save(stack, tmp / "multi_rle.dcm")
    # JPEG lossless process 14 (selection value 1 is a special case, so an SV1 stream is a
    # valid process 14 stream): relabel a copy of JPEG-LL.dcm
    src = get_testdata_file("JPEG-LL.dcm")
    if src is not None:
        ds = dcmread(src)
        ds.file_meta.TransferSyntaxUID = JPEGLossless
        files["jpeg_p14"] = save(ds, tmp / "p14.dcm")
    grey = np.clip((ct_pixels().astype(np.int32) - 624) // 4, 0, 255).astype(np.uint8)
    files["baseline_grey"] = save(jpeg_baseline_dataset(grey), tmp / "jb_grey.dcm")
    files["baseline_ybr422"] = save(jpeg_baseline_dataset(colour_image()), tmp / "jb_ybr.dcm")
    return files


@pytest.mark.parametrize("name", ["native", "rle", "jls", "j2k"])
def test_synthetic_ct_lossless(ct_files: dict[str, str], name: str) -> None:
    pixels, info = read_frame(ct_files[name])
    np.testing.assert_array_equal(pixels, ct_pixels())
    assert pixels.dtype == np.int16
    assert (info.rescale_slope, info.rescale_intercept) == (1.0, -1024.0)
    assert (info.window_center, info.window_width) == (40.0, 400.0)


def test_synthetic_ct_lossy(ct_files: dict[str, str]) -> None:
    src = ct_pixels().astype(int)
    near, _ = read_frame(ct_files["jls_near"])
    assert np.abs(near.astype(int) - src).max() <= 2  # the NEAR bound is exact
    lossy, _ = read_frame(ct_files["j2k_lossy"])
    assert np.abs(lossy.astype(int) - src).mean() < 10


def test_jpeg_lossless_process14(ct_files: dict[str, str]) -> None:
    if "jpeg_p14" not in ct_files:
        pytest.skip("JPEG-LL.dcm not available")
    pixels, info = read_frame(ct_files["jpeg_p14"])
    assert info.transfer_syntax == JPEGLossless
    np.testing.assert_array_equal(pixels, pydicom_raw(data_file("JPEG-LL.dcm"), 0))


def test_jpeg_baseline_synthetic(ct_files: dict[str, str]) -> None:
    grey, info = read_frame(ct_files["baseline_grey"])
    slow, _ = read_frame(ct_files["baseline_grey"], fast_jpeg=False)
    assert info.photometric == "MONOCHROME2" and grey.dtype == np.uint8
    assert np.abs(grey.astype(int) - slow.astype(int)).max() <= 2
    rgb, info = read_frame(ct_files["baseline_ybr422"])
    assert info.stored_photometric == "YBR_FULL_422" and info.photometric == "RGB"
    assert np.abs(rgb.astype(int) - colour_image().astype(int)).mean() < 3


def test_multi_frame_each_frame(ct_files: dict[str, str]) -> None:
    for name in ("multi_native", "multi_rle"):
        for index in range(3):
            pixels, info = read_frame(ct_files[name], index)
            assert info.number_of_frames == 3 and info.frame == index
            np.testing.assert_array_equal(pixels, np.roll(ct_pixels(), 7 * index, axis=1))


def test_only_the_requested_frame_is_decoded(tmp_path: Path, ct_files: dict[str, str]) -> None:
    """Corrupt frame 1 of a 3-frame RLE instance: frames 0 and 2 still decode."""
    ds = dcmread(ct_files["multi_rle"])
    fragments = [get_frame(ds.PixelData, i, number_of_frames=3) for i in range(3)]
    fragments[1] = b"\x0f" + b"\x00" * 63 + b"\xff" * 64  # RLE header claiming 15 segments
    ds.PixelData = encapsulate(fragments, has_bot=True)
    path = save(ds, tmp_path / "corrupt.dcm")
    for index in (0, 2):
        pixels, _ = read_frame(path, index)
        np.testing.assert_array_equal(pixels, np.roll(ct_pixels(), 7 * index, axis=1))
    with pytest.raises(PixelDataError, match="could not be decoded"):
        read_frame(path, 1)


# --- facts in FrameInfo -----------------------------------------------------------------------


def test_info_rescale_window_and_functional_groups() -> None:
    info = read_frame(data_file("CT_small.dcm")).info
    assert (info.rescale_slope, info.rescale_intercept) == (1.0, -1024.0)
    assert info.window_center is None
    info = read_frame(data_file("MR_small.dcm")).info
    assert (info.window_center, info.window_width, info.voi_lut_function) == (
        600.0,
        1600.0,
        "LINEAR",
    )
    # enhanced CT: rescale and window live in the shared functional groups
    info = read_frame(data_file("eCT_Supplemental.dcm"), 1).info
    assert (info.rescale_intercept, info.window_center, info.window_width) == (-1024.0, 49.0, 102.0)
    assert info.palette is None  # its supplemental palette is not a PALETTE COLOR image


def test_info_luts_and_palettes() -> None:
    info = read_frame(data_file("mlut_18.dcm")).info
    assert info.modality_lut is not None
    assert (info.modality_lut.first_mapped, info.modality_lut.array().size) == (-2048, 4096)
    info = read_frame(data_file("vlut_04.dcm")).info
    assert info.voi_lut is not None and info.voi_lut.array().size == 256
    info = read_frame(data_file("OBXXXX1A.dcm")).info
    assert info.palette is not None and info.palette.first_mapped == 0
    assert all(a.size == 256 for a in info.palette.arrays())
    info = read_frame(data_file("gdcm-US-ALOKA-16.dcm")).info
    assert info.palette is not None and info.palette.bits == 16  # segmented, expanded
    assert all(a.size == 65536 for a in info.palette.arrays())


def test_lut_descriptor_written_as_unsigned(tmp_path: Path) -> None:
    """Explicit VR files may carry the descriptor as US: 63488 then means -2048 (signed data)."""
    ds = dcmread(data_file("mlut_18.dcm"))
    item = ds.ModalityLUTSequence[0]
    item["LUTDescriptor"].VR = "US"
    item.LUTDescriptor = [4096, 65536 - 2048, 16]
    lut = read_frame(save(ds, tmp_path / "mlut_us.dcm")).info.modality_lut
    assert lut is not None and lut.first_mapped == -2048


def test_read_info_agrees_with_read_frame() -> None:
    for name in ("CT_small.dcm", "emri_small_RLE.dcm", "US1_J2KR.dcm", "OBXXXX1A.dcm"):
        path = data_file(name)
        decoded = read_frame(path).info
        assert read_info(path) == decoded  # warnings are not part of equality


# --- raw frames -------------------------------------------------------------------------------


def test_raw_frame_little_endian_bytes() -> None:
    raw = read_raw_frame(data_file("MR_small_expb.dcm"))  # big endian source
    assert (raw.dtype, raw.shape) == ("int16", (64, 64))
    values = np.frombuffer(raw.data, dtype="<i2").reshape(raw.shape)
    np.testing.assert_array_equal(values, pydicom_raw(data_file("MR_small.dcm"), 0))
    raw = read_raw_frame(data_file("emri_small.dcm"), 9)
    assert (raw.dtype, len(raw.data), raw.info.frame) == ("uint16", 64 * 64 * 2, 9)
    raw = read_raw_frame(data_file("SC_rgb.dcm"))
    assert (raw.dtype, raw.shape, len(raw.data)) == ("uint8", (100, 100, 3), 30000)


def test_results_pickle(ct_files: dict[str, str]) -> None:
    decoded = read_frame(data_file("OBXXXX1A.dcm"))
    again = pickle.loads(pickle.dumps(decoded))
    np.testing.assert_array_equal(again.pixels, decoded.pixels)
    assert again.info == decoded.info and hash(again.info) == hash(decoded.info)
    raw = read_raw_frame(ct_files["rle"])
    assert pickle.loads(pickle.dumps(raw)) == raw


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("image_dfl.dcm", "unsupported transfer syntax"),  # deflated
        ("JPEG-lossy.dcm", "could not be decoded"),  # malformed scan header
        ("JPEG2000-embedded-sequence-delimiter.dcm", "could not be decoded"),
        ("MR_truncated.dcm", "could not be decoded"),
        ("rtplan.dcm", "no pixel data"),
        ("no_meta.dcm", "unreadable header"),
        ("badVR.dcm", "unusable pixel module"),  # IS '1A'
    ],
)
def test_refused_cleanly(name: str, message: str) -> None:
    with pytest.raises(PixelDataError, match=message):
        read_frame(data_file(name))


def test_refusals_of_arguments(tmp_path: Path, ct_files: dict[str, str]) -> None:
    with pytest.raises(PixelDataError, match="out of range"):
        read_frame(ct_files["multi_rle"], 3)
    with pytest.raises(PixelDataError, match="out of range"):
        read_frame(ct_files["multi_rle"], -1)
    with pytest.raises(PixelDataError, match="budget"):
        read_frame(ct_files["native"], max_frame_bytes=512 * 512)  # needs 2 bytes a pixel
    with pytest.raises(PixelDataError, match="cannot open"):
        read_frame(str(tmp_path / "missing.dcm"))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all" * 20)
    with pytest.raises(PixelDataError, match="unreadable header"):
        read_frame(str(junk))


def test_implicit_element_in_explicit_file_reads_without_warning_escaping() -> None:
    # pytest turns warnings into errors: pydicom's "expected explicit VR" must be contained
    pixels, info = read_frame(data_file("SC_rgb_jpeg.dcm"))
    assert pixels.shape == (256, 256, 3) and info.photometric == "RGB"
    assert isinstance(info.warnings, tuple)


@pytest.fixture
def header_cache_cleared() -> Iterator[None]:
    px._read_header_cached.cache_clear()
    yield
    px._read_header_cached.cache_clear()


@pytest.mark.usefixtures("header_cache_cleared")
def test_header_cache_follows_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "slice.dcm"
    save(ct_dataset(), path)
    assert read_frame(str(path)).info.window_center == 40.0
    ds = ct_dataset(np.zeros((512, 512), np.int16))
    ds.WindowCenter = "300"
    save(ds, path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    pixels, info = read_frame(str(path))
    assert info.window_center == 300.0 and not pixels.any()
