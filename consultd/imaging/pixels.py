"""Decode one frame of a stored DICOM instance to its stored values, inside a worker process.

Everything here is a plain function of picklable arguments (a path, a frame index) returning
picklable results (numpy arrays and frozen dataclasses), so a process pool can run it. Only the
requested frame is decoded: the header is parsed up to the pixel data element, then pydicom's
decoder reads that frame's bytes (native) or fragments (encapsulated) from the open file.

The files handed to these functions are ones ingest already accepted and re-serialised, so they
are trusted to be well-formed; the checks here are a second line, not the validation.
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, BinaryIO, NamedTuple, cast

import cv2
import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "DecodedFrame",
    "FrameInfo",
    "LUTData",
    "PaletteLUT",
    "PixelDataError",
    "RawFrame",
    "read_frame",
    "read_header",
    "read_info",
    "read_raw_frame",
    "to_raw_frame",
]

# Transfer syntaxes this module decodes. Deflated is absent on purpose: the pixel data sits
# inside the deflate stream, so a single frame cannot be reached without inflating the file
# (ingest refuses or converts it). Big endian is read (pydicom swaps) though ingest converts it.
SUPPORTED_TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        RLELossless,
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
    }
)

# Pin the plugin per syntax so results do not depend on which optional packages happen to be
# installed (Pillow, GDCM would otherwise be tried first or as fallbacks, with different colour
# handling). Measured (see the imaging bench): pyjpegls decodes JPEG-LS faster than libjpeg's
# JPEG-LS path; pylibjpeg-rle is far faster than pydicom's numpy RLE decoder.
_PLUGINS: dict[str, str] = {
    RLELossless: "pylibjpeg",
    JPEGBaseline8Bit: "pylibjpeg",
    JPEGExtended12Bit: "pylibjpeg",
    JPEGLossless: "pylibjpeg",
    JPEGLosslessSV1: "pylibjpeg",
    JPEGLSLossless: "pyjpegls",
    JPEGLSNearLossless: "pyjpegls",
    JPEG2000Lossless: "pylibjpeg",
    JPEG2000: "pylibjpeg",
}

# Refuse to decode a frame whose decoded size exceeds this, before any allocation.
DEFAULT_MAX_FRAME_BYTES = 256 * 2**20

_PIXEL_KEYWORDS = {0x7FE00010: "PixelData"}
_EXPLICIT_PIXEL_VRS = (b"OB", b"OW", b"UN")
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


class PixelDataError(ValueError):
    """The frame cannot be decoded: unsupported encoding, bad index, over budget or corrupt."""


@dataclass(frozen=True, slots=True)
class LUTData:
    """A modality or VOI lookup table (PS3.3 C.11.1 / C.11.2), entries as uint16 little endian.

    Stored as bytes so the dataclass stays hashable (it is part of render's LUT cache key).
    """

    first_mapped: int
    bits: int
    data: bytes

    def array(self) -> npt.NDArray[np.uint16]:
        return np.frombuffer(self.data, dtype="<u2")


@dataclass(frozen=True, slots=True)
class PaletteLUT:
    """Expanded PALETTE COLOR tables (segmented ones already expanded), uint16 little endian.

    `bits` is the effective entry depth: 16-bit descriptors whose data never exceeds 255 are
    reported as 8, as such files (old US equipment) mean 8-bit entries.
    """

    first_mapped: int
    bits: int
    red: bytes
    green: bytes
    blue: bytes

    def arrays(self) -> tuple[npt.NDArray[np.uint16], ...]:
        return tuple(np.frombuffer(b, dtype="<u2") for b in (self.red, self.green, self.blue))


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """Pixel-module facts about one decoded frame, everything render needs.

    `photometric` describes the returned array, not the file: decoding never converts colour
    (pydicom is called with raw=True), so YBR data stays YBR, except that JPEG 2000 YBR_ICT /
    YBR_RCT come back as RGB (the MCT is undone by the codec) and YBR_FULL_422 comes back with
    its subsampling removed, which is reported as YBR_FULL. `stored_photometric` is the file's.
    """

    rows: int
    columns: int
    samples_per_pixel: int
    photometric: str
    stored_photometric: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    number_of_frames: int
    frame: int
    transfer_syntax: str
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    modality_lut: LUTData | None = None
    window_center: float | None = None
    window_width: float | None = None
    voi_lut_function: str = "LINEAR"
    voi_lut: LUTData | None = None
    palette: PaletteLUT | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_monochrome(self) -> bool:
        return self.photometric in _MONOCHROME

    @property
    def is_signed(self) -> bool:
        return self.pixel_representation == 1


class DecodedFrame(NamedTuple):
    pixels: npt.NDArray[Any]
    info: FrameInfo


@dataclass(frozen=True, slots=True)
class RawFrame:
    """Stored values of one frame for client-side window/level.

    `data` is C-ordered, little endian, interleaved for colour; `dtype` is a numpy/JS-friendly
    name ('uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32') and `shape` (rows, columns)
    or (rows, columns, samples). Colour frames are given as decoded (see FrameInfo.photometric).
    """

    data: bytes
    shape: tuple[int, ...]
    dtype: str
    info: FrameInfo


@dataclass(frozen=True, slots=True)
class _Header:
    ds: Dataset
    transfer_syntax: UID
    value_offset: int
    opts: dict[str, Any]


def read_frame(
    path: str,
    frame: int = 0,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    fast_jpeg: bool = True,
) -> DecodedFrame:
    """Decode frame `frame` (0-based) of the instance at `path` to stored values.

    Returns the pixels in native byte order and their own dtype: uint8/int8/uint16/int16
    (uint32/int32 for 32-bit data such as RTDOSE), shape (rows, columns) or (rows, columns, 3)
    for colour (planar configuration undone), plus the FrameInfo describing them. Raises
    PixelDataError for anything that cannot be decoded, never a pydicom or codec exception.

    fast_jpeg: decode 8-bit JPEG baseline grey and YCbCr frames with OpenCV's libjpeg-turbo
    (about 7x faster than pylibjpeg's libjpeg); colour then comes back as RGB (the JFIF
    transform is the YBR_FULL one). Frames it does not recognise fall back to pylibjpeg.
    """
    # pydicom reports oddities as warnings; keep them in the info instead of letting them reach
    # the worker's stderr or, in tests, become errors. Only the pixel module's elements are
    # converted here, so the messages concern those, not patient data.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        header = _read_header(path)
        info = _frame_info(header, frame)  # validates index and support before decoding
        _check_budget(info, max_frame_bytes)
        try:
            with open(path, "rb") as f:
                fast = _turbo_jpeg(f, header, info) if fast_jpeg else None
                props: dict[str, str | int]
                if fast is not None:
                    arr, props = fast, {"photometric_interpretation": _turbo_photometric(info)}
                else:
                    f.seek(header.value_offset)
                    arr, props = get_decoder(header.transfer_syntax).as_array(
                        f,
                        index=frame,
                        raw=True,
                        decoding_plugin=_PLUGINS.get(header.transfer_syntax, ""),
                        **header.opts,
                    )
        except Exception as exc:  # pydicom and the codecs raise many types; report one
            raise PixelDataError(f"frame {frame} could not be decoded: {exc}") from exc
    arr = _native_contiguous(arr)
    photometric = _decoded_photometric(str(props.get("photometric_interpretation", "")), info)
    expected = (info.rows, info.columns) + ((3,) if info.samples_per_pixel == 3 else ())
    if arr.shape != expected:
        raise PixelDataError(f"decoded shape {arr.shape} does not match {expected}")
    notes = tuple(dict.fromkeys(str(w.message) for w in caught))
    info = _replace(
        info, photometric=photometric, bits_allocated=arr.dtype.itemsize * 8, warnings=notes
    )
    return DecodedFrame(arr, info)


def read_info(path: str, frame: int = 0) -> FrameInfo:
    """FrameInfo without decoding, for callers that only need the header facts.

    photometric and bits_allocated are what pydicom's decoders return; read_frame's own info
    can differ and is the one to render with: a narrower container (JPEG 2000 with 8-bit
    precision in a 16-bit allocation), or RGB for JPEG baseline YBR taken by fast_jpeg.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = _frame_info(_read_header(path), frame)
    return _replace(info, photometric=_decoded_photometric("", info))


def read_raw_frame(
    path: str,
    frame: int = 0,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    fast_jpeg: bool = True,
) -> RawFrame:
    """Decode one frame and return its stored values as little-endian bytes."""
    decoded = read_frame(path, frame, max_frame_bytes=max_frame_bytes, fast_jpeg=fast_jpeg)
    return to_raw_frame(*decoded)


def to_raw_frame(pixels: npt.NDArray[Any], info: FrameInfo) -> RawFrame:
    """Serialise an already decoded frame (e.g. from a cache) without decoding again."""
    le = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    return RawFrame(
        data=np.ascontiguousarray(le).tobytes(),
        shape=tuple(int(n) for n in pixels.shape),
        dtype=np.dtype(pixels.dtype).name,
        info=info,
    )


# --- header ----------------------------------------------------------------------------------


def read_header(path: str) -> Dataset:
    """The stored instance's attributes without its pixel data (a report's evidence)."""
    return _read_header(path).ds


def _read_header(path: str) -> _Header:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PixelDataError(f"cannot open the instance: {exc.strerror}") from exc
    # Stored instances are content-addressed and immutable; the stat fields guard against reuse
    # of a path anyway. Multi-frame reads then parse the header once per worker, not per frame.
    return _read_header_cached(path, st.st_ino, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _read_header_cached(path: str, _ino: int, _size: int, _mtime: int) -> _Header:
    with open(path, "rb") as f:
        try:
            ds = dcmread(f, stop_before_pixels=True)
        except Exception as exc:
            raise PixelDataError(f"unreadable header: {exc}") from exc
        ts = ds.file_meta.get("TransferSyntaxUID")
        if ts is None:
            raise PixelDataError("no transfer syntax in the file meta")
        ts = UID(ts)
        if ts not in SUPPORTED_TRANSFER_SYNTAXES:
            raise PixelDataError(f"unsupported transfer syntax {ts.name}")
        offset, extra = _pixel_value_offset(f, ts)
    try:
        opts = as_pixel_options(ds, transfer_syntax_uid=ts, **extra)
    except Exception as exc:
        raise PixelDataError(f"unusable pixel module: {exc}") from exc
    return _Header(ds=ds, transfer_syntax=ts, value_offset=offset, opts=opts)


def _pixel_value_offset(f: BinaryIO, ts: UID) -> tuple[int, dict[str, str]]:
    """Parse the pixel data element header at the current position; return the value offset.

    dcmread(stop_before_pixels=True) leaves the file at the element's tag. The element may be
    implicit VR even when the syntax says explicit (pydicom tolerates that), so look at the VR
    bytes rather than trusting the syntax, as pydicom's own reader does.
    """
    head = f.read(8)
    if len(head) != 8:
        raise PixelDataError("no pixel data")
    order = "<" if ts.is_little_endian else ">"
    group, elem = struct.unpack(f"{order}HH", head[:4])
    keyword = _PIXEL_KEYWORDS.get((group << 16) | elem)
    if keyword is None:
        raise PixelDataError(f"unsupported pixel data element ({group:04X},{elem:04X})")
    extra = {"pixel_keyword": keyword}
    if head[4:6] in _EXPLICIT_PIXEL_VRS:
        extra["pixel_vr"] = head[4:6].decode("ascii")
        return f.tell() + 4, extra  # 2 reserved bytes + 4-byte length follow the VR
    return f.tell(), extra


def _frame_info(header: _Header, frame: int) -> FrameInfo:
    try:
        return _frame_info_unchecked(header, frame)
    except PixelDataError:
        raise
    except Exception as exc:  # malformed values in the pixel module (e.g. IS '1A')
        raise PixelDataError(f"unusable pixel module: {exc}") from exc


def _frame_info_unchecked(header: _Header, frame: int) -> FrameInfo:
    ds = header.ds
    o = header.opts
    nframes = int(o.get("number_of_frames") or 1)
    if not 0 <= frame < nframes:
        raise PixelDataError(f"frame {frame} out of range (0..{nframes - 1})")
    stored_pi = str(o.get("photometric_interpretation", ""))
    samples = int(o.get("samples_per_pixel", 1))
    bits_allocated = int(o.get("bits_allocated", 0))
    bits_stored = int(o.get("bits_stored", 0))
    pixel_rep = int(o.get("pixel_representation", 0))
    if bits_allocated not in (1, 8, 16, 32) or not 0 < bits_stored <= bits_allocated:
        raise PixelDataError(f"unsupported bits allocated/stored {bits_allocated}/{bits_stored}")
    if samples == 1 and stored_pi not in (*_MONOCHROME, "PALETTE COLOR"):
        raise PixelDataError(f"unsupported photometric interpretation {stored_pi!r}")
    if samples == 3 and not (stored_pi == "RGB" or stored_pi.startswith("YBR_")):
        raise PixelDataError(f"unsupported photometric interpretation {stored_pi!r}")
    if samples not in (1, 3):
        raise PixelDataError(f"unsupported samples per pixel {samples}")

    info = FrameInfo(
        rows=int(o["rows"]),
        columns=int(o["columns"]),
        samples_per_pixel=samples,
        photometric=stored_pi,
        stored_photometric=stored_pi,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=pixel_rep,
        number_of_frames=nframes,
        frame=frame,
        transfer_syntax=str(header.transfer_syntax),
    )
    if stored_pi in _MONOCHROME:
        info = _replace(info, **_grey_transforms(ds, frame, pixel_rep == 1))
    elif stored_pi == "PALETTE COLOR":
        info = _replace(info, palette=_palette(ds))
    return info


def _check_budget(info: FrameInfo, max_frame_bytes: int) -> None:
    size = info.rows * info.columns * info.samples_per_pixel * max(info.bits_allocated // 8, 1)
    if size > max_frame_bytes:
        raise PixelDataError(f"frame of {size} bytes exceeds the {max_frame_bytes} byte budget")


def _decoded_photometric(reported: str, info: FrameInfo) -> str:
    pi = reported or info.stored_photometric
    if info.stored_photometric in ("YBR_ICT", "YBR_RCT") and (
        info.transfer_syntax in (JPEG2000, JPEG2000Lossless)
    ):
        pi = "RGB"  # pylibjpeg-openjpeg applies the inverse MCT itself
    if pi == "YBR_FULL_422":
        pi = "YBR_FULL"  # subsampling is always removed by the decoder
    if info.samples_per_pixel == 3 and pi not in ("RGB", "YBR_FULL"):
        raise PixelDataError(f"unsupported decoded photometric interpretation {pi!r}")
    return pi


# --- JPEG baseline through libjpeg-turbo (OpenCV) ---------------------------------------------

_SOF_BASELINE = 0xC0
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field


def _turbo_jpeg(f: BinaryIO, header: _Header, info: FrameInfo) -> npt.NDArray[np.uint8] | None:
    """Decode an 8-bit baseline frame with cv2.imdecode, or None to use pydicom's path.

    Only grey and YBR (JFIF-style YCbCr) data qualify. Stored PI 'RGB' is left to pylibjpeg:
    such codestreams often carry no colour transform while libjpeg-turbo would assume one.
    The SOF must agree with Rows/Columns/Samples and the stream must end with EOI (turbo
    would pad a truncated stream with grey rather than fail).
    """
    if header.transfer_syntax != JPEGBaseline8Bit:
        return None
    if not (info.stored_photometric in _MONOCHROME or info.stored_photometric.startswith("YBR_F")):
        return None
    f.seek(header.value_offset)
    codestream = get_frame(
        f,
        info.frame,
        extended_offsets=header.opts.get("extended_offsets"),
        number_of_frames=info.number_of_frames,
    )
    sof = _jpeg_sof(codestream)
    if sof != (_SOF_BASELINE, 8, info.rows, info.columns, info.samples_per_pixel):
        return None
    if b"\xff\xd9" not in codestream[-4:]:
        return None
    flags = cv2.IMREAD_IGNORE_ORIENTATION | (
        cv2.IMREAD_COLOR if info.samples_per_pixel == 3 else cv2.IMREAD_GRAYSCALE
    )
    img = cv2.imdecode(np.frombuffer(codestream, np.uint8), flags)
    if img is None:
        return None
    if img.ndim == 3:
        cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)
    return cast(npt.NDArray[np.uint8], img)


def _turbo_photometric(info: FrameInfo) -> str:
    return "RGB" if info.samples_per_pixel == 3 else info.stored_photometric


def _jpeg_sof(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(SOF marker, precision, rows, columns, components) of a JPEG stream, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 10 > len(data):
                return None
            precision = data[pos + 4]
            rows, cols = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return marker, precision, rows, cols, data[pos + 9]
        if marker == 0xDA:  # scan before any frame header
            return None
        pos += 2 + length
    return None


# --- grey-scale transforms (PS3.3 C.11) -------------------------------------------------------


def _grey_transforms(ds: Dataset, frame: int, signed: bool) -> dict[str, Any]:
    """Modality and VOI attributes, from the enhanced functional groups when present."""
    out: dict[str, Any] = {}
    pvt = _functional_group(ds, frame, "PixelValueTransformationSequence")
    src = pvt if pvt is not None else ds
    slope, intercept = _float(src, "RescaleSlope"), _float(src, "RescaleIntercept")
    if slope is not None and slope != 0:
        out["rescale_slope"] = slope
    if intercept is not None:
        out["rescale_intercept"] = intercept
    if pvt is None and "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence):
        # PS3.3 C.11.1: a Modality LUT replaces Rescale Slope/Intercept when present
        out["modality_lut"] = _lut_data(ds.ModalityLUTSequence[0], signed)

    voi = _functional_group(ds, frame, "FrameVOILUTSequence")
    src = voi if voi is not None else ds
    center, width = _float(src, "WindowCenter"), _float(src, "WindowWidth")
    if center is not None and width is not None and width > 0:
        out["window_center"], out["window_width"] = center, width
    function = str(src.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    out["voi_lut_function"] = function if function in _VOI_FUNCTIONS else "LINEAR"
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        # the VOI LUT's input is the modality output: signed when the stored values are, or
        # when a negative intercept makes it so (the descriptor may then be read as US)
        signed_out = signed or out.get("rescale_intercept", 0.0) < 0
        out["voi_lut"] = _lut_data(ds.VOILUTSequence[0], signed_out)
    return out


def _functional_group(ds: Dataset, frame: int, keyword: str) -> Dataset | None:
    """First item of `keyword` in the frame's per-frame group, else in the shared group."""
    groups: list[Dataset] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared is not None and len(shared):
        groups.append(shared[0])
    for group in groups:
        seq = group.get(keyword)
        if seq is not None and len(seq):
            item: Dataset = seq[0]
            return item
    return None


def _float(ds: Dataset, keyword: str) -> float | None:
    """First value of a DS/IS element as float, or None when absent, empty or not finite."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if not isinstance(value, str | bytes | int | float):
        try:
            value = value[0]  # multi-valued: the first value is the default
        except (TypeError, IndexError):
            return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) else None


def _lut_data(item: Dataset, signed: bool) -> LUTData:
    """Modality/VOI LUT item → LUTData (PS3.3 C.11.1.1.1 / C.11.2.1.1 descriptor rules)."""
    desc = [int(v) for v in item.LUTDescriptor]
    entries = desc[0] or 65536
    first = desc[1]
    if signed and first > 32767:
        first -= 65536  # descriptor read as US while the input range is signed
    raw = item.LUTData
    if isinstance(raw, bytes):
        data = np.frombuffer(raw, dtype="<u2" if len(raw) >= 2 * entries else "u1")
    else:
        data = np.asarray(raw if isinstance(raw, list) else [raw], dtype=np.int64)
    data = data[:entries].astype("<u2")
    bits = desc[2]
    top = int(data.max()) if data.size else 0
    if top >= 1 << bits:
        bits = max(top.bit_length(), 8)  # descriptor understates the depth: trust the data
    return LUTData(first_mapped=first, bits=bits, data=data.tobytes())


def _palette(ds: Dataset) -> PaletteLUT:
    try:
        desc = [int(v) for v in ds.RedPaletteColorLookupTableDescriptor]
        entries, first = desc[0] or 65536, desc[1]
        if int(ds.get("PixelRepresentation", 0)) == 1 and first > 32767:
            first -= 65536
        index = np.arange(first, first + entries, dtype=np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = apply_color_lut(index, ds)
    except Exception as exc:  # missing or inconsistent palette elements
        raise PixelDataError(f"unusable palette colour lookup tables: {exc}") from exc
    bits = 8 if table.dtype.itemsize == 1 or int(table.max()) < 256 else 16
    table = table[..., :3].astype("<u2")
    return PaletteLUT(
        first_mapped=first,
        bits=bits,
        red=table[:, 0].tobytes(),
        green=table[:, 1].tobytes(),
        blue=table[:, 2].tobytes(),
    )


# --- helpers ----------------------------------------------------------------------------------


def _native_contiguous(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr)


def _replace(info: FrameInfo, **changes: Any) -> FrameInfo:
    return replace(info, **changes)
