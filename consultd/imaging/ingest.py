"""Ingest one uploaded DICOM file, inside a sandboxed worker: check it, de-identify it and
write a clean Part 10 copy.

``ingest_file(src, dst, policy)`` returns :class:`Ingested` or :class:`Refused` (a short code
and a reason without PHI). The checks run cheapest-first and each bounds the cost of the next:

1. file size cap (``too_large``);
2. 128-byte preamble + ``DICM`` (``not_dicom``), the file meta group (``bad_meta``;
   a DICOMDIR is ``dicomdir``);
3. transfer syntax allow-list (``transfer_syntax``) - before the body is touched, since a
   Deflated body is inflated whole by pydicom, ``stop_before_pixels`` or not;
4. a bounded scan of the raw header (``malformed``, ``too_deep``, ``too_many_elements``,
   ``header_too_large``): every element length is checked against its container, sequences
   are followed iteratively with a depth bound, elements are counted - mirroring how pydicom
   will read the same bytes, so that pydicom only ever sees a header already proven bounded;
5. pydicom ``dcmread(force=False, defer_size=..., stop_before_pixels=True)`` of those header
   bytes only (``parse_error``);
6. identity: SOP Class/Instance, Study/Series UIDs present (``missing_attribute``) and of
   UID syntax, digits and dots, at most 64 characters (``bad_uid``);
7. pixel attributes (``no_pixel_data``, ``bad_attribute``) and the pixel budget
   Rows x Columns x Samples x Frames x ceil(BitsAllocated / 8) (``pixel_budget``);
8. Pixel Data structure (``pixel_data_truncated``, ``malformed``) and, for encapsulated
   data, each frame's codestream header (JPEG SOFn, JPEG-LS SOF55, J2K SIZ, RLE segment
   table) against Rows/Columns/Samples/BitsAllocated (``codestream_malformed``,
   ``codestream_mismatch``), before anything is decoded;
9. de-identification (:mod:`consultd.imaging.deid`) unless the host keeps identity;
10. re-serialisation: zeroed preamble (CVE-2019-11687), a fresh file meta group, the
    original transfer syntax, the Pixel Data bytes copied through unchanged, anything after
    Pixel Data (trailing padding, digital signatures) dropped (``write_error``).

A MemoryError is not caught: it reaches the worker pool, which reports the task as a memory
limit breach and replaces the worker (:func:`refused_by_worker` turns that into a refusal).
Nothing here logs or returns attribute values except through :class:`Ingested`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import mmap
import os
import re
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from consultd.imaging import deid
from consultd.imaging.limits import ImagingLimits

# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    """What a room asks of ingest."""

    secret: bytes
    """The room's de-identification secret (HMAC key of the UID remapping)."""
    keep_identity: bool = False
    """Host opt-in: store the original attributes and UIDs unchanged."""
    clean_descriptors: bool = False
    """PS3.15 Clean Descriptors option: keep Series/Study Description when they pass a
    conservative check (no patient name part or identifier, no long digit runs)."""
    limits: ImagingLimits = field(default_factory=ImagingLimits)


@dataclass(frozen=True, slots=True)
class Refused:
    """A file not taken: ``code`` is one of :data:`REFUSAL_CODES`, ``reason`` is for humans
    and never contains values from the file."""

    code: str
    reason: str


Span = tuple[int, int]  # (offset, length) in the stored file


