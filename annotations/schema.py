"""The shared-annotation schema: plain typed validation of one annotation's JSON value.

Each annotation is one JSON object, kept whole as a value of the room image's ``Y.Map``
(keyed by its ``id``; whole-shape last-writer-wins). The readable spec with an example per
kind is ``annotations/SCHEMA.md``; in short::

    {
      "id":      str, 1..64 of [A-Za-z0-9_-]
      "author":  participant id, same alphabet and length as "id"
      "created": ms since the Unix epoch, integer 0..8.64e15
      "updated": same, and not earlier than "created"
      "kind":    "arrow" | "line" | "polyline" | "freehand" | "ellipse" | "rectangle"
                 | "angle" | "point" | "text"
      "style":   {"color": "#rrggbb", "width": 0.5..50,
                  "fill": bool       (only rectangle, ellipse, freehand; optional),
                  "fontSize": 6..200 (only text; optional)}
      "anchor":  {"study_uid", "series_uid", "instance_uid": DICOM UIDs (PS3.5 §9.1),
                  "frame": integer >= 1}
      "geometry": {"points": [[x, y], ...],
                   "text": str 1..2000 (text only, required),
                   "closed": bool      (freehand only, optional, default false)}
    }

Points per kind: arrow and line 2 (tail, head); angle 3 (arm end, vertex, arm end);
polyline 2..10000; freehand 2..10000; rectangle and ellipse 2 (opposite corners of the
axis-aligned bounding box, any order); point 1; text 1 (the label's anchor point).

Geometry is in image pixel coordinates: ``x`` along columns, ``y`` down the rows, origin at
the top-left corner of the top-left pixel, so the centre of the pixel at (row r, column c)
is ``(c + 0.5, r + 0.5)``. Coordinates are finite numbers within ±1e6 (they may lie outside
the image). ``style.width`` and ``style.fontSize`` are screen (CSS) pixels.

JSON values only: ``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``float``,
``bool`` (``bool`` is never a number). Yjs numbers arrive as floats, so wherever an integer
is meant (times, ``frame``) an integral float such as ``3.0`` is accepted. Unknown fields
are refused at every level. The compact UTF-8 JSON of one annotation may not exceed
``MAX_SERIALIZED_BYTES``.

``validate_annotation`` returns a frozen ``Annotation`` or raises ``AnnotationError`` naming
the first bad field by its path, e.g. ``geometry.points[3][0]: not a finite number``. It
walks only the schema's own shape, checking each container's length before looking inside,
so huge, deep or garbage values are refused after a handful of checks. Error messages never
echo the offending value (it may be free text, i.e. possible PHI).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "MAX_COORDINATE",
    "MAX_POINTS",
    "MAX_SERIALIZED_BYTES",
    "MAX_TEXT_CHARS",
    "Anchor",
    "Annotation",
    "AnnotationError",
    "Geometry",
    "Kind",
    "Point",
    "Style",
    "in_drawing_order",
    "validate_annotation",
]

#: Largest compact UTF-8 JSON encoding of one annotation, in bytes.
MAX_SERIALIZED_BYTES: Final = 256 * 1024
#: Bound on |x| and |y| of every point, in image pixels.
MAX_COORDINATE: Final = 1e6
#: Most points in a polyline or freehand stroke.
MAX_POINTS: Final = 10_000
#: Longest text label, in code points.
MAX_TEXT_CHARS: Final = 2000
#: Largest time: the end of the ECMAScript Date range (ms since the epoch).
MAX_TIME_MS: Final = 8_640_000_000_000_000
#: Largest frame number (Number of Frames is an IS, at most 2**31 - 1).
MAX_FRAME: Final = 2**31 - 1
MIN_WIDTH: Final = 0.5
MAX_WIDTH: Final = 50.0
MIN_FONT_SIZE: Final = 6.0
MAX_FONT_SIZE: Final = 200.0

Point = tuple[float, float]


class Kind(StrEnum):
    ARROW = "arrow"
    LINE = "line"
    POLYLINE = "polyline"
    FREEHAND = "freehand"
    ELLIPSE = "ellipse"
    RECTANGLE = "rectangle"
    ANGLE = "angle"
    POINT = "point"
    TEXT = "text"


class AnnotationError(ValueError):
    """An annotation value breaks the schema. ``path`` names the field (``style.width``,
    ``geometry.points[3][0]``; ``annotation`` for the value itself); ``str(error)`` is
    ``"<path>: <reason>"``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path + ": " + reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Style:
    color: str
    width: float
    fill: bool | None = None
    font_size: float | None = None


