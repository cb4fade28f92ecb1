# No ``from __future__ import annotations``: it would shadow the package name (test_package).
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, create_sync_message, handle_sync_message, write_var_uint

from annotations.sync import (
    MAX_VAR_UINT_BYTES,
    MessageKind,
    SyncError,
    SyncMessage,
    awareness_message,
    parse_message,
    sync_step1,
    sync_step2,
    update_message,
)


def _doc(**values: object) -> "tuple[Doc[object], Map[object]]":
    doc: Doc[object] = Doc()
    ymap: Map[object] = doc.get("annotations", type=Map)
    for key, value in values.items():
        ymap[key] = value
    return doc, ymap


def test_step1_step2_round_trip_between_two_docs() -> None:
    a, amap = _doc(x={"n": 1}, y={"n": 2})
    b, bmap = _doc(z={"n": 3})
    # b asks a; a answers; then the other way round.
    for src, dst in ((a, b), (b, a)):
        step1 = parse_message(sync_step1(dst.get_state()))
        assert step1.kind is MessageKind.SYNC_STEP1
        step2 = parse_message(sync_step2(src.get_update(step1.payload)))
        assert step2.kind is MessageKind.SYNC_STEP2
        dst.apply_update(step2.payload)
    assert amap.to_py() == bmap.to_py() == {"x": {"n": 1.0}, "y": {"n": 2.0}, "z": {"n": 3.0}}
    assert a.get_state() != b"\x00" and parse_message(sync_step1(a.get_state())).payload


def test_interoperates_with_pycrdt_sync() -> None:
    a, _ = _doc(x={"n": 1})
    b, bmap = _doc()
    assert parse_message(create_sync_message(b)) == SyncMessage(
        MessageKind.SYNC_STEP1, b.get_state()
    )
    reply = handle_sync_message(sync_step1(b.get_state())[1:], a)
    assert reply is not None
    step2 = parse_message(reply)
    assert step2.kind is MessageKind.SYNC_STEP2
    handle_sync_message(sync_step2(step2.payload)[1:], b)
    assert bmap.to_py() == {"x": {"n": 1.0}}


def test_update_and_awareness_messages() -> None:
    a, amap = _doc()
    sv = a.get_state()
    amap["k"] = {"n": 1}
    update = a.get_update(sv)
    assert parse_message(update_message(update)) == SyncMessage(MessageKind.UPDATE, update)
    blob = bytes(range(256)) * 3
    assert parse_message(awareness_message(blob)) == SyncMessage(MessageKind.AWARENESS, blob)
    assert parse_message(awareness_message(b"")) == SyncMessage(MessageKind.AWARENESS, b"")
    assert update_message(b"\x00\x00") == b"\x00\x02\x02\x00\x00"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated varUint"),
        (b"\x80", "truncated varUint"),
        (b"\x02\x00", "unsupported message type"),
        (b"\x00\x03\x00", "unknown sync message type"),
        (b"\x00\x00", "truncated varUint"),
        (b"\x00\x00\x05abc", "truncated payload"),
        (b"\x01\x01ab", "trailing bytes after the message"),
        (b"\x00" + b"\xff" * 20, "longer than"),
    ],
)
def test_bad_messages(data: bytes, reason: str) -> None:
    with pytest.raises(SyncError, match=reason):
        parse_message(data)


def test_var_uint_bounds() -> None:
    big = (1 << (7 * MAX_VAR_UINT_BYTES)) - 1
    with pytest.raises(SyncError, match="truncated payload"):
        parse_message(b"\x01" + write_var_uint(big))
    with pytest.raises(SyncError, match="longer than"):
        parse_message(b"\x01" + write_var_uint(big + 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_sync_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SyncError:
        return
    rebuilt = {
        MessageKind.SYNC_STEP1: sync_step1,
        MessageKind.SYNC_STEP2: sync_step2,
        MessageKind.UPDATE: update_message,
        MessageKind.AWARENESS: awareness_message,
    }[message.kind](message.payload)
    assert parse_message(rebuilt) == message


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([sync_step1, sync_step2, update_message, awareness_message]),
    st.binary(max_size=300),
    st.data(),
)
def test_truncated_or_extended_messages_raise(
    build: object, payload: bytes, data: st.DataObject
) -> None:
    assert callable(build)
    message = build(payload)
    cut = data.draw(st.integers(0, len(message) - 1))
    with pytest.raises(SyncError):
        parse_message(message[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(SyncError):
        parse_message(message + extra)