@dataclass(frozen=True, slots=True)
class Ingested:
    """A stored instance: identity, what a viewer needs, and where its frames are."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    instance_number: int | None
    series_number: int | None
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    imager_pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    rescale_slope: float | None
    rescale_intercept: float | None
    window_center: tuple[float, ...]
    window_width: tuple[float, ...]
    lossy: bool
    burned_in: bool
    """Pixels may carry burned-in text (Burned In Annotation YES, or unknown on US/SC):
    warn the host before sharing."""
    deidentified: bool
    dicom_json: dict[str, Any]
    """DICOM JSON model of the stored instance without its Pixel Data value: Pixel Data and
    any binary value over :data:`JSON_BULK_THRESHOLD` bytes carry a ``BulkDataURI`` of
    the form ``bulkdata:<tag as 8 hex digits>`` (Pixel Data: :data:`PIXEL_DATA_URI`) for
    the caller to replace with a real URI."""
    sha256: str
    bytes: int
    pixel_data_offset: int
    """Offset of the Pixel Data value in the stored file."""
    frame_spans: tuple[tuple[Span, ...], ...]
    """Per frame, its byte spans in the stored file: one span per native frame (for 1-bit
    data the bytes holding the frame's bits), the fragments of each encapsulated frame."""
    warnings: tuple[str, ...] = ()
    """Non-PHI notes, e.g. ``burned_in_annotation_possible``."""


REFUSAL_CODES: Final = frozenset(
    {
        "too_large",
        "not_dicom",
        "bad_meta",
        "dicomdir",
        "transfer_syntax",
        "malformed",
        "too_deep",
        "too_many_elements",
        "header_too_large",
        "parse_error",
        "missing_attribute",
        "bad_uid",
        "no_pixel_data",
        "bad_attribute",
        "pixel_budget",
        "pixel_data_truncated",
        "codestream_malformed",
        "codestream_mismatch",
        "write_error",
        "resource_limit",
    }
)

PIXEL_DATA_URI: Final = "bulkdata:7FE00010"
JSON_BULK_THRESHOLD: Final = 16 * 1024
DEFER_SIZE: Final = 64 * 1024
ZERO_PREAMBLE: Final = bytes(128)


def refused_by_worker(kind: str) -> Refused:
    """The refusal for a file whose ingest task broke a worker limit (``kind`` of
    :class:`~consultd.imaging.sandbox.WorkerLimitExceeded`)."""
    return Refused("resource_limit", f"inspecting the file exceeded the worker's {kind} limit")


class _Refuse(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code)
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Transfer syntaxes

NATIVE, JPEG, JPEGLS, J2K, RLE = "native", "jpeg", "jpegls", "j2k", "rle"
IMPLICIT_VR_LE: Final = "1.2.840.10008.1.2"
ALLOWED_TRANSFER_SYNTAXES: Final = {
    IMPLICIT_VR_LE: NATIVE,
    "1.2.840.10008.1.2.1": NATIVE,  # Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50": JPEG,  # JPEG Baseline (8 bit)
    "1.2.840.10008.1.2.4.51": JPEG,  # JPEG Extended (12 bit)
    "1.2.840.10008.1.2.4.57": JPEG,  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": JPEG,  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80": JPEGLS,  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": JPEGLS,  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": J2K,  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": J2K,  # JPEG 2000
    "1.2.840.10008.1.2.5": RLE,  # RLE Lossless
}
_LOSSY_TS: Final = frozenset(
    {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}
)
_REFUSED_TS: Final = {
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian is not accepted (pydicom "
    "inflates the whole body before any check); export it uncompressed or with a lossless codec",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian (retired) is not accepted; "
    "export it as Explicit VR Little Endian",
}

# --------------------------------------------------------------------------------------------
# Raw header scan

_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS: Final = frozenset({0x7FE00008, 0x7FE00009, _PIXEL_DATA})
_DICOMDIR_CLASS: Final = "1.2.840.10008.1.3.10"
_ENCODED_VR: Final = frozenset(vr.encode() for vr in VR)
_LONG_VR: Final = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
_MAX_META_BYTES: Final = 64 * 1024
_TAG_LEN = struct.Struct("<HHI")
_EXPLICIT_HEAD = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


@dataclass(slots=True)
class _PixelElement:
    tag: int
    vr: str | None
    offset: int  # start of the element (its tag)
    value: int  # start of its value
    length: int  # _UNDEFINED for encapsulated


@dataclass(slots=True)
class _Scan:
    transfer_syntax: str
    implicit: bool
    header_end: int  # where Pixel Data starts (or where the dataset ends)
    pixel: _PixelElement | None
    elements: int
    depth: int


def _parse_meta(buf: mmap.mmap, size: int) -> tuple[int, dict[int, bytes]]:
    """File meta group (explicit VR LE) after the preamble: (end offset, tag -> value)."""
    pos = 132
    meta: dict[int, bytes] = {}
    while pos + 8 <= size:
        group, elem, vr, short_len = _EXPLICIT_HEAD.unpack_from(buf, pos)
        if group != 0x0002:
            break
        if vr in _LONG_VR:
            if pos + 12 > size:
                raise _Refuse("bad_meta", "the file meta group is truncated")
            length = _U32.unpack_from(buf, pos + 8)[0]
            value = pos + 12
        elif vr in _ENCODED_VR:
            length = short_len
            value = pos + 8
        else:
            raise _Refuse("bad_meta", "the file meta group is not Explicit VR Little Endian")
        end = value + length
        if length == _UNDEFINED or end > size or end - 132 > _MAX_META_BYTES:
            raise _Refuse("bad_meta", "the file meta group has an impossible length")
        meta[group << 16 | elem] = bytes(buf[value:end])
        pos = end
    return pos, meta


def _uid_text(raw: bytes | None) -> str:
    return raw.decode("ascii", "replace").rstrip("\0 ").strip() if raw else ""


def _dict_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _looks_implicit(buf: mmap.mmap, pos: int, end: int, assume: bool) -> bool:
    """pydicom's check of a dataset's first element: a VR must be two capital letters."""
    if pos + 6 > end:
        return assume
    b0, b1 = buf[pos + 4], buf[pos + 5]
    return not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)


class _Frame:
    __slots__ = ("end", "implicit", "is_seq")

    def __init__(self, is_seq: bool, end: int | None, implicit: bool) -> None:
        self.is_seq = is_seq
        self.end = end  # None: undefined length, ends at a delimiter
        self.implicit = implicit


def _scan_header(buf: mmap.mmap, size: int, limits: ImagingLimits) -> _Scan:
    """Walk the raw header as pydicom would read it, bounding lengths, depth and count."""
    meta_end, meta = _parse_meta(buf, size)
    ts = _uid_text(meta.get(0x00020010))
    if not ts:
        raise _Refuse("bad_meta", "the file meta group has no Transfer Syntax UID")
    if _uid_text(meta.get(0x00020002)) == _DICOMDIR_CLASS:
        raise _Refuse("dicomdir", "a DICOMDIR (media index), not an image")
    if ts in _REFUSED_TS:
        raise _Refuse("transfer_syntax", _REFUSED_TS[ts])
    if ts not in ALLOWED_TRANSFER_SYNTAXES:
        shown = ts if _UID_RE.fullmatch(ts) and len(ts) <= 64 else "(invalid UID)"
        raise _Refuse("transfer_syntax", f"transfer syntax {shown} is not supported")
    declared_implicit = ts == IMPLICIT_VR_LE
    max_elements = limits.max_header_elements
    max_depth = limits.max_sequence_depth
    max_header = limits.max_header_bytes
    elements = 0
    depth = max_seen = 0
    pos = meta_end

    # Command group (0000,eeee): pydicom reads it as implicit VR before the dataset.
    while pos + 8 <= size and _U16.unpack_from(buf, pos)[0] == 0:
        length = _TAG_LEN.unpack_from(buf, pos)[2]
        if length == _UNDEFINED or pos + 8 + length > size:
            raise _Refuse("malformed", "a command group element has an impossible length")
        pos += 8 + length
        elements += 1

    top_implicit = _looks_implicit(buf, pos, size, declared_implicit)
    if pos + 8 <= size and top_implicit != declared_implicit:
        first = _U32.unpack_from(buf, pos)[0]
        first = (first & 0xFFFF) << 16 | first >> 16
        if first not in _PIXEL_TAGS:
            raise _Refuse("malformed", "the dataset's VR encoding contradicts its transfer syntax")
    stack = [_Frame(False, None, declared_implicit)]
    pixel: _PixelElement | None = None
    header_end = size

    while True:
        frame = stack[-1]
        end = frame.end
        if end is not None and pos == end:  # defined-length item or sequence complete
            stack.pop()
            if frame.is_seq:
                depth -= 1
            continue
        limit = size if end is None else end
        if pos + 8 > limit:
            if len(stack) == 1 and pos == size:
                break  # end of file: a dataset without Pixel Data
            raise _Refuse("malformed", "the header is truncated or an element overruns its item")
        if len(stack) == 1 and pos > max_header:
            raise _Refuse(
                "header_too_large", f"the header exceeds {max_header // (1024 * 1024)} MiB"
            )
        group, elem, length = _TAG_LEN.unpack_from(buf, pos)
        tag = group << 16 | elem
        elements += 1
        if elements > max_elements:
            raise _Refuse(
                "too_many_elements", f"the header holds more than {max_elements} elements"
            )

        if frame.is_seq:  # inside a sequence: only items and (undefined length) its end
            pos += 8
            if tag == _ITEM:
                item_end = None if length == _UNDEFINED else pos + length
                if item_end is not None and item_end > limit:
                    raise _Refuse("malformed", "a sequence item overruns its sequence")
                implicit = frame.implicit or _looks_implicit(buf, pos, item_end or size, False)
                stack.append(_Frame(False, item_end, implicit))
            elif tag == _SEQ_END and end is None:
                stack.pop()
                depth -= 1
            else:
                raise _Refuse("malformed", "a sequence holds something other than items")
            continue

        if tag == _ITEM_END:  # pydicom ends the current dataset here, at any level
            if len(stack) == 1:
                header_end = pos
                break
            if end is not None:
                raise _Refuse("malformed", "an item delimiter inside a defined-length item")
            stack.pop()
            pos += 8
            continue

        # The element header, decoded the way pydicom's data_element_generator does.
        vr: str | None
        if frame.implicit:
            vr, head = None, 8
        else:
            raw_vr = buf[pos + 4 : pos + 6]
            if raw_vr in _ENCODED_VR:
                vr = raw_vr.decode()
                if raw_vr in _LONG_VR:
                    if pos + 12 > limit:
                        raise _Refuse("malformed", "the header is truncated")
                    length, head = _U32.unpack_from(buf, pos + 8)[0], 12
                else:
                    length, head = _U16.unpack_from(buf, pos + 6)[0], 8
            elif not (b"AA" <= raw_vr <= b"ZZ"):  # pydicom switches to implicit for it
                vr, head = None, 8
            else:  # an unknown VR: pydicom assumes a 2-byte length
                vr = raw_vr.decode("latin-1")
                length, head = _U16.unpack_from(buf, pos + 6)[0], 8

        if len(stack) == 1 and tag in _PIXEL_TAGS:
            pixel = _PixelElement(tag, vr, pos, pos + head, length)
            header_end = pos
            break

        value = pos + head
        if length == _UNDEFINED:
            if vr == "UN" or vr == "SQ":
                is_seq = True
            elif vr is None:
                dvr = _dict_vr(tag)
                is_seq = dvr == "SQ" or (
                    dvr is None and value + 4 <= limit and _item_at(buf, value)
                )
            else:
                is_seq = False
            if is_seq:
                depth += 1
                max_seen = max(max_seen, depth)
                if depth > max_depth:
                    raise _Refuse("too_deep", f"sequences nest deeper than {max_depth} levels")
                stack.append(_Frame(True, None, frame.implicit))
                pos = value
                continue
            if tag == _PIXEL_DATA:  # a nested (icon) encapsulated image: up to its delimiter
                found = buf.find(b"\xfe\xff\xdd\xe0", value, limit)
                if found < 0:
                    raise _Refuse("malformed", "a nested Pixel Data has no end")
                pos = found + 8
                continue
            raise _Refuse("malformed", "an element other than a sequence has undefined length")

        value_end = value + length
        if value_end > limit:
            raise _Refuse("malformed", "an element claims more bytes than its container holds")
        is_seq = vr == "SQ"
        if not is_seq and (vr is None or vr == "UN") and length >= 8:
            dvr = _dict_vr(tag)
            # Converted lazily by pydicom as a sequence when the dictionary (or a private
            # dictionary, hence the item-tag probe) says SQ.
            is_seq = dvr == "SQ" or (dvr in (None, "UN") and _item_at(buf, value))
        if is_seq and length:
            depth += 1
            max_seen = max(max_seen, depth)
            if depth > max_depth:
                raise _Refuse("too_deep", f"sequences nest deeper than {max_depth} levels")
            stack.append(_Frame(True, value_end, frame.implicit))
            pos = value
            continue
        pos = value_end

    if header_end > max_header:
        raise _Refuse("header_too_large", f"the header exceeds {max_header // (1024 * 1024)} MiB")
    return _Scan(ts, declared_implicit, header_end, pixel, elements, max_seen)


def _item_at(buf: mmap.mmap, pos: int) -> bool:
    return bool(_U32.unpack_from(buf, pos)[0] == 0xE000FFFE)


# --------------------------------------------------------------------------------------------
# Encapsulated Pixel Data and codestream headers


def _fragments(
    buf: mmap.mmap, pixel: _PixelElement, size: int, limit: int
) -> tuple[list[Span], int]:
    """Items of encapsulated Pixel Data as (value offset, length), Basic Offset Table first,
    and the offset just past the sequence delimiter."""
    pos = pixel.value
    items: list[Span] = []
    while True:
        if pos + 8 > size:
            raise _Refuse("pixel_data_truncated", "the encapsulated Pixel Data has no end")
        group, elem, length = _TAG_LEN.unpack_from(buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQ_END:
            return items, pos
        if tag != _ITEM or length == _UNDEFINED:
            raise _Refuse("malformed", "the encapsulated Pixel Data holds a non-item")
        if pos + length > size:
            raise _Refuse("pixel_data_truncated", "a Pixel Data fragment runs past the file end")
        items.append((pos, length))
        if len(items) > limit:
            raise _Refuse("malformed", f"the Pixel Data has more than {limit} fragments")
        pos += length


_SOI = b"\xff\xd8"
_J2K_SOC = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def _starts_frame(buf: mmap.mmap, span: Span, codec: str) -> bool:
    head = bytes(buf[span[0] : span[0] + min(span[1], 12)])
    if codec == J2K:
        return head.startswith(_J2K_SOC) or head.startswith(_JP2_SIGNATURE)
    return head.startswith(_SOI)


def _offsets(raw: bytes, width: int) -> list[int]:
    fmt = f"<{len(raw) // width}{'I' if width == 4 else 'Q'}"
    return list(struct.unpack_from(fmt, raw))


def _frames_of(
    buf: mmap.mmap,
    items: list[Span],
    frames: int,
    codec: str,
    extended_offsets: bytes | None,
) -> list[list[Span]]:
    """Group fragments into frames: one frame takes all; one fragment per frame; else the
    Extended or Basic Offset Table; else (JPEG family) a frame starts at each start marker."""
    bot, frags = items[0], items[1:]
    if not frags:
        raise _Refuse("pixel_data_truncated", "the encapsulated Pixel Data has no fragments")
    if frames == 1:
        return [frags]
    if len(frags) == frames:
        return [[f] for f in frags]
    if extended_offsets:
        offsets = _offsets(extended_offsets, 8)
    elif bot[1]:
        offsets = _offsets(bytes(buf[bot[0] : bot[0] + bot[1]]), 4)
    else:
        offsets = []
    if offsets:
        if len(offsets) != frames or offsets[0] != 0 or offsets != sorted(offsets):
            raise _Refuse("malformed", "the Pixel Data offset table does not match its frames")
        base = frags[0][0] - 8  # offsets count from the first fragment's item tag
        starts = {f[0] - 8 - base: i for i, f in enumerate(frags)}
        if any(o not in starts for o in offsets):
            raise _Refuse("malformed", "the Pixel Data offset table points between fragments")
        bounds = [starts[o] for o in offsets] + [len(frags)]
        return [frags[bounds[i] : bounds[i + 1]] for i in range(frames)]
    if codec != RLE:
        firsts = [i for i, f in enumerate(frags) if _starts_frame(buf, f, codec)]
        if len(firsts) == frames and firsts[0] == 0:
            bounds = [*firsts, len(frags)]
            return [frags[bounds[i] : bounds[i + 1]] for i in range(frames)]
    raise _Refuse("malformed", "the Pixel Data fragments cannot be assigned to its frames")


class _View:
    """Random access to the bytes of one frame spread over fragments."""

    __slots__ = ("buf", "spans")

    def __init__(self, buf: mmap.mmap, spans: list[Span]) -> None:
        self.buf = buf
        self.spans = spans

    def get(self, pos: int, n: int) -> bytes:
        out = b""
        for offset, length in self.spans:
            if pos >= length:
                pos -= length
                continue
            take = min(n - len(out), length - pos)
            out += self.buf[offset + pos : offset + pos + take]
            pos = 0
            if len(out) == n:
                break
        return out


_SOF_MARKERS: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
)
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True, slots=True)
class _Geometry:
    rows: int
    columns: int
    samples: int
    precision: int
    tiles: int = 1


