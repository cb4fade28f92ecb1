from __future__ import annotations

import copy
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from annotations.schema import (
    MAX_SERIALIZED_BYTES,
    Annotation,
    AnnotationError,
    Kind,
    validate_annotation,
)

STUDY = "1.2.840.113619.2.55.3.604688119"
SERIES = "1.2.840.113619.2.55.3.604688119.1"
INSTANCE = "1.2.840.113619.2.55.3.604688119.1.7"

GEOMETRY: dict[str, dict[str, Any]] = {
    "arrow": {"points": [[10, 20], [110.5, 220.25]]},
    "line": {"points": [[0, 0], [12, 8]]},
    "polyline": {"points": [[0, 0], [12, 8], [12, 0]]},
    "freehand": {"points": [[1, 1], [5, 1], [5, 6], [1, 6]], "closed": True},
    "ellipse": {"points": [[40, 40], [80, 60]]},
    "rectangle": {"points": [[80, 60], [40, 40]]},
    "angle": {"points": [[10, 0], [0, 0], [0, 10]]},
    "point": {"points": [[255.5, 255.5]]},
    "text": {"points": [[30, 40]], "text": "Lesion A\n(see prior)"},
}


def make(kind: str, **top: Any) -> dict[str, Any]:
    style: dict[str, Any] = {"color": "#ff8800", "width": 2}
    if kind in ("rectangle", "ellipse", "freehand"):
        style["fill"] = False
    if kind == "text":
        style["fontSize"] = 14
    value: dict[str, Any] = {
        "id": "ann_01-x",
        "author": "3f2a9c0d1e4b5a6978a0b1c2d3e4f567",
        "created": 1_700_000_000_000,
        "updated": 1_700_000_000_500,
        "kind": kind,
        "style": style,
        "anchor": {"study_uid": STUDY, "series_uid": SERIES, "instance_uid": INSTANCE, "frame": 1},
        "geometry": copy.deepcopy(GEOMETRY[kind]),
    }
    value.update(top)
    return value


def error_of(value: object) -> str:
    with pytest.raises(AnnotationError) as info:
        validate_annotation(value)
    return str(info.value)


@pytest.mark.parametrize("kind", [k.value for k in Kind])
def test_each_kind_is_valid_and_round_trips(kind: str) -> None:
    value = make(kind)
    ann = validate_annotation(value)
    assert ann.kind is Kind(kind)
    assert ann.id == "ann_01-x" and ann.anchor.instance_uid == INSTANCE
    assert ann.geometry.points == tuple(
        (float(x), float(y)) for x, y in value["geometry"]["points"]
    )
    assert validate_annotation(ann.to_json()) == ann
    assert json.loads(json.dumps(ann.to_json())) == ann.to_json()


def test_kind_specific_fields() -> None:
    text = validate_annotation(make("text"))
    assert text.geometry.text == "Lesion A\n(see prior)" and text.style.font_size == 14.0
    free = validate_annotation(make("freehand"))
    assert free.geometry.closed is True and free.style.fill is False
    open_stroke = make("freehand")
    del open_stroke["geometry"]["closed"]
    assert validate_annotation(open_stroke).geometry.closed is False
    line = validate_annotation(make("line"))
    assert line.style.fill is None and line.style.font_size is None and line.geometry.text is None


def test_integral_floats_are_accepted_where_integers_are_meant() -> None:
    value = make("point", created=1.7e12, updated=1.7e12)
    value["anchor"]["frame"] = 3.0
    ann = validate_annotation(value)
    assert ann.anchor.frame == 3 and type(ann.anchor.frame) is int
    assert ann.created == 1_700_000_000_000 and type(ann.created) is int
    value["anchor"]["frame"] = 3.5
    assert error_of(value) == "anchor.frame: not an integer"


def _set(value: dict[str, Any], path: tuple[Any, ...], new: Any) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