@dataclass(frozen=True, slots=True)
class Anchor:
    study_uid: str
    series_uid: str
    instance_uid: str
    frame: int


@dataclass(frozen=True, slots=True)
class Geometry:
    points: tuple[Point, ...]
    text: str | None = None
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Annotation:
    id: str
    author: str
    created: int
    updated: int
    kind: Kind
    style: Style
    anchor: Anchor
    geometry: Geometry

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON value: integers as ints, optional fields only when set."""
        style: dict[str, Any] = {"color": self.style.color, "width": self.style.width}
        if self.style.fill is not None:
            style["fill"] = self.style.fill
        if self.style.font_size is not None:
            style["fontSize"] = self.style.font_size
        geometry: dict[str, Any] = {"points": [[x, y] for x, y in self.geometry.points]}
        if self.geometry.text is not None:
            geometry["text"] = self.geometry.text
        if self.kind is Kind.FREEHAND:
            geometry["closed"] = self.geometry.closed
        return {
            "id": self.id,
            "author": self.author,
            "created": self.created,
            "updated": self.updated,
            "kind": self.kind.value,
            "style": style,
            "anchor": {
                "study_uid": self.anchor.study_uid,
                "series_uid": self.anchor.series_uid,
                "instance_uid": self.anchor.instance_uid,
                "frame": self.anchor.frame,
            },
            "geometry": geometry,
        }


_ROOT: Final = "annotation"
_TOP_FIELDS: Final = frozenset(
    {"id", "author", "created", "updated", "kind", "style", "anchor", "geometry"}
)
_ANCHOR_FIELDS: Final = frozenset({"study_uid", "series_uid", "instance_uid", "frame"})
_STYLE_FIELDS: Final = {
    k: frozenset(
        {"color", "width"}
        | ({"fill"} if k in (Kind.RECTANGLE, Kind.ELLIPSE, Kind.FREEHAND) else set())
        | ({"fontSize"} if k is Kind.TEXT else set())
    )
    for k in Kind
}
_GEOMETRY_FIELDS: Final = {
    k: frozenset(
        {"points"}
        | ({"text"} if k is Kind.TEXT else set())
        | ({"closed"} if k is Kind.FREEHAND else set())
    )
    for k in Kind
}
_KINDS: Final = {k.value: k for k in Kind}
#: (fewest, most) points per kind.
_POINT_COUNTS: Final = {
    Kind.ARROW: (2, 2),
    Kind.LINE: (2, 2),
    Kind.POLYLINE: (2, MAX_POINTS),
    Kind.FREEHAND: (2, MAX_POINTS),
    Kind.ELLIPSE: (2, 2),
    Kind.RECTANGLE: (2, 2),
    Kind.ANGLE: (3, 3),
    Kind.POINT: (1, 1),
    Kind.TEXT: (1, 1),
}
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UID_RE: Final = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_COLOR_RE: Final = re.compile(r"#[0-9A-Fa-f]{6}")
_KEY_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
#: C0 controls other than tab, LF and CR; DEL; lone UTF-16 surrogates.
_BAD_TEXT_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: Upper bound on the JSON bytes of everything except points and text.
_FIXED_BYTES_BOUND: Final = 1024
#: Upper bound on the JSON bytes of one point: "[" + 2 * 24-char floats + "," + "]" + ",".
_POINT_BYTES_BOUND: Final = 52


def _field(path: str, key: object) -> str:
    if isinstance(key, str) and _KEY_RE.fullmatch(key):
        name = key
    else:
        shown = key[:40] if isinstance(key, str) else key
        name = "[" + repr(shown)[:48] + "]"
    if path == _ROOT:
        return name
    return path + "." + name


def _object(value: object, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict:
        raise AnnotationError(path, "not an object")
    for key in value:  # stops at the first unknown key, so at most len(allowed) + 1 steps
        if key not in allowed:
            raise AnnotationError(_field(path, key), "unknown field")
    return value


def _get(obj: dict[str, Any], key: str, path: str) -> tuple[Any, str]:
    sub = key if path is _ROOT else path + "." + key  # schema keys need no quoting
    if key not in obj:
        raise AnnotationError(sub, "missing")
    return obj[key], sub


def _identifier(value: object, path: str) -> str:
    if type(value) is not str:
        raise AnnotationError(path, "not a string")
    if len(value) > 64 or not _ID_RE.fullmatch(value):
        raise AnnotationError(path, "must be 1..64 characters of A-Z a-z 0-9 _ -")
    return value


def _uid(value: object, path: str) -> str:
    """A DICOM UID, PS3.5 §9.1."""
    if type(value) is not str:
        raise AnnotationError(path, "not a string")
    if not value:
        raise AnnotationError(path, "empty")
    if len(value) > 64:
        raise AnnotationError(path, "longer than 64 characters")
    if _UID_RE.fullmatch(value):
        return value
    for part in value.split("."):
        if not part:
            raise AnnotationError(path, "empty UID component")
        if not (part.isascii() and part.isdigit()):
            raise AnnotationError(path, "UID components must be digits separated by dots")
    raise AnnotationError(path, "UID component with a leading zero")


def _number(value: object, path: str, lo: float, hi: float) -> float:
    if type(value) is float or type(value) is int:
        if lo <= value <= hi:
            return float(value)
        if type(value) is float and not math.isfinite(value):
            raise AnnotationError(path, "not a finite number")
        raise AnnotationError(path, "outside " + format(lo, "g") + ".." + format(hi, "g"))
    raise AnnotationError(path, "not a finite number")


def _integer(value: object, path: str, lo: int, hi: int) -> int:
    if type(value) is float:
        if not math.isfinite(value):
            raise AnnotationError(path, "not a finite number")
        if not value.is_integer():
            raise AnnotationError(path, "not an integer")
    elif type(value) is not int:
        raise AnnotationError(path, "not an integer")
    if not lo <= value <= hi:
        raise AnnotationError(path, "outside " + str(lo) + ".." + str(hi))
    return int(value)


def _boolean(value: object, path: str) -> bool:
    if type(value) is not bool:
        raise AnnotationError(path, "not a boolean")
    return value


def _count(lo: int, hi: int) -> str:
    if lo == hi:
        return "expected exactly " + str(lo) + (" point" if lo == 1 else " points")
    return "expected " + str(lo) + ".." + str(hi) + " points"


def _points(value: object, path: str, lo: int, hi: int) -> tuple[Point, ...]:
    if type(value) is not list:
        raise AnnotationError(path, "not an array")
    if not lo <= len(value) <= hi:
        raise AnnotationError(path, _count(lo, hi) + ", got " + str(len(value)))
    out: list[Point] = []
    append = out.append
    lim = MAX_COORDINATE
    for p in value:
        # Fast path: one combined test per point; diagnose only on failure.
        if type(p) is list and len(p) == 2:
            x, y = p
            tx, ty = type(x), type(y)
            if (
                (tx is float or tx is int)
                and (ty is float or ty is int)
                and -lim <= x <= lim
                and -lim <= y <= lim
            ):
                append((float(x), float(y)))
                continue
        _point_error(p, path + "[" + str(len(out)) + "]")
    return tuple(out)


def _point_error(p: object, path: str) -> None:
    if type(p) is not list:
        raise AnnotationError(path, "not an [x, y] pair")
    if len(p) != 2:
        raise AnnotationError(path, "expected [x, y], got " + str(len(p)) + " items")
    for i in (0, 1):
        _number(p[i], path + "[" + str(i) + "]", -MAX_COORDINATE, MAX_COORDINATE)
    raise AssertionError("unreachable")  # pragma: no cover


def _text(value: object, path: str) -> str:
    if type(value) is not str:
        raise AnnotationError(path, "not a string")
    if not 1 <= len(value) <= MAX_TEXT_CHARS:
        raise AnnotationError(path, "must be 1.." + str(MAX_TEXT_CHARS) + " characters")
    if _BAD_TEXT_RE.search(value):
        raise AnnotationError(path, "contains a control character or a lone surrogate")
    return value


def _style(value: object, path: str, kind: Kind) -> Style:
    obj = _object(value, path, _STYLE_FIELDS[kind])
    color, sub = _get(obj, "color", path)
    if type(color) is not str:
        raise AnnotationError(sub, "not a string")
    if len(color) != 7 or not _COLOR_RE.fullmatch(color):
        raise AnnotationError(sub, "not a #rrggbb colour")
    width, sub = _get(obj, "width", path)
    width_px = _number(width, sub, MIN_WIDTH, MAX_WIDTH)
    fill = _boolean(obj["fill"], path + ".fill") if "fill" in obj else None
    size = None
    if "fontSize" in obj:
        size = _number(obj["fontSize"], path + ".fontSize", MIN_FONT_SIZE, MAX_FONT_SIZE)
    return Style(color, width_px, fill, size)


def _anchor(value: object, path: str) -> Anchor:
    obj = _object(value, path, _ANCHOR_FIELDS)
    uids = [_uid(*_get(obj, key, path)) for key in ("study_uid", "series_uid", "instance_uid")]
    frame, sub = _get(obj, "frame", path)
    return Anchor(uids[0], uids[1], uids[2], _integer(frame, sub, 1, MAX_FRAME))


def _geometry(value: object, path: str, kind: Kind) -> Geometry:
    obj = _object(value, path, _GEOMETRY_FIELDS[kind])
    raw, sub = _get(obj, "points", path)
    lo, hi = _POINT_COUNTS[kind]
    points = _points(raw, sub, lo, hi)
    text = _text(*_get(obj, "text", path)) if kind is Kind.TEXT else None
    closed = _boolean(obj["closed"], path + ".closed") if "closed" in obj else False
    return Geometry(points, text, closed)


def validate_annotation(value: object) -> Annotation:
    """Check one annotation's JSON value against the schema (module docstring) and return it
    typed, or raise ``AnnotationError`` for the first bad field."""
    obj = _object(value, _ROOT, _TOP_FIELDS)
    ident = _identifier(*_get(obj, "id", _ROOT))
    author = _identifier(*_get(obj, "author", _ROOT))
    created = _integer(*_get(obj, "created", _ROOT), 0, MAX_TIME_MS)
    raw_updated, sub = _get(obj, "updated", _ROOT)
    updated = _integer(raw_updated, sub, 0, MAX_TIME_MS)
    if updated < created:
        raise AnnotationError(sub, "earlier than created")
    raw_kind, sub = _get(obj, "kind", _ROOT)
    kind = _KINDS.get(raw_kind) if type(raw_kind) is str else None
    if kind is None:
        raise AnnotationError(sub, "not one of " + ", ".join(_KINDS))
    style = _style(*_get(obj, "style", _ROOT), kind)
    anchor = _anchor(*_get(obj, "anchor", _ROOT))
    geometry = _geometry(*_get(obj, "geometry", _ROOT), kind)
    text_len = len(geometry.text) if geometry.text is not None else 0
    bound = _FIXED_BYTES_BOUND + _POINT_BYTES_BOUND * len(geometry.points) + 6 * text_len
    if bound > MAX_SERIALIZED_BYTES:
        # Only long strokes get here; the value is now known to be small, plain JSON.
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        if size > MAX_SERIALIZED_BYTES:
            raise AnnotationError(
                _ROOT,
                "serialized size " + str(size) + " bytes exceeds " + str(MAX_SERIALIZED_BYTES),
            )
    return Annotation(ident, author, created, updated, kind, style, anchor, geometry)


def in_drawing_order(annotations: Iterable[Annotation | Mapping[str, Any]]) -> list[Annotation]:
    """The annotations validated (JSON values) and sorted oldest first, ties by id: the
    order an overlay draws them in and a report lists them."""
    typed = (
        a if isinstance(a, Annotation) else validate_annotation(a if type(a) is dict else dict(a))
        for a in annotations
    )
    return sorted(typed, key=lambda a: (a.created, a.id))