def _jpeg_header(view: _View) -> _Geometry:
    """SOFn (or JPEG-LS SOF55) of a JPEG-family codestream: walk the marker segments."""
    if view.get(0, 2) != _SOI:
        raise _Refuse("codestream_malformed", "a frame does not start with a JPEG SOI marker")
    pos = 2
    for _ in range(512):
        head = view.get(pos, 4)
        if len(head) < 2 or head[0] != 0xFF:
            raise _Refuse("codestream_malformed", "a JPEG frame has a broken marker segment")
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xDA, 0xD9) or len(head) < 4:
            raise _Refuse("codestream_malformed", "a JPEG frame has no frame header (SOF)")
        seg_len = struct.unpack(">H", head[2:4])[0]
        if seg_len < 2:
            raise _Refuse("codestream_malformed", "a JPEG frame has a broken marker segment")
        if marker in _SOF_MARKERS:
            sof = view.get(pos + 4, 6)
            if len(sof) < 6:
                raise _Refuse("codestream_malformed", "a JPEG frame header is truncated")
            precision, rows, cols, comps = struct.unpack(">BHHB", sof)
            return _Geometry(rows, cols, comps, precision)
        pos += 2 + seg_len
    raise _Refuse("codestream_malformed", "a JPEG frame has too many segments before its SOF")


