"""consultd.imaging.render against the float64 reference (tests/imaging/reference.py)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    convert_color_space,
)
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from consultd.imaging import render as rd
from consultd.imaging.pixels import FrameInfo, LUTData, read_frame
from consultd.imaging.render import (
    WINDOW_PRESETS,
    RenderError,
    RenderParams,
    VOIFunction,
    encode,
    render,
    render_file,
    render_pixels,
)
from tests.imaging.reference import ct_dataset, ct_pixels, reference_render, save


def imdecode(blob: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> npt.NDArray[np.uint8]:
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), flags)
    assert img is not None
    return img.astype(np.uint8, copy=False)


def data_file(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not available offline")
    return str(path)


def assert_matches_reference(
    frame: npt.NDArray[np.generic], info: FrameInfo, params: RenderParams
) -> None:
    ours = render_pixels(frame, info, params)
    ref = reference_render(frame, info, params)
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    if info.is_monochrome or info.photometric == "PALETTE COLOR":
        np.testing.assert_array_equal(ours, ref)  # integer tables: pixel-exact
    else:
        # OpenCV's fixed-point YCrCb coefficients round differently from the float matrix
        assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


# One or more files per transfer syntax and photometric interpretation read_frame supports.
FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "JPEGLSNearLossless_08.dcm",
    "JPEG2000.dcm",
    "693_J2KR.dcm",
    "MR2_J2KI.dcm",  # fractional rescale slope
    "JPEG-LL.dcm",
    "JPGExtended.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "RG3_UNCR.dcm",  # MONOCHROME1
    "RG1_J2KI.dcm",  # MONOCHROME1, J2K lossy
    "liver.dcm",
    "rtdose.dcm",  # 32-bit: the float fallback
    "eCT_Supplemental.dcm",
    "mlut_18.dcm",  # modality LUT
    "vlut_04.dcm",  # VOI LUT
    "SC_rgb.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_32bit_2frame.dcm",
    "SC_rgb_jls_lossy_sample.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_ybr_full_uncompressed.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline YBR_FULL_422 (turbo → RGB)
    "SC_rgb_jpeg_lossy_gdcm.dcm",  # JPEG baseline YBR_FULL
    "color3d_jpeg_baseline.dcm",
    "US1_J2KI.dcm",  # YBR_ICT
    "US1_J2KR.dcm",  # YBR_RCT
    "OBXXXX1A_2frame.dcm",  # PALETTE COLOR 8-bit
    "OBXXXX1A_rle.dcm",
    "gdcm-US-ALOKA-16.dcm",  # PALETTE COLOR 16-bit, segmented
]

PARAMS = [
    RenderParams(),
    RenderParams(invert=True),
    RenderParams(window_center=40, window_width=400),
    RenderParams(window_center=0.3, window_width=0.5),  # width < 1: a step
    RenderParams(window_center=-600, window_width=1),
    RenderParams(voi_function="SIGMOID"),
    RenderParams(voi_function="LINEAR_EXACT"),
    RenderParams(use_voi_lut=True),
]


@pytest.mark.parametrize("name", FILES)
def test_file_matches_reference(name: str) -> None:
    path = data_file(name)
    first = read_frame(path, 0)
    frames = [first]
    if first.info.number_of_frames > 1:
        frames.append(read_frame(path, first.info.number_of_frames - 1))
    for frame, info in frames:
        for params in PARAMS:
            assert_matches_reference(frame, info, params)


@pytest.mark.parametrize("name", ["color3d_jpeg_baseline.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm"])
def test_ybr_decoded_by_pylibjpeg_matches_reference(name: str) -> None:
    frame, info = read_frame(data_file(name), fast_jpeg=False)
    assert info.photometric == "YBR_FULL"  # rendered by our OpenCV YBR path
    assert_matches_reference(frame, info, RenderParams())


def test_window_presets_on_synthetic_ct(tmp_path: Path) -> None:
    frame, info = read_frame(save(ct_dataset(), tmp_path / "ct.dcm"))
    for center, width in WINDOW_PRESETS.values():
        functions: tuple[VOIFunction, ...] = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
        for function in functions:
            params = RenderParams(window_center=center, window_width=width, voi_function=function)
            assert_matches_reference(frame, info, params)


def test_lossless_sources_render_identically(tmp_path: Path) -> None:
    expected = render(*read_frame(save(ct_dataset(), tmp_path / "n.dcm")), RenderParams())
    for uid in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        ds = ct_dataset()
        ds.compress(uid)
        assert render(*read_frame(save(ds, tmp_path / f"{uid}.dcm")), RenderParams()) == expected


# --- edge cases built in memory ---------------------------------------------------------------


def grey_info(dtype: str, rows: int, cols: int, **kw: object) -> FrameInfo:
    bits = np.dtype(dtype).itemsize * 8
    fields: dict[str, object] = {
        "rows": rows,
        "columns": cols,
        "samples_per_pixel": 1,
        "photometric": "MONOCHROME2",
        "stored_photometric": "MONOCHROME2",
        "bits_allocated": bits,
        "bits_stored": bits,
        "pixel_representation": int(np.dtype(dtype).kind == "i"),
        "number_of_frames": 1,
        "frame": 0,
        "transfer_syntax": "1.2.840.10008.1.2.1",
    }
    fields.update(kw)
    return FrameInfo(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32"])
def test_full_value_range_every_dtype(dtype: str) -> None:
    """Every stored value of 8-bit types, the extremes and sign boundary of wider ones."""
    info_ = np.iinfo(dtype)
    if np.dtype(dtype).itemsize == 1:
        values = np.arange(info_.min, info_.max + 1)
    else:
        values = np.concatenate(
            [
                np.arange(info_.min, info_.min + 300),
                np.arange(-300, 300),
                np.arange(info_.max - 300, info_.max + 1),
            ]
        )
        values = values[(values >= info_.min) & (values <= info_.max)]
    frame = np.resize(values, 32 * 64).astype(dtype).reshape(32, 64)
    for kw in (
        {},
        {"rescale_slope": -0.7, "rescale_intercept": 12.5},
        {"window_center": 3.0, "window_width": 77.0, "voi_lut_function": "LINEAR_EXACT"},
        {"photometric": "MONOCHROME1", "window_center": -20.0, "window_width": 100.0},
    ):
        info = grey_info(dtype, 32, 64, **kw)
        for params in (RenderParams(), RenderParams(invert=True, voi_function="SIGMOID")):
            assert_matches_reference(frame, info, params)


def test_signed_luts_across_zero() -> None:
    frame = np.arange(-512, 512, dtype=np.int16).reshape(32, 32)
    modality = LUTData(-300, 16, (np.arange(600, dtype="<u2") * 7).tobytes())
    voi = LUTData(100, 12, (np.arange(3000, dtype="<u2") % 4096).tobytes())
    info = grey_info("int16", 32, 32, modality_lut=modality, voi_lut=voi)
    assert_matches_reference(frame, info, RenderParams())
    assert_matches_reference(frame, info, RenderParams(window_center=900, window_width=2000))
    plain = grey_info(
        "int16", 32, 32, voi_lut=LUTData(-100, 8, np.arange(200, dtype="<u2").tobytes())
    )
    out = render_pixels(frame, plain, RenderParams())
    # below the first mapped value: entry 0; above the last: entry 199 (of an 8-bit table)
    assert (out[0, 0], out[-1, -1]) == (0, 199)
    assert_matches_reference(frame, plain, RenderParams())


def test_auto_window_stretches_min_to_max() -> None:
    frame, info = read_frame(data_file("CT_small.dcm"))
    out = render_pixels(frame, info, RenderParams())
    assert (out.min(), out.max()) == (0, 255)
    flat = np.full((4, 4), 7, np.uint16)
    out = render_pixels(flat, grey_info("uint16", 4, 4), RenderParams())
    assert (out == 0).all()  # one value: width 1, x <= c - 0.5 is black


def test_monochrome1_and_invert() -> None:
    frame, info = read_frame(data_file("RG3_UNCR.dcm"))
    as_mono2 = replace(info, photometric="MONOCHROME2")
    m1 = render_pixels(frame, info, RenderParams())
    m2 = render_pixels(frame, as_mono2, RenderParams())
    np.testing.assert_array_equal(m1, 255 - m2)
    np.testing.assert_array_equal(render_pixels(frame, info, RenderParams(invert=True)), m2)


# --- the reference itself, checked against pydicom's independent implementations --------------


@pytest.mark.parametrize("name", ["MR_small.dcm", "693_UNCR.dcm", "vlut_04.dcm", "mlut_18.dcm"])
def test_reference_agrees_with_pydicom_grey(name: str) -> None:
    path = data_file(name)
    ds = dcmread(path)
    frame, info = read_frame(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    if "VOILUTSequence" in ds:  # pydicom returns the LUT's entries
        assert info.voi_lut is not None
        lo, hi = 0.0, 2.0**info.voi_lut.bits - 1
    elif "WindowCenter" not in ds:  # no VOI: the modality output, which we stretch min..max
        lo, hi = float(out.min()), float(out.max())
    else:  # pydicom windows into the (rescaled) stored value range
        bits = int(ds.BitsStored)
        lo, hi = (
            (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
            if ds.PixelRepresentation
            else (0, 2.0**bits - 1)
        )
        if "RescaleSlope" in ds and "RescaleIntercept" in ds:
            slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            lo, hi = lo * slope + intercept, hi * slope + intercept
    theirs = np.rint((out - lo) / (hi - lo) * 255)
    ours = reference_render(frame, info, RenderParams())
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_reference_agrees_with_pydicom_colour() -> None:
    frame, info = read_frame(data_file("SC_ybr_full_uncompressed.dcm"))
    theirs = convert_color_space(frame, "YBR_FULL", "RGB")
    ours = reference_render(frame, info, RenderParams())
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    path = data_file("OBXXXX1A.dcm")
    frame, info = read_frame(path)
    ds = dcmread(path)
    theirs = np.rint(apply_color_lut(frame, ds) / 65535 * 255)
    assert np.abs(reference_render(frame, info, RenderParams()) - theirs).max() <= 1


# --- encoding, viewport, caching --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("name", ["MR2_UNCR.dcm", "US1_UNCR.dcm", "OBXXXX1A.dcm"])
def test_encoded_outputs_decode_back(fmt: str, name: str) -> None:
    frame, info = read_frame(data_file(name))
    params = RenderParams(format=fmt)  # type: ignore[arg-type]
    blob = render(frame, info, params)
    magic = {"png": b"\x89PNG", "jpeg": b"\xff\xd8\xff", "webp": b"RIFF"}[fmt]
    assert blob.startswith(magic)
    decoded: npt.NDArray[Any] = imdecode(blob)
    expected = render_pixels(frame, info, params)
    assert decoded.shape[:2] == expected.shape[:2]
    if decoded.ndim == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if expected.ndim == 2 and decoded.ndim == 3:  # WebP has no grey mode
        decoded = decoded[..., 0]
    diff = np.abs(decoded.astype(int) - expected.astype(int))
    if fmt == "png":
        assert diff.max() == 0
    else:
        assert diff.mean() < 3


def test_viewport_fits_and_keeps_aspect() -> None:
    frame, info = read_frame(data_file("JPEG-LL.dcm"))  # 1024 rows x 256 columns
    small = render_pixels(frame, info, RenderParams(viewport=(128, 128)))
    assert small.shape == (128, 32)
    blob = render(frame, info, RenderParams(viewport=(128, 128), format="png"))
    assert imdecode(blob).shape == (128, 32)
    frame, info = read_frame(data_file("US1_UNCR.dcm"))  # 480 x 640 colour, upscaled
    assert render_pixels(frame, info, RenderParams(viewport=(1280, 2000))).shape == (960, 1280, 3)


def test_encode_rgb_pixels() -> None:
    rgb = np.zeros((8, 16, 3), np.uint8)
    rgb[..., 0] = 200  # red
    blob = encode(rgb, "png")
    back = imdecode(blob, cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(back[..., ::-1], rgb)


def test_lut_cache_hits_and_is_read_only(tmp_path: Path) -> None:
    frame, info = read_frame(save(ct_dataset(), tmp_path / "ct.dcm"))
    rd.clear_caches()
    params = RenderParams(window_center=41, window_width=401)
    first = render_pixels(frame, info, params)
    misses = rd._grey_lut.cache_info().misses
    second = render_pixels(frame, info, params)
    assert rd._grey_lut.cache_info().misses == misses
    assert rd._grey_lut.cache_info().hits >= 1
    np.testing.assert_array_equal(first, second)
    lut = rd._grey_lut(rd._Modality("i2", 1.0, -1024.0, None), rd._VOI(41, 401, "LINEAR"), False)
    assert lut.shape == (65536,) and not lut.flags.writeable


def test_input_untouched_and_output_not_shared() -> None:
    for name in ("SC_rgb.dcm", "CT_small.dcm"):
        frame, info = read_frame(data_file(name))
        before = frame.copy()
        out = render_pixels(frame, info, RenderParams())
        render(frame, info, RenderParams(invert=True))
        np.testing.assert_array_equal(frame, before)
        assert not np.may_share_memory(out, frame)


def test_render_file(tmp_path: Path) -> None:
    path = save(ct_dataset(frames=2), tmp_path / "mf.dcm")
    blob = render_file(path, 1, RenderParams(format="png"))
    img = imdecode(blob)
    frame, info = read_frame(path, 1)
    np.testing.assert_array_equal(img, reference_render(frame, info, RenderParams()))
    np.testing.assert_array_equal(frame, np.roll(ct_pixels(), 7, axis=1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_center": 40.0},
        {"window_width": 400.0},
        {"window_center": 40.0, "window_width": 0.0},
        {"window_center": 40.0, "window_width": -5.0},
        {"window_center": float("nan"), "window_width": 5.0},
        {"window_center": 1.0, "window_width": float("inf")},
        {"voi_function": "CUBIC"},
        {"format": "gif"},
        {"quality": 0},
        {"quality": 101},
        {"viewport": (0, 10)},
        {"viewport": (10, 100_000)},
    ],
)
def test_params_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(RenderError):
        RenderParams(**kwargs)  # type: ignore[arg-type]


def test_shape_and_photometric_mismatch_refused() -> None:
    frame, info = read_frame(data_file("CT_small.dcm"))
    with pytest.raises(RenderError, match="shape"):
        render_pixels(frame[:10], info, RenderParams())
    with pytest.raises(RenderError, match="photometric"):
        render_pixels(frame, replace(info, photometric="YBR_PARTIAL_420"), RenderParams())