def _del(value: dict[str, Any], path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        value = value[key]
    del value[path[-1]]


SET_ERRORS = [
    # (kind, path to replace, new value, exact message)
    ("line", ("id",), "", "id: must be 1..64 characters of A-Z a-z 0-9 _ -"),
    ("line", ("id",), "a" * 65, "id: must be 1..64 characters of A-Z a-z 0-9 _ -"),
    ("line", ("id",), "a b", "id: must be 1..64 characters of A-Z a-z 0-9 _ -"),
    ("line", ("id",), 7.0, "id: not a string"),
    ("line", ("author",), None, "author: not a string"),
    ("line", ("created",), -1, "created: outside 0..8640000000000000"),
    ("line", ("created",), 1.5, "created: not an integer"),
    ("line", ("created",), math.nan, "created: not a finite number"),
    ("line", ("updated",), 1_600_000_000_000, "updated: earlier than created"),
    ("line", ("updated",), True, "updated: not an integer"),
    (
        "line",
        ("kind",),
        "circle",
        "kind: not one of arrow, line, polyline, freehand, ellipse, rectangle, angle, point, text",
    ),
    (
        "line",
        ("kind",),
        ["line"],
        "kind: not one of arrow, line, polyline, freehand, ellipse, rectangle, angle, point, text",
    ),
    ("line", ("style",), [], "style: not an object"),
    ("line", ("style", "color"), "red", "style.color: not a #rrggbb colour"),
    ("line", ("style", "color"), "#ff880", "style.color: not a #rrggbb colour"),
    ("line", ("style", "color"), "#gg8800", "style.color: not a #rrggbb colour"),
    ("line", ("style", "width"), 0.25, "style.width: outside 0.5..50"),
    ("line", ("style", "width"), 51, "style.width: outside 0.5..50"),
    ("line", ("style", "width"), True, "style.width: not a finite number"),
    ("line", ("style", "width"), "2", "style.width: not a finite number"),
    ("line", ("style", "fill"), True, "style.fill: unknown field"),
    ("rectangle", ("style", "fill"), 1, "style.fill: not a boolean"),
    ("text", ("style", "fontSize"), 3, "style.fontSize: outside 6..200"),
    ("line", ("style", "fontSize"), 12, "style.fontSize: unknown field"),
    ("line", ("anchor", "study_uid"), "", "anchor.study_uid: empty"),
    (
        "line",
        ("anchor", "study_uid"),
        "1." + "2" * 63,
        "anchor.study_uid: longer than 64 characters",
    ),
    (
        "line",
        ("anchor", "series_uid"),
        "1.02.3",
        "anchor.series_uid: UID component with a leading zero",
    ),
    ("line", ("anchor", "series_uid"), "1..3", "anchor.series_uid: empty UID component"),
    ("line", ("anchor", "series_uid"), "1.2.", "anchor.series_uid: empty UID component"),
    (
        "line",
        ("anchor", "instance_uid"),
        "1.2.a",
        "anchor.instance_uid: UID components must be digits separated by dots",
    ),
    (
        "line",
        ("anchor", "instance_uid"),
        "1.2.\u0663",
        "anchor.instance_uid: UID components must be digits separated by dots",
    ),
    ("line", ("anchor", "instance_uid"), 1.2, "anchor.instance_uid: not a string"),
    ("line", ("anchor", "frame"), 0, "anchor.frame: outside 1..2147483647"),
    ("line", ("anchor", "frame"), "1", "anchor.frame: not an integer"),
    ("line", ("anchor", "extra"), 1, "anchor.extra: unknown field"),
    ("line", ("geometry",), None, "geometry: not an object"),
    ("line", ("geometry", "points"), {}, "geometry.points: not an array"),
    ("line", ("geometry", "points"), [[0, 0]], "geometry.points: expected exactly 2 points, got 1"),
    (
        "angle",
        ("geometry", "points"),
        [[0, 0], [1, 1]],
        "geometry.points: expected exactly 3 points, got 2",
    ),
    ("point", ("geometry", "points"), [], "geometry.points: expected exactly 1 point, got 0"),
    (
        "polyline",
        ("geometry", "points"),
        [[0, 0]],
        "geometry.points: expected 2..10000 points, got 1",
    ),
    (
        "freehand",
        ("geometry", "points"),
        [[0, 0]] * 10_001,
        "geometry.points: expected 2..10000 points, got 10001",
    ),
    ("polyline", ("geometry", "points", 2), (1, 2), "geometry.points[2]: not an [x, y] pair"),
    (
        "polyline",
        ("geometry", "points", 2),
        [1, 2, 3],
        "geometry.points[2]: expected [x, y], got 3 items",
    ),
    (
        "polyline",
        ("geometry", "points", 1, 0),
        math.nan,
        "geometry.points[1][0]: not a finite number",
    ),
    (
        "polyline",
        ("geometry", "points", 1, 1),
        -math.inf,
        "geometry.points[1][1]: not a finite number",
    ),
    ("polyline", ("geometry", "points", 2, 0), "3", "geometry.points[2][0]: not a finite number"),
    ("polyline", ("geometry", "points", 2, 0), False, "geometry.points[2][0]: not a finite number"),
    (
        "polyline",
        ("geometry", "points", 2, 1),
        1e6 + 1,
        "geometry.points[2][1]: outside -1e+06..1e+06",
    ),
    (
        "polyline",
        ("geometry", "points", 0, 0),
        10**400,
        "geometry.points[0][0]: outside -1e+06..1e+06",
    ),
    ("text", ("geometry", "text"), "", "geometry.text: must be 1..2000 characters"),
    ("text", ("geometry", "text"), "x" * 2001, "geometry.text: must be 1..2000 characters"),
    (
        "text",
        ("geometry", "text"),
        "a\x00b",
        "geometry.text: contains a control character or a lone surrogate",
    ),
    (
        "text",
        ("geometry", "text"),
        "a\ud800",
        "geometry.text: contains a control character or a lone surrogate",
    ),
    ("text", ("geometry", "text"), 5, "geometry.text: not a string"),
    ("line", ("geometry", "text"), "hi", "geometry.text: unknown field"),
    ("freehand", ("geometry", "closed"), "yes", "geometry.closed: not a boolean"),
    ("rectangle", ("geometry", "closed"), True, "geometry.closed: unknown field"),
    ("line", ("colour",), "#ffffff", "colour: unknown field"),
    ("line", ("style", "a b"), 1, "style.['a b']: unknown field"),
]


@pytest.mark.parametrize(("kind", "path", "new", "message"), SET_ERRORS)
def test_errors_name_the_field_path(
    kind: str, path: tuple[Any, ...], new: Any, message: str
) -> None:
    value = make(kind)
    _set(value, path, new)
    assert error_of(value) == message


@pytest.mark.parametrize(
    ("kind", "path", "message"),
    [
        ("line", ("id",), "id: missing"),
        ("line", ("anchor",), "anchor: missing"),
        ("line", ("style", "color"), "style.color: missing"),
        ("line", ("anchor", "frame"), "anchor.frame: missing"),
        ("line", ("geometry", "points"), "geometry.points: missing"),
        ("text", ("geometry", "text"), "geometry.text: missing"),
    ],
)
def test_missing_fields(kind: str, path: tuple[Any, ...], message: str) -> None:
    value = make(kind)
    _del(value, path)
    assert error_of(value) == message


def test_error_has_path_and_reason_and_is_a_value_error() -> None:
    value = make("polyline")
    value["geometry"]["points"][1][0] = math.inf
    with pytest.raises(ValueError) as info:
        validate_annotation(value)
    assert isinstance(info.value, AnnotationError)
    assert info.value.path == "geometry.points[1][0]"
    assert info.value.reason == "not a finite number"


def test_the_value_itself() -> None:
    assert error_of([]) == "annotation: not an object"
    assert error_of(None) == "annotation: not an object"
    assert error_of({1: 2}) == "[1]: unknown field"
    assert error_of({"id": "a"}) == "author: missing"


def test_messages_do_not_echo_the_value() -> None:
    secret = "PATIENT NAME " * 200
    value = make("text")
    value["geometry"]["text"] = secret
    assert "PATIENT" not in error_of(value)
    value = make("line")
    value["style"]["PATIENT NAME DOE JOHN" * 10] = 1
    assert len(error_of(value)) < 100


def test_serialized_size_is_capped() -> None:
    value = make("freehand")
    # 10000 points of 17-digit floats: about 380 KB of JSON.
    value["geometry"]["points"] = [[100.12345678901234, 200.12345678901234]] * 10_000
    message = error_of(value)
    assert message.startswith("annotation: serialized size ")
    assert message.endswith(" bytes exceeds " + str(MAX_SERIALIZED_BYTES))
    # The same number of short coordinates fits.
    value["geometry"]["points"] = [[100.5, 200.5]] * 10_000
    assert len(validate_annotation(value).geometry.points) == 10_000


def _fast(value: object, message: str) -> None:
    start = time.perf_counter()
    assert error_of(value) == message
    assert time.perf_counter() - start < 0.05


def test_huge_deep_and_garbage_values_are_refused_quickly() -> None:
    huge_dict = {str(i): i for i in range(1_000_000)}
    _fast(huge_dict, "['0']: unknown field")
    _fast(make("line", id="x" * 10_000_000), "id: must be 1..64 characters of A-Z a-z 0-9 _ -")
    value = make("freehand")
    value["geometry"]["points"] = [[0, 0]] * 5_000_000
    _fast(value, "geometry.points: expected 2..10000 points, got 5000000")
    deep: list[Any] = [0, 0]
    for _ in range(100_000):
        deep = [deep]
    value = make("point")
    value["geometry"]["points"] = deep
    _fast(value, "geometry.points[0]: expected [x, y], got 1 items")
    value = make("line")
    value["style"] = huge_dict
    _fast(value, "style.['0']: unknown field")
    value = make("text")
    value["geometry"]["text"] = "x" * 50_000_000
    _fast(value, "geometry.text: must be 1..2000 characters")


def test_validation_is_fast_on_a_long_stroke() -> None:
    value = make("freehand")
    value["geometry"]["points"] = [[i % 512 + 0.5, i // 512 + 0.25] for i in range(4000)]
    start = time.perf_counter()
    for _ in range(10):
        validate_annotation(value)
    assert (time.perf_counter() - start) / 10 < 0.05


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON)
def test_garbage_only_ever_raises_annotation_error(value: object) -> None:
    with pytest.raises(AnnotationError):
        validate_annotation(value)


@given(
    kind=st.sampled_from(list(GEOMETRY)),
    field=st.sampled_from(
        ["id", "author", "created", "updated", "kind", "style", "anchor", "geometry"]
    ),
    junk=JSON,
)
def test_any_junk_field_is_refused_or_valid(kind: str, field: str, junk: object) -> None:
    value = make(kind)
    value[field] = junk
    try:
        ann = validate_annotation(value)
    except AnnotationError as exc:
        assert exc.path.split(".")[0].split("[")[0] == field
    else:
        assert isinstance(ann, Annotation)


coordinate = st.floats(min_value=-1e6, max_value=1e6) | st.integers(-1_000_000, 1_000_000)


@given(
    kind=st.sampled_from(list(GEOMETRY)),
    points=st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=30),
    frame=st.integers(1, 2**31 - 1),
)
def test_generated_annotations_round_trip(
    kind: str, points: list[tuple[float, float]], frame: int
) -> None:
    count = {"angle": 3, "point": 1, "text": 1, "polyline": 30, "freehand": 30}.get(kind, 2)
    value = make(kind)
    value["geometry"]["points"] = [list(p) for p in points[:count]]
    value["anchor"]["frame"] = float(frame)
    ann = validate_annotation(value)
    assert ann.anchor.frame == frame
    assert validate_annotation(json.loads(json.dumps(ann.to_json()))) == ann


def test_schema_md_examples_are_valid() -> None:
    doc = (Path(__file__).parents[2] / "annotations" / "SCHEMA.md").read_text()
    shared, per_kind = re.findall(r"```json\n(.*?)```", doc, re.S)
    kinds = []
    for chunk in per_kind.strip().split("\n\n"):
        value = json.loads(shared) | json.loads(chunk)
        kinds.append(validate_annotation(value).kind)
    assert kinds == list(Kind)
