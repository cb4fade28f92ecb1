"""media/rtp.py: header parse and patch, extension rewrite, payload type mapping, keyframes."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtcpPsfbPacket, RtcpRtpfbPacket, RtpPacket

from media.rtp import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    Codec,
    ExtensionRewriter,
    codecs_match,
    h264_profile,
    is_keyframe_start,
    map_payload_types,
    marker_pt_table,
    pack_nack,
    pack_pli,
    parse_header,
    patch_fixed_header,
    unwrap_rtx,
)

# The publisher's extension ids (a browser's numbering) and the receiver's (aiortc's).
SOURCE_EXT = {1: URI_AUDIO_LEVEL, 2: URI_ABS_SEND_TIME, 4: URI_MID}
DEST_EXT = {1: URI_MID, 2: URI_AUDIO_LEVEL, 3: URI_ABS_SEND_TIME}
PAYLOAD = bytes(range(256)) * 4


def _ext_map(ids: dict[int, str]) -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in ids.items()]
        )
    )
    return m


def _packet(
    *, mid: str = "0", csrc: tuple[int, ...] = (), padding: int = 0, two_byte: bool = False
) -> bytes:
    """A packet built by hand: CSRCs, audio-level, abs-send-time, MID, optional padding."""
    elements = [(1, bytes([0x80 | 42])), (2, b"\x12\x34\x56"), (4, mid.encode())]
    block = bytearray()
    for ext_id, value in elements:
        if two_byte:
            block += bytes([ext_id, len(value)]) + value
        else:
            block += bytes([(ext_id << 4) | (len(value) - 1)]) + value
    block += bytes(-len(block) % 4)
    profile = 0x1000 if two_byte else 0xBEDE
    b0 = 0x80 | 0x10 | len(csrc) | (0x20 if padding else 0)
    data = struct.pack("!BBHII", b0, 0x80 | 111, 65535, 0xFFFFFFF0, 0x11111111)
    data += b"".join(struct.pack("!I", c) for c in csrc)
    data += struct.pack("!HH", profile, len(block) // 4) + block + PAYLOAD
    if padding:
        data += bytes(padding - 1) + bytes([padding])
    return data


@pytest.mark.parametrize("two_byte", [False, True])
def test_patch_rewrites_header_and_extensions_and_keeps_payload(two_byte: bool) -> None:
    data = _packet(csrc=(7, 8), padding=4, two_byte=two_byte)
    header = parse_header(data)
    assert (header.payload_type, header.seq, header.timestamp) == (111, 65535, 0xFFFFFFF0)
    assert header.marker and header.ssrc == 0x11111111
    assert data[header.payload_offset : header.payload_end] == PAYLOAD

    buf = bytearray(data)
    patch_fixed_header(buf, 0x80 | 96, header.seq + 3, header.timestamp + 0x20, 0xCAFEBABE)
    ExtensionRewriter(SOURCE_EXT, DEST_EXT, "7").rewrite(buf, header, b"\xab\xcd\xef")
    out = bytes(buf)

    assert len(out) == len(data), "no byte moves"
    assert out[header.payload_offset :] == data[header.payload_offset :], "payload untouched"
    parsed = RtpPacket.parse(out, _ext_map(DEST_EXT))
    assert parsed.ssrc == 0xCAFEBABE
    assert parsed.sequence_number == 2, "sequence number wraps"
    assert parsed.timestamp == 0x10, "timestamp wraps"
    assert parsed.payload_type == 96 and parsed.marker == 1
    assert parsed.csrc == [7, 8]
    assert parsed.extensions.mid == "7"
    assert parsed.extensions.audio_level == (True, 42)
    assert parsed.extensions.abs_send_time == 0xABCDEF
    assert parsed.payload == PAYLOAD
    assert parsed.padding_size == 4


def test_extension_rewriter_drops_what_the_receiver_did_not_negotiate() -> None:
    data = _packet(mid="12")
    header = parse_header(data)
    buf = bytearray(data)
    # receiver knows only the MID, under id 5; its MID value is longer than the publisher's
    ExtensionRewriter(SOURCE_EXT, {5: URI_MID}, "123").rewrite(buf, header, None)
    parsed = RtpPacket.parse(bytes(buf), _ext_map({5: URI_MID, 1: URI_AUDIO_LEVEL}))
    assert parsed.extensions.mid is None, "a MID that does not fit is dropped, not spilled"
    assert parsed.extensions.audio_level is None
    assert parse_header(bytes(buf)).extensions == (), "only padding left"

    buf = bytearray(data)
    ExtensionRewriter(SOURCE_EXT, {5: URI_MID}, "9").rewrite(buf, header, None)
    parsed = RtpPacket.parse(bytes(buf), _ext_map({5: URI_MID}))
    assert parsed.extensions.mid == "9", "a shorter MID is zero-padded"


def test_extension_rewriter_drops_ids_never_negotiated_by_the_publisher() -> None:
    header = parse_header(_packet())
    buf = bytearray(_packet())
    ExtensionRewriter({4: URI_MID}, DEST_EXT, "3").rewrite(buf, header, None)
    assert [e[0] for e in parse_header(bytes(buf)).extensions] == [1]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x60\x00",
        struct.pack("!BBHII", 0x40, 96, 1, 2, 3),  # version 1
        struct.pack("!BBHII", 0x82, 96, 1, 2, 3) + b"\x00\x00\x00\x01",  # CSRCs cut
        struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + b"\xbe\xde\x00\x02\x10",  # extension cut
        struct.pack("!BBHII", 0x90, 96, 1, 2, 3)
        + b"\xbe\xde\x00\x01\x33\x00\x00\x00",  # element overflows
        struct.pack("!BBHII", 0xA0, 96, 1, 2, 3) + b"\x01\x09",  # padding past the payload
        struct.pack("!BBHII", 0xA0, 96, 1, 2, 3) + b"\x01\x00",  # padding count 0
    ],
)
def test_malformed_packets_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_header(data)


def test_unknown_extension_profile_is_left_alone() -> None:
    data = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + b"\x12\x34\x00\x01abcd" + b"payload"
    header = parse_header(data)
    assert header.ext_form == 0 and data[header.payload_offset :] == b"payload"


VP8 = Codec("video/VP8", 90000, 96)
H264_CB_PM1 = Codec(
    "video/H264", 90000, 102, parameters={"packetization-mode": "1", "profile-level-id": "42e01f"}
)
H264_CB_PM1_OTHER_LEVEL = Codec(
    "video/H264", 90000, 99, parameters={"packetization-mode": "1", "profile-level-id": "42e034"}
)
H264_CB_PM0 = Codec(
    "video/H264", 90000, 100, parameters={"packetization-mode": "0", "profile-level-id": "42e01f"}
)
H264_HIGH = Codec(
    "video/H264", 90000, 101, parameters={"packetization-mode": "1", "profile-level-id": "640c1f"}
)
H264_B_PM1 = Codec(
    "video/H264", 90000, 103, parameters={"packetization-mode": "1", "profile-level-id": "42001f"}
)
RTX = Codec("video/rtx", 90000, 97, parameters={"apt": 96})


def test_h264_profiles() -> None:
    assert h264_profile("42e01f") == "constrained-baseline"
    assert h264_profile("42001f") == "baseline"
    assert h264_profile("4d001f") == "main"
    assert h264_profile("640c1f") == "constrained-high"
    assert h264_profile("zz") is None


def test_payload_types_map_by_codec_and_h264_profile_and_mode() -> None:
    assert codecs_match(H264_CB_PM1, H264_CB_PM1_OTHER_LEVEL), "level is not part of the match"
    assert not codecs_match(H264_CB_PM1, H264_CB_PM0)
    assert not codecs_match(H264_CB_PM1, H264_B_PM1)
    source = [VP8, RTX, H264_CB_PM1, H264_HIGH]
    destination = [
        Codec("video/VP8", 90000, 97),
        Codec("video/rtx", 90000, 98, parameters={"apt": 97}),
        H264_B_PM1,
        H264_CB_PM1_OTHER_LEVEL,
    ]
    assert map_payload_types(source, destination) == {96: 97, 102: 99}
    table = marker_pt_table({96: 97})
    assert table[96] == 97 and table[0x80 | 96] == 0x80 | 97 and table[102] == -1
    opus = Codec("audio/opus", 48000, 111, 2)
    assert map_payload_types([opus], [Codec("audio/OPUS", 48000, 96, 2)]) == {111: 96}
    assert map_payload_types([opus], [Codec("audio/PCMU", 8000, 0)]) == {}


def _rtp(payload: bytes, pt: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, 1, 2, 3) + payload


@pytest.mark.parametrize(
    ("name", "payload", "key"),
    [
        ("VP8", b"\x10\x00\x9d\x01\x2a", True),  # S=1, PID=0, P=0
        ("VP8", b"\x10\x01", False),  # P=1: inter frame
        ("VP8", b"\x00\x00", False),  # not the first packet of the frame
        ("VP8", b"\x90\x80\x81\x23\x00", True),  # X, I with a 15-bit picture id
        ("VP8", b"\x90\xe0\x05\x07\x01", False),  # X, I, L, T; P=1
        ("H264", b"\x67\x42", True),  # SPS
        ("H264", b"\x65\x88", True),  # IDR slice
        ("H264", b"\x41\x9a", False),  # non-IDR slice
        ("H264", b"\x18\x00\x02\x67\x42\x00\x02\x68\xce", True),  # STAP-A with SPS
        ("H264", b"\x18\x00\x02\x41\x9a", False),
        ("H264", b"\x7c\x85", True),  # FU-A start of an IDR
        ("H264", b"\x7c\x05", False),  # FU-A continuation
        ("OPUS", b"\xfc", True),
    ],
)
def test_keyframe_start(name: str, payload: bytes, key: bool) -> None:
    data = _rtp(payload)
    assert is_keyframe_start(name, data, parse_header(data)) is key


def test_unwrap_rtx_restores_the_original_packet() -> None:
    original = RtpPacket(payload_type=96, sequence_number=500, timestamp=9, ssrc=1234)
    original.payload = b"media"
    original.marker = 1
    rtx = RtpPacket(payload_type=97, sequence_number=7, timestamp=9, ssrc=99)
    rtx.payload = struct.pack("!H", 500) + b"media"
    rtx.marker = 1
    data = rtx.serialize()
    restored = unwrap_rtx(data, parse_header(data), 96, 1234)
    assert restored == original.serialize()
    probe = _rtp(b"", pt=97)
    assert unwrap_rtx(probe, parse_header(probe), 96, 1234) is None


def test_rtcp_feedback_packets_parse_back() -> None:
    (pli,) = RtcpPacket.parse(pack_pli(1, 2))
    assert isinstance(pli, RtcpPsfbPacket) and (pli.fmt, pli.ssrc, pli.media_ssrc) == (1, 1, 2)
    (nack,) = RtcpPacket.parse(pack_nack(1, 2, [65530, 65531, 65535, 3, 100]))
    assert isinstance(nack, RtcpRtpfbPacket) and nack.media_ssrc == 2
    assert sorted(s & 0xFFFF for s in nack.lost) == [3, 100, 65530, 65531, 65535]
