"""A plain float64 reference renderer, and the small synthetic DICOM builders the H2 tests share.

The reference follows the standard text literally, pixel by pixel in vectorised numpy, with no
lookup tables, caches or OpenCV, so consultd.imaging.render can be checked against it:

* PS3.3 C.11.1  modality transform: Modality LUT, else Rescale Slope/Intercept
* PS3.3 C.11.2  VOI transform: window with the three VOI LUT Functions (C.11.2.1.2 LINEAR,
  C.11.2.1.3.1 SIGMOID, C.11.2.1.3.2 LINEAR_EXACT) or a VOI LUT Sequence
* PS3.3 C.7.6.3.1.2  YBR_FULL: the inverse of the standard's RGB → YCbCr equations
* PS3.3 C.7.6.3.1.5/6  PALETTE COLOR lookup

It renders to 8 bits (output range 0..255), rounds to nearest at the very end and inverts for
MONOCHROME1 (or on request). Window selection is the documented rule of RenderParams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from consultd.imaging.pixels import FrameInfo
from consultd.imaging.render import RenderParams

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

# --- reference renderer -----------------------------------------------------------------------


def reference_render(frame: npt.NDArray[Any], info: FrameInfo, params: RenderParams) -> U8:
    """uint8 grey (rows, cols) or RGB (rows, cols, 3); params.viewport is not applied."""
    if info.photometric in ("MONOCHROME1", "MONOCHROME2"):
        return _grey(frame, info, params)
    if info.photometric == "PALETTE COLOR":
        rgb = _palette(frame, info)
    elif info.photometric == "YBR_FULL":
        rgb = _ybr_full_to_rgb(_colour_to_8bit(frame, info.bits_stored))
    elif info.photometric == "RGB":
        rgb = _colour_to_8bit(frame, info.bits_stored)
    else:
        raise ValueError(info.photometric)
    return 255 - rgb if params.invert else rgb


def _grey(frame: npt.NDArray[Any], info: FrameInfo, params: RenderParams) -> U8:
    x = frame.astype(np.float64)

    # C.11.1 modality LUT
    if info.modality_lut is not None:
        m = lut_lookup(x, info.modality_lut.first_mapped, info.modality_lut.array())
    else:
        m = x * info.rescale_slope + info.rescale_intercept

    # C.11.2 VOI LUT: choose as RenderParams documents
    if params.window_center is not None and params.window_width is not None:
        y = window(m, params.window_center, params.window_width, params.voi_function or "LINEAR")
    elif params.use_voi_lut and info.voi_lut is not None:
        y = voi_lut(m, info)
    elif info.window_center is not None and info.window_width is not None:
        function = params.voi_function or info.voi_lut_function
        y = window(m, info.window_center, info.window_width, function)
    elif info.voi_lut is not None:
        y = voi_lut(m, info)
    else:
        # no VOI in the file: the window that maps the frame's min to 0 and max to 255
        lo, hi = float(m.min()), float(m.max())
        w = hi - lo + 1.0
        y = window(m, lo + w / 2.0, w, params.voi_function or "LINEAR")

    out = np.rint(y).astype(np.uint8)
    if (info.photometric == "MONOCHROME1") != params.invert:
        out = 255 - out
    return out


def lut_lookup(x: F64, first_mapped: int, data: npt.NDArray[Any]) -> F64:
    """A LUT: inputs below the first mapped value take the first entry, above the last the last."""
    index = np.clip(x - first_mapped, 0, len(data) - 1).astype(np.int64)
    return np.asarray(data, dtype=np.float64)[index]


def window(x: F64, c: float, w: float, function: str, y_min: float = 0, y_max: float = 255) -> F64:
    y = np.empty_like(x)
    if function == "LINEAR":  # C.11.2.1.2.1
        w = max(w, 1.0)  # the standard requires w >= 1
        below = x <= c - 0.5 - (w - 1) / 2
        above = x > c - 0.5 + (w - 1) / 2
        mid = ~below & ~above
        y[below] = y_min
        y[above] = y_max
        y[mid] = ((x[mid] - (c - 0.5)) / (w - 1) + 0.5) * (y_max - y_min) + y_min
    elif function == "LINEAR_EXACT":  # C.11.2.1.3.2
        below = x <= c - w / 2
        above = x > c + w / 2
        mid = ~below & ~above
        y[below] = y_min
        y[above] = y_max
        y[mid] = ((x[mid] - c) / w + 0.5) * (y_max - y_min) + y_min
    elif function == "SIGMOID":  # C.11.2.1.3.1
        with np.errstate(over="ignore"):  # exp overflow → inf → y_min, which is right
            y[:] = (y_max - y_min) / (1 + np.exp(-4 * (x - c) / w)) + y_min
    else:
        raise ValueError(function)
    return y


def voi_lut(m: F64, info: FrameInfo) -> F64:
    assert info.voi_lut is not None
    lut = info.voi_lut
    values = lut_lookup(np.rint(m), lut.first_mapped, lut.array())
    scaled: F64 = values * 255 / (2**lut.bits - 1)
    return scaled


def _colour_to_8bit(frame: npt.NDArray[Any], bits_stored: int) -> U8:
    if frame.dtype == np.uint8:
        return frame.copy()
    top = 2**bits_stored - 1
    scaled: F64 = np.rint(np.minimum(frame.astype(np.float64), top) * 255 / top)
    return scaled.astype(np.uint8)


# C.7.6.3.1.2: Y = .2990R + .5870G + .1140B; CB = -.1687R - .3313G + .5000B + 128;
# CR = .5000R - .4187G - .0813B + 128. The reference inverts exactly that matrix.
_RGB_TO_YBR = np.array(
    [[0.2990, 0.5870, 0.1140], [-0.1687, -0.3313, 0.5000], [0.5000, -0.4187, -0.0813]]
)
_YBR_TO_RGB = np.linalg.inv(_RGB_TO_YBR)


def _ybr_full_to_rgb(ybr: U8) -> U8:
    centred = ybr.astype(np.float64) - np.array([0.0, 128.0, 128.0])
    rgb: F64 = np.clip(np.rint(centred @ _YBR_TO_RGB.T), 0, 255)
    return rgb.astype(np.uint8)


def _palette(frame: npt.NDArray[Any], info: FrameInfo) -> U8:
    assert info.palette is not None
    pal = info.palette
    top = 2**pal.bits - 1
    channels = [
        np.minimum(lut_lookup(frame.astype(np.float64), pal.first_mapped, ch), top) * 255 / top
        for ch in pal.arrays()
    ]
    rgb: F64 = np.rint(np.stack(channels, axis=-1))
    return rgb.astype(np.uint8)


# --- synthetic data ---------------------------------------------------------------------------


def ct_pixels(rows: int = 512, cols: int = 512, seed: int = 6) -> npt.NDArray[np.int16]:
    """Stored values of a plausible axial CT slice (rescale -1024): air, body, organs, bone."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cy, cx = rows / 2, cols / 2
    hu = np.full((rows, cols), -1000.0)
    body = ((yy - cy) / (rows * 0.38)) ** 2 + ((xx - cx) / (cols * 0.45)) ** 2 <= 1
    hu[body] = 40.0
    for dx in (-0.18, 0.18):  # lungs
        lung = ((yy - cy) / (rows * 0.22)) ** 2 + ((xx - cx - dx * cols) / (cols * 0.13)) ** 2
        hu[lung <= 1] = -850.0
    spine = ((yy - cy - rows * 0.25) / (rows * 0.06)) ** 2 + ((xx - cx) / (cols * 0.05)) ** 2
    hu[spine <= 1] = 900.0
    hu += rng.normal(0, 12, hu.shape)  # noise, so compressors have real work
    stored: F64 = np.clip(np.rint(hu + 1024), -2000, 4095)
    return stored.astype(np.int16)