def _j2k_header(view: _View) -> _Geometry:
    """SIZ of a JPEG 2000 codestream (inside a JP2 'jp2c' box if wrapped)."""
    start = 0
    if view.get(0, 12) == _JP2_SIGNATURE:
        pos = 12
        for _ in range(64):
            box = view.get(pos, 8)
            if len(box) < 8:
                break
            length, kind = struct.unpack(">I4s", box)
            if kind == b"jp2c":
                start = pos + 8
                break
            if length < 8:
                break
            pos += length
        else:
            start = 0
        if start == 0:
            raise _Refuse("codestream_malformed", "a JP2 frame has no codestream box")
    head = view.get(start, 42)
    if len(head) < 42 or not head.startswith(_J2K_SOC):
        raise _Refuse("codestream_malformed", "a JPEG 2000 frame does not start with SOC+SIZ")
    (_lsiz, _rsiz, xsiz, ysiz, xo, yo, xt, yt, xto, yto, csiz) = struct.unpack(
        ">HHIIIIIIIIH", head[4:42]
    )
    if not (0 < csiz <= 4) or xt == 0 or yt == 0 or xo >= xsiz or yo >= ysiz:
        raise _Refuse("codestream_malformed", "a JPEG 2000 SIZ marker is invalid")
    tiles = math.ceil((xsiz - xto) / xt) * math.ceil((ysiz - yto) / yt)
    comps = view.get(start + 42, 3 * csiz)
    if len(comps) < 3 * csiz:
        raise _Refuse("codestream_malformed", "a JPEG 2000 SIZ marker is truncated")
    precision = max((comps[3 * i] & 0x7F) + 1 for i in range(csiz))
    if any(comps[3 * i + 1] == 0 or comps[3 * i + 2] == 0 for i in range(csiz)):
        raise _Refuse("codestream_malformed", "a JPEG 2000 SIZ marker is invalid")
    return _Geometry(ysiz - yo, xsiz - xo, csiz, precision, tiles)


_MAX_J2K_TILES: Final = 16384


def _check_rle(view: _View, frame_len: int, samples: int, bytes_per_sample: int) -> None:
    head = view.get(0, 64)
    if len(head) < 64:
        raise _Refuse("codestream_malformed", "an RLE frame is shorter than its header")
    count, *offsets = struct.unpack("<16I", head)
    if count != samples * bytes_per_sample:
        raise _Refuse(
            "codestream_mismatch",
            f"an RLE frame has {count} segments, the header implies {samples * bytes_per_sample}",
        )
    used = offsets[:count]
    if used[0] != 64 or used != sorted(used) or used[-1] >= frame_len:
        raise _Refuse("codestream_malformed", "an RLE frame has an invalid segment table")


def _check_codestreams(buf: mmap.mmap, frames: list[list[Span]], codec: str, img: _Image) -> None:
    bps = img.bytes_per_sample
    for spans in frames:
        view = _View(buf, spans)
        if codec == RLE:
            _check_rle(view, sum(s[1] for s in spans), img.samples, bps)
            continue
        geo = _j2k_header(view) if codec == J2K else _jpeg_header(view)
        if (geo.rows, geo.columns, geo.samples) != (img.rows, img.columns, img.samples):
            raise _Refuse(
                "codestream_mismatch",
                f"a frame's codestream is {geo.columns}x{geo.rows}x{geo.samples}, the header "
                f"says {img.columns}x{img.rows}x{img.samples}",
            )
        if not 2 <= geo.precision <= 16 or math.ceil(geo.precision / 8) > bps:
            raise _Refuse(
                "codestream_mismatch",
                f"a frame's codestream has {geo.precision}-bit samples for "
                f"{img.bits_allocated} bits allocated",
            )
        if geo.tiles > _MAX_J2K_TILES:  # each costs openjpeg bookkeeping before any pixel
            raise _Refuse("codestream_malformed", f"a JPEG 2000 frame has {geo.tiles} tiles")