def _file_meta(sop_class: str, ts: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID(ts)
    return meta


def _base(sop_class: str, ts: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, ts)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "Synthetic^Test"
    ds.PatientID = "SYN-0001"
    return ds


def ct_dataset(
    pixels: npt.NDArray[np.int16] | None = None, *, frames: int = 1, index: int = 1
) -> Dataset:
    """Uncompressed 16-bit signed CT (rescale -1024, window 40/400); multi-frame stacks frames."""
    pixels = ct_pixels() if pixels is None else pixels
    ds = _base(CTImageStorage, ExplicitVRLittleEndian, "CT")
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = "1.0"
    ds.ImagePositionPatient = [-179.2, -179.2, float(index)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.InstanceNumber = index
    if frames > 1:
        stack = np.stack([np.roll(pixels, 7 * i, axis=1) for i in range(frames)])
        ds.NumberOfFrames = frames
        ds.PixelData = stack.astype("<i2").tobytes()
    else:
        ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


def jpeg_baseline_dataset(image: U8, *, subsampling: str = "422", quality: int = 92) -> Dataset:
    """JPEG baseline instance encoded by OpenCV: grey (MONOCHROME2) or colour (YBR_FULL_422).

    `image` is RGB for colour. OpenCV writes JFIF YCbCr, which is what YBR_FULL_422 denotes.
    """
    factor = {
        "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
        "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    }[subsampling]
    colour = image.ndim == 3
    src = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if colour else image
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor]
    ok, buf = cv2.imencode(".jpg", src, params)
    assert ok
    ds = _base(SecondaryCaptureImageStorage, JPEGBaseline8Bit, "OT")
    ds.Rows, ds.Columns = image.shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = (
        ("YBR_FULL_422" if subsampling != "444" else "YBR_FULL") if colour else "MONOCHROME2"
    )
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([buf.tobytes()])
    ds["PixelData"].VR = "OB"
    return ds


def colour_image(rows: int = 256, cols: int = 320) -> U8:
    """Smooth RGB test card: gradients and saturated patches (exercise the colour transform)."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = np.stack(
        [xx * 255 // max(cols - 1, 1), yy * 255 // max(rows - 1, 1), (xx + yy) % 256], axis=-1
    ).astype(np.uint8)
    img[: rows // 4, : cols // 4] = (255, 0, 0)
    img[: rows // 4, cols // 4 : cols // 2] = (0, 255, 0)
    img[: rows // 4, cols // 2 : 3 * cols // 4] = (0, 0, 255)
    return img


def save(ds: Dataset, path: Path) -> str:
    ds.save_as(path, enforce_file_format=True)
    return str(path)