# --------------------------------------------------------------------------------------------
# Attributes

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_IDENTITY: Final = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True, slots=True)
class _Image:
    rows: int
    columns: int
    samples: int
    frames: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str

    @property
    def bytes_per_sample(self) -> int:
        return math.ceil(self.bits_allocated / 8)

    @property
    def frame_bits(self) -> int:
        bits = self.rows * self.columns * self.samples * self.bits_allocated
        if self.photometric == "YBR_FULL_422":  # native 4:2:2 stores 2 samples per pixel
            bits = bits // 3 * 2
        return bits


def _get(ds: Dataset, keyword: str) -> Any:
    try:
        return ds.get(keyword)
    except Exception:
        raise _Refuse("bad_attribute", f"{keyword} cannot be read") from None


def _uid(ds: Dataset, keyword: str) -> str:
    value = _get(ds, keyword)
    if value is None or str(value).strip() == "":
        raise _Refuse("missing_attribute", f"{keyword} is missing")
    text = str(value).strip()
    if len(text) > 64 or not _UID_RE.fullmatch(text):
        raise _Refuse("bad_uid", f"{keyword} is not a valid UID")
    return text


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = _get(ds, keyword)
    if value is None or value == "":
        if default is None:
            raise _Refuse("missing_attribute", f"{keyword} is missing")
        return default
    if isinstance(value, MultiValue | list):
        value = value[0] if value else default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Refuse("bad_attribute", f"{keyword} is not an integer") from None


def _image(ds: Dataset, limits: ImagingLimits) -> _Image:
    rows = _int(ds, "Rows")
    cols = _int(ds, "Columns")
    bits_allocated = _int(ds, "BitsAllocated")
    samples = _int(ds, "SamplesPerPixel", 1)
    frames = _int(ds, "NumberOfFrames", 1)
    bits_stored = _int(ds, "BitsStored", bits_allocated)
    representation = _int(ds, "PixelRepresentation", 0)
    photometric = str(_get(ds, "PhotometricInterpretation") or "").strip().upper()
    if not photometric:
        photometric = "MONOCHROME2" if samples == 1 else "RGB"
    if rows < 1 or cols < 1 or frames < 1:
        raise _Refuse("bad_attribute", "Rows, Columns and Number of Frames must be positive")
    if bits_allocated not in (1, 8, 16, 32) or not 1 <= bits_stored <= bits_allocated:
        raise _Refuse("bad_attribute", f"{bits_allocated}/{bits_stored} bits are not supported")
    if samples not in (1, 3) or representation not in (0, 1):
        raise _Refuse("bad_attribute", "Samples per Pixel or Pixel Representation is invalid")
    img = _Image(
        rows, cols, samples, frames, bits_allocated, bits_stored, representation, photometric
    )
    frame_bytes = rows * cols * samples * img.bytes_per_sample
    if frames > limits.max_frames:
        raise _Refuse("pixel_budget", f"{frames} frames exceed the limit of {limits.max_frames}")
    if frame_bytes > limits.max_frame_pixel_bytes:
        raise _Refuse(
            "pixel_budget",
            f"one {cols}x{rows}x{samples} frame decodes to {frame_bytes} bytes, over the "
            f"budget of {limits.max_frame_pixel_bytes}",
        )
    if frame_bytes * frames > limits.max_instance_pixel_bytes:
        raise _Refuse(
            "pixel_budget",
            f"{frames} frames decode to {frame_bytes * frames} bytes, over the budget of "
            f"{limits.max_instance_pixel_bytes}",
        )
    return img


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _floats(ds: Dataset, keyword: str) -> tuple[float, ...] | None:
    try:
        value = ds.get(keyword)
    except Exception:
        return None
    if value is None or value == "":
        return None
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    out = [_float(v) for v in items]
    return tuple(v for v in out if v is not None) if all(v is not None for v in out) else None


def _fixed(values: tuple[float, ...] | None, n: int) -> Any:
    return values if values is not None and len(values) == n else None


def _opt_int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except Exception:
        return None


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:
        return ""
    return str(value).strip() if value is not None else ""


# --------------------------------------------------------------------------------------------
# The whole


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings or pydicom log records leave ingest (they may quote attribute values), and
    pydicom does not validate values on read or write: a value that was invalid in the
    upload is stored as it came (validation costs ~40% of ingest's CPU and only warns)."""
    logger = logging.getLogger("pydicom")
    settings = pydicom.config.settings
    saved = (logger.disabled, settings.reading_validation_mode, settings.writing_validation_mode)
    logger.disabled = True
    settings.reading_validation_mode = pydicom.config.IGNORE
    settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = saved[0]
        settings.reading_validation_mode = saved[1]
        settings.writing_validation_mode = saved[2]


def ingest_file(src: str, dst: str, policy: IngestPolicy) -> Ingested | Refused:
    """Check ``src``, de-identify it per ``policy`` and write the result to ``dst``.

    ``dst`` is written (truncated) only for an :class:`Ingested` result; a refusal leaves no
    file there. Meant to run in a :class:`~consultd.imaging.sandbox.WorkerPool` worker.
    """
    try:
        f = open(src, "rb")  # closed by the with below
    except OSError as exc:
        return Refused("not_dicom", f"the upload cannot be read as a file ({exc.strerror})")
    try:
        with _quiet(), f:
            size = os.fstat(f.fileno()).st_size
            if size > policy.limits.max_file_bytes:
                raise _Refuse(
                    "too_large",
                    f"the file is {size} bytes, over the limit of {policy.limits.max_file_bytes}",
                )
            if size < 132:
                raise _Refuse("not_dicom", "not a DICOM Part 10 file (too short)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                if buf[128:132] != b"DICM":
                    raise _Refuse("not_dicom", "not a DICOM Part 10 file (no 'DICM' prefix)")
                return _ingest(buf, size, dst, policy)
    except _Refuse as r:
        with contextlib.suppress(OSError):
            os.unlink(dst)
        return Refused(r.code, r.reason)
    except MemoryError:
        with contextlib.suppress(OSError):
            os.unlink(dst)
        raise
    except RecursionError:
        with contextlib.suppress(OSError):
            os.unlink(dst)
        return Refused("too_deep", "the header nests too deeply to parse")
    except Exception as exc:  # never let a parser's surprise out; its text may hold PHI
        with contextlib.suppress(OSError):
            os.unlink(dst)
        return Refused("parse_error", f"the file could not be read ({type(exc).__name__})")


def _ingest(buf: mmap.mmap, size: int, dst: str, policy: IngestPolicy) -> Ingested:
    limits = policy.limits
    scan = _scan_header(buf, size, limits)
    try:
        ds = pydicom.dcmread(
            io.BytesIO(buf[: scan.header_end]),
            defer_size=DEFER_SIZE,
            stop_before_pixels=True,
            force=False,
        )
    except (MemoryError, RecursionError):
        raise  # the pool's memory limit / ingest_file's refusal deal with these
    except Exception as exc:
        name = type(exc).__name__
        raise _Refuse("parse_error", f"pydicom cannot parse the header ({name})") from None

    for keyword in _IDENTITY:  # checked here; the stored values are read after de-id
        _uid(ds, keyword)

    pixel = scan.pixel
    if pixel is None:
        raise _Refuse(
            "no_pixel_data",
            "not an image: no Pixel Data (reports and other objects are not shared)",
        )
    if pixel.tag != _PIXEL_DATA:
        raise _Refuse("no_pixel_data", "float Pixel Data is not supported")
    img = _image(ds, limits)
    codec = ALLOWED_TRANSFER_SYNTAXES[scan.transfer_syntax]

    # Pixel Data structure, then codestream headers: still nothing decoded.
    if codec == NATIVE:
        if pixel.length == _UNDEFINED:
            raise _Refuse("malformed", "native Pixel Data has undefined length")
        expected = math.ceil(img.frame_bits * img.frames / 8)
        if pixel.value + pixel.length > size or pixel.length < expected:
            raise _Refuse(
                "pixel_data_truncated",
                f"Pixel Data holds {min(pixel.length, size - pixel.value)} bytes, "
                f"{expected} expected",
            )
        value_end = pixel.value + pixel.length
        frame_groups: list[list[Span]] = []
    else:
        if pixel.length != _UNDEFINED:
            raise _Refuse("malformed", "compressed Pixel Data is not encapsulated")
        items, value_end = _fragments(buf, pixel, size, limits.max_fragments)
        try:
            eot = ds.get(0x7FE00001)
            eot_bytes = bytes(eot.value) if eot is not None and eot.value else None
        except Exception:
            eot_bytes = None
        frame_groups = _frames_of(buf, items, img.frames, codec, eot_bytes)
        _check_codestreams(buf, frame_groups, codec, img)

    warns: list[str] = []
    burned_in = deid.burned_in_annotation(ds)
    if burned_in:
        warns.append("burned_in_annotation_possible")
    if not policy.keep_identity:
        deid.deidentify(ds, policy.secret, clean_descriptors=policy.clean_descriptors)

    sop_class, instance, study, series = (_uid(ds, keyword) for keyword in _IDENTITY)
    ds.file_meta = _file_meta(sop_class, instance, scan.transfer_syntax)
    ds.preamble = ZERO_PREAMBLE
    for tag in [t for t in ds.keys() if t >> 16 in (0x0000, 0x0002)]:
        del ds[tag]  # command elements do not belong in a file; group 2 lives in file_meta

    header = io.BytesIO()
    try:
        pydicom.dcmwrite(header, ds, enforce_file_format=True)
    except Exception as exc:
        name = type(exc).__name__
        raise _Refuse("write_error", f"the cleaned header cannot be written ({name})") from None
    head = header.getvalue()

    explicit = not scan.implicit
    vr = pixel.vr if pixel.vr in ("OB", "OW") else ("OW" if img.bits_allocated > 8 else "OB")
    if codec != NATIVE:
        vr = "OB"
    length = pixel.length if codec == NATIVE else _UNDEFINED
    pad = codec == NATIVE and length % 2 == 1
    if pad:
        length += 1
    tag_bytes = struct.pack("<HH", 0x7FE0, 0x0010)
    if explicit:
        element_head = tag_bytes + vr.encode() + b"\0\0" + _U32.pack(length)
    else:
        element_head = tag_bytes + _U32.pack(length)
    out_value = len(head) + len(element_head)
    shift = out_value - pixel.value

    try:
        digest, written = _write(dst, buf, head + element_head, pixel.value, value_end, pad)
    except OSError as exc:
        raise _Refuse(
            "write_error", f"the stored copy cannot be written ({exc.strerror})"
        ) from None

    spans: tuple[tuple[Span, ...], ...]
    if codec == NATIVE:
        bits = img.frame_bits
        spans = tuple(
            ((out_value + i * bits // 8, math.ceil((i + 1) * bits / 8) - i * bits // 8),)
            for i in range(img.frames)
        )
    else:
        spans = tuple(tuple((o + shift, n) for o, n in g) for g in frame_groups)

    json_model = ds.to_json_dict(
        bulk_data_threshold=JSON_BULK_THRESHOLD,
        bulk_data_element_handler=_bulk_uri,
        suppress_invalid_tags=True,
    )
    json_model["7FE00010"] = {"vr": vr, "BulkDataURI": PIXEL_DATA_URI}

    lossy = scan.transfer_syntax in _LOSSY_TS or _text(ds, "LossyImageCompression") == "01"
    return Ingested(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=instance,
        sop_class_uid=sop_class,
        transfer_syntax=scan.transfer_syntax,
        modality=_text(ds, "Modality").upper()[:16],
        rows=img.rows,
        columns=img.columns,
        frames=img.frames,
        samples_per_pixel=img.samples,
        bits_allocated=img.bits_allocated,
        bits_stored=img.bits_stored,
        pixel_representation=img.pixel_representation,
        photometric=img.photometric,
        instance_number=_opt_int(ds, "InstanceNumber"),
        series_number=_opt_int(ds, "SeriesNumber"),
        image_position=_fixed(_floats(ds, "ImagePositionPatient"), 3),
        image_orientation=_fixed(_floats(ds, "ImageOrientationPatient"), 6),
        pixel_spacing=_fixed(_floats(ds, "PixelSpacing"), 2),
        imager_pixel_spacing=_fixed(_floats(ds, "ImagerPixelSpacing"), 2),
        slice_thickness=_first(_floats(ds, "SliceThickness")),
        rescale_slope=_first(_floats(ds, "RescaleSlope")),
        rescale_intercept=_first(_floats(ds, "RescaleIntercept")),
        window_center=_floats(ds, "WindowCenter") or (),
        window_width=_floats(ds, "WindowWidth") or (),
        lossy=lossy,
        burned_in=burned_in,
        deidentified=not policy.keep_identity,
        dicom_json=json_model,
        sha256=digest.hexdigest(),
        bytes=written,
        pixel_data_offset=out_value,
        frame_spans=spans,
        warnings=tuple(warns),
    )


def _write(
    dst: str, buf: mmap.mmap, head: bytes, start: int, end: int, pad: bool
) -> tuple[Any, int]:
    """Write ``head`` then ``buf[start:end]`` (+ a pad byte) to ``dst``, hashing as it goes."""
    digest = hashlib.sha256(head)
    with open(dst, "wb") as out:
        out.write(head)
        with memoryview(buf) as view:
            for at in range(start, end, 1 << 20):
                with view[at : min(at + (1 << 20), end)] as piece:
                    out.write(piece)
                    digest.update(piece)
        if pad:
            out.write(b"\0")
            digest.update(b"\0")
    return digest, len(head) + end - start + pad


def _first(values: tuple[float, ...] | None) -> float | None:
    return values[0] if values else None


def _bulk_uri(elem: DataElement) -> str:
    return f"bulkdata:{elem.tag:08X}"


def _file_meta(sop_class: str, instance: str, ts: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(instance)
    meta.TransferSyntaxUID = UID(ts)
    return meta
