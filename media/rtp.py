"""RTP and RTCP on the wire, as the SFU needs them: parse a header once, patch a copy per consumer.

Pure functions over bytes; no aiortc, no I/O. References: RFC 3550 §5.1 (fixed header),
RFC 8285 §4.2-4.3 (one- and two-byte header extensions), RFC 4585 §6.1 and §6.3.1 (feedback,
PLI), RFC 4588 §4 (RTX), RFC 7741 §4.2-4.3 (VP8), RFC 6184 §5.6-5.8 (H.264), RFC 6184 §8.1
(profile-level-id), RFC 6464 §3 (client-to-mixer audio level),
draft-alvestrand-rmcat-remb-03 §2.2 (REMB).

Hot-path rule: ``parse_header`` (and ``LayoutTable.number``) runs once per incoming packet;
per consumer only ``bytearray`` + ``FIXED_PATCH.pack_into`` + ``ExtensionRewriter.rewrite``
(a few cached slice writes) run.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_FIXED = struct.Struct("!BBHII")
#: Bytes 1..11 of the fixed header: M|PT, sequence number, timestamp, SSRC.
FIXED_PATCH = struct.Struct("!BHII")
_U16 = struct.Struct("!H")
_HEADER_LEN = 12

EXT_ONE_BYTE = 0xBEDE  # RFC 8285 §4.2
EXT_TWO_BYTE_MASK = 0xFFF0  # RFC 8285 §4.3: 0x100 followed by 4 "appbits"
EXT_TWO_BYTE = 0x1000

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

RTCP_PSFB = 206
RTCP_RTPFB = 205
PSFB_PLI = 1
PSFB_AFB = 15  # application layer feedback (RFC 4585 §6.4): REMB rides on it
RTPFB_NACK = 1
_REMB = b"REMB"
#: Largest REMB bitrate: an 18-bit mantissa with a 6-bit exponent.
REMB_MAX_BITRATE = 0x3FFFF << 63


class RtpHeader:
    """The fields of one parsed RTP packet that the SFU reads (RFC 3550 §5.1).

    ``extensions`` holds ``(id, element_offset, value_offset, value_length)`` per element so a
    consumer can patch them in its copy without parsing again; ``ext_form`` is 1 (one-byte),
    2 (two-byte) or 0 (no extension block, or a profile we leave alone). ``layout`` numbers
    the shape of ``extensions`` within one stream (``LayoutTable``), -1 if not numbered.
    """

    __slots__ = (
        "b1",
        "ext_form",
        "extensions",
        "layout",
        "payload_end",
        "payload_offset",
        "seq",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        b1: int,
        seq: int,
        timestamp: int,
        ssrc: int,
        payload_offset: int,
        payload_end: int,
        ext_form: int,
        extensions: tuple[tuple[int, int, int, int], ...],
    ) -> None:
        self.b1 = b1
        self.seq = seq
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload_offset = payload_offset
        self.payload_end = payload_end
        self.ext_form = ext_form
        self.extensions = extensions
        self.layout = -1  # set by a LayoutTable: a number for this extension layout

    @property
    def payload_type(self) -> int:
        return self.b1 & 0x7F

    @property
    def marker(self) -> bool:
        return bool(self.b1 & 0x80)


def parse_header(data: bytes) -> RtpHeader:
    """Parse the fixed header, CSRCs, extension block and padding; raise ``ValueError``."""
    length = len(data)
    if length < _HEADER_LEN:
        raise ValueError("RTP packet is shorter than the fixed header")
    b0, b1, seq, timestamp, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        raise ValueError("RTP version is not 2")
    offset = _HEADER_LEN + 4 * (b0 & 0x0F)
    ext_form = 0
    extensions: tuple[tuple[int, int, int, int], ...] = ()
    if b0 & 0x10:
        if offset + 4 > length:
            raise ValueError("RTP extension header is truncated")
        profile, words = struct.unpack_from("!HH", data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > length:
            raise ValueError("RTP extension block is truncated")
        if profile == EXT_ONE_BYTE:
            ext_form = 1
            extensions = _parse_one_byte(data, start, offset)
        elif profile & EXT_TWO_BYTE_MASK == EXT_TWO_BYTE:
            ext_form = 2
            extensions = _parse_two_byte(data, start, offset)
    end = length
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > length:
            raise ValueError("RTP padding is invalid")
        end -= padding
    elif offset > length:
        raise ValueError("RTP packet is truncated")
    return RtpHeader(b1, seq, timestamp, ssrc, offset, end, ext_form, extensions)


def _parse_one_byte(data: bytes, pos: int, end: int) -> tuple[tuple[int, int, int, int], ...]:
    elements = []
    while pos < end:
        byte = data[pos]
        if byte == 0:  # padding between elements
            pos += 1
            continue
        ext_id = byte >> 4
        if ext_id == 15:  # reserved: stop parsing (RFC 8285 §4.2)
            break
        value_len = (byte & 0x0F) + 1
        if pos + 1 + value_len > end:
            raise ValueError("RTP one-byte extension element is truncated")
        elements.append((ext_id, pos, pos + 1, value_len))
        pos += 1 + value_len
    return tuple(elements)


def _parse_two_byte(data: bytes, pos: int, end: int) -> tuple[tuple[int, int, int, int], ...]:
    elements = []
    while pos < end:
        ext_id = data[pos]
        if ext_id == 0:
            pos += 1
            continue
        if pos + 2 > end:
            raise ValueError("RTP two-byte extension element is truncated")
        value_len = data[pos + 1]
        if pos + 2 + value_len > end:
            raise ValueError("RTP two-byte extension element is truncated")
        elements.append((ext_id, pos, pos + 2, value_len))
        pos += 2 + value_len
    return tuple(elements)


def patch_fixed_header(buf: bytearray, b1: int, seq: int, timestamp: int, ssrc: int) -> None:
    """Overwrite M|PT, sequence number, timestamp and SSRC in place (RFC 3550 §5.1)."""
    FIXED_PATCH.pack_into(buf, 1, b1, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)


def abs_send_time_now() -> bytes:
    """The 24-bit abs-send-time value for now: seconds in 6.18 fixed point, modulo 64 s.

    Only differences matter to the receiver's bandwidth estimator, so a local clock serves.
    """
    return (int(time.time() * 262144.0) & 0xFFFFFF).to_bytes(3, "big")


# Actions of an ExtensionRewriter, per source element id.
_RENAME = 0  # write a new id, keep the value
_DROP = 1  # zero the element: zero bytes are padding in both forms (RFC 8285 §4.2, §4.3)
_MID = 2  # write the consumer's MID value (shrinking and zero-padding if shorter)
_ABS = 3  # write the forwarding time
_DROP_ACTION = (_DROP, 0, b"")


class LayoutTable:
    """Numbers the distinct extension layouts of one stream (a publisher sends a handful:
    MID on the first packets, audio level on audio...), so each consumer compiles its
    rewrite once per layout and then looks it up by a small int."""

    __slots__ = ("_ids",)

    MAX_LAYOUTS = 64

    def __init__(self) -> None:
        self._ids: dict[tuple[tuple[int, int, int, int], ...], int] = {}

    def number(self, header: RtpHeader) -> None:
        if not header.ext_form:
            return
        layout = self._ids.get(header.extensions)
        if layout is None:
            if len(self._ids) >= self.MAX_LAYOUTS:
                return  # a stream that keeps changing shape: rewritten uncached
            layout = self._ids[header.extensions] = len(self._ids)
        header.layout = layout


_Plan = tuple[tuple[tuple[int, int, bytes], ...], int]


class ExtensionRewriter:
    """Per consumer: rewrite the producer's header extensions in place for one receiver.

    Ids are translated by URI from the producer's negotiated map to the consumer's (BUNDLE
    gives one id space per transport); unknown ones are zeroed rather than removed, so the
    packet keeps its length and no byte moves. The MID value becomes the consumer's own (a
    browser demuxes by MID first, RFC 8843 §9.2); abs-send-time is stamped with the
    forwarding time, as an RTP translator re-sends the packet (RFC 3550 §7.2).

    Per layout the rewrite compiles to a few constant slice writes plus the offset of the
    abs-send-time value, cached by ``RtpHeader.layout``.
    """

    __slots__ = ("_actions", "_plans")

    def __init__(
        self,
        source: Mapping[int, str],
        destination: Mapping[int, str],
        mid: str | None,
    ) -> None:
        by_uri = {uri: ext_id for ext_id, uri in destination.items()}
        mid_value = mid.encode() if mid is not None else b""
        # Per form (index 1 and 2): source id -> action, or None to keep the element as is.
        # Ids missing from the map were never negotiated: dropped (see ``_compile``).
        self._actions: tuple[dict[int, tuple[int, int, bytes] | None], ...] = ({}, {}, {})
        for form in (1, 2):
            actions = self._actions[form]
            for src_id, uri in source.items():
                dst_id = by_uri.get(uri)
                if dst_id is None or (form == 1 and dst_id > 14):
                    actions[src_id] = _DROP_ACTION
                elif uri == URI_MID:
                    actions[src_id] = (_MID, dst_id, mid_value) if mid_value else _DROP_ACTION
                elif uri == URI_ABS_SEND_TIME:
                    actions[src_id] = (_ABS, dst_id, b"")
                elif dst_id != src_id:
                    actions[src_id] = (_RENAME, dst_id, b"")
                else:
                    actions[src_id] = None
        self._plans: dict[int, _Plan] = {}

    def rewrite(self, buf: bytearray, header: RtpHeader, abs_send_time: bytes | None) -> None:
        """Patch ``buf`` (a copy of the packet ``header`` was parsed from)."""
        plan = self._plans.get(header.layout)
        if plan is None:
            if not header.ext_form:
                return
            plan = self._compile(header)
            if header.layout >= 0:
                self._plans[header.layout] = plan
        writes, abs_at = plan
        for start, end, value in writes:
            buf[start:end] = value
        if abs_at >= 0 and abs_send_time is not None:
            buf[abs_at : abs_at + 3] = abs_send_time

    def _compile(self, header: RtpHeader) -> _Plan:
        form = header.ext_form
        actions = self._actions[form]
        writes: list[tuple[int, int, bytes]] = []
        abs_at = -1
        for ext_id, element, value, length in header.extensions:
            action = actions.get(ext_id, _DROP_ACTION)
            if action is None:
                continue
            kind, new_id, new_value = action
            end = value + length
            if kind == _ABS and length == 3:
                abs_at = value
                if new_id != ext_id:
                    writes.append((element, value, _element_header(form, new_id, length)))
            elif kind == _MID and len(new_value) <= length:
                size = len(new_value)
                padded = new_value + bytes(length - size)
                writes.append((element, end, _element_header(form, new_id, size) + padded))
            elif kind == _RENAME:
                writes.append((element, value, _element_header(form, new_id, length)))
            else:  # dropped, or a value that does not fit
                writes.append((element, end, bytes(end - element)))
        return tuple(writes), abs_at


def _element_header(form: int, ext_id: int, length: int) -> bytes:
    if form == 1:
        return bytes([(ext_id << 4) | (length - 1)])
    return bytes([ext_id, length])


@dataclass(frozen=True)
class Codec:
    """One negotiated payload type (RFC 8866 §6.6 rtpmap + fmtp), free of aiortc types."""

    mime_type: str
    clock_rate: int
    payload_type: int
    channels: int | None = None
    parameters: Mapping[str, str | int | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.mime_type.split("/", 1)[-1].upper()

    @property
    def is_rtx(self) -> bool:
        return self.name == "RTX"


# RFC 6184 §8.1 / libwebrtc's table: (profile_idc, iop mask, iop value) -> profile.
_H264_PROFILES = (
    (0x42, 0x4F, 0x40, "constrained-baseline"),
    (0x4D, 0x8F, 0x80, "constrained-baseline"),
    (0x58, 0xCF, 0xC0, "constrained-baseline"),
    (0x42, 0x4F, 0x00, "baseline"),
    (0x58, 0xCF, 0x80, "baseline"),
    (0x4D, 0xAF, 0x00, "main"),
    (0x64, 0xFF, 0x00, "high"),
    (0x64, 0xFF, 0x0C, "constrained-high"),
)


def h264_profile(profile_level_id: str) -> str | None:
    """The H.264 profile of a ``profile-level-id`` (level ignored: level-asymmetry-allowed)."""
    try:
        value = int(profile_level_id, 16)
    except ValueError:
        return None
    if len(profile_level_id) != 6:
        return None
    idc, iop = value >> 16, (value >> 8) & 0xFF
    for p_idc, mask, masked, name in _H264_PROFILES:
        if idc == p_idc and iop & mask == masked:
            return name
    return None


def codecs_match(a: Codec, b: Codec) -> bool:
    """Same codec by name and clock rate; for H.264 also profile and packetization-mode."""
    if a.name != b.name or a.clock_rate != b.clock_rate:
        return False
    if a.name == "H264":

        def mode(c: Codec) -> str:
            return str(c.parameters.get("packetization-mode", "0"))

        def profile(c: Codec) -> str | None:
            return h264_profile(str(c.parameters.get("profile-level-id", "42e01f")))

        return mode(a) == mode(b) and profile(a) is not None and profile(a) == profile(b)
    return True


def map_payload_types(source: Sequence[Codec], destination: Sequence[Codec]) -> dict[int, int]:
    """Producer payload type -> consumer payload type, media codecs only (RTX is unwrapped)."""
    mapping: dict[int, int] = {}
    for src in source:
        if src.is_rtx:
            continue
        for dst in destination:
            if not dst.is_rtx and codecs_match(src, dst):
                mapping[src.payload_type] = dst.payload_type
                break
    return mapping


def marker_pt_table(mapping: Mapping[int, int]) -> list[int]:
    """A 256-entry table from the source M|PT byte to the consumer's (-1: not forwardable)."""
    table = [-1] * 256
    for src, dst in mapping.items():
        table[src] = dst
        table[src | 0x80] = dst | 0x80
    return table


def is_keyframe_start(codec_name: str, data: bytes, header: RtpHeader) -> bool:
    """Whether this packet starts a frame a decoder can start from (VP8, H.264; audio: always)."""
    start, end = header.payload_offset, header.payload_end
    if codec_name == "VP8":
        return _vp8_keyframe_start(data, start, end)
    if codec_name == "H264":
        return _h264_keyframe_start(data, start, end)
    return codec_name != "VP9" and codec_name != "AV1"


def _vp8_keyframe_start(data: bytes, pos: int, end: int) -> bool:
    # RFC 7741 §4.2 payload descriptor, then §4.3 payload header (P bit 0 = key frame).
    if pos >= end:
        return False
    b = data[pos]
    if not b & 0x10 or b & 0x07:  # S=1 and PID=0: first packet of the frame
        return False
    pos += 1
    if b & 0x80:  # X
        if pos >= end:
            return False
        x = data[pos]
        pos += 1
        if x & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= end:
                return False
            pos += 2 if data[pos] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T or K
            pos += 1
    return pos < end and not data[pos] & 0x01


def _h264_keyframe_start(data: bytes, pos: int, end: int) -> bool:
    # RFC 6184 §5.6 single NAL, §5.7.1 STAP-A, §5.8 FU-A; IDR = 5, SPS = 7.
    if pos >= end:
        return False
    nal_type = data[pos] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:
        pos += 1
        while pos + 2 < end:
            size = _U16.unpack_from(data, pos)[0]
            if size == 0 or pos + 2 >= end:
                return False
            if data[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and pos + 1 < end:
        fu = data[pos + 1]
        return bool(fu & 0x80) and fu & 0x1F in (5, 7)
    return False


def unwrap_rtx(data: bytes, header: RtpHeader, payload_type: int, ssrc: int) -> bytes | None:
    """The original packet carried by an RTX packet (RFC 4588 §4), or None for padding."""
    start = header.payload_offset
    if header.payload_end - start < 2:
        return None  # a bandwidth probe: padding only
    original_seq = _U16.unpack_from(data, start)[0]
    buf = bytearray(data[:start])
    buf += data[start + 2 :]
    FIXED_PATCH.pack_into(
        buf, 1, (header.b1 & 0x80) | payload_type, original_seq, header.timestamp, ssrc
    )
    return bytes(buf)


def pack_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """A Picture Loss Indication (RFC 4585 §6.3.1): FMT 1, PT 206, no FCI."""
    return struct.pack("!BBHII", 0x80 | PSFB_PLI, RTCP_PSFB, 2, sender_ssrc, media_ssrc)


def pack_nack(sender_ssrc: int, media_ssrc: int, lost: Sequence[int]) -> bytes:
    """A Generic NACK (RFC 4585 §6.2.1) for ``lost`` sequence numbers (sorted, mod 2^16)."""
    fci = bytearray()
    pid = -1
    blp = 0
    for seq in lost:
        if pid >= 0:
            d = (seq - pid - 1) & 0xFFFF
            if d < 16:
                blp |= 1 << d
                continue
            fci += struct.pack("!HH", pid, blp)
        pid, blp = seq & 0xFFFF, 0
    if pid >= 0:
        fci += struct.pack("!HH", pid, blp)
    words = 2 + len(fci) // 4
    return (
        struct.pack("!BBHII", 0x80 | RTPFB_NACK, RTCP_RTPFB, words, sender_ssrc, media_ssrc) + fci
    )


def pack_remb(sender_ssrc: int, bitrate: int, media_ssrcs: Sequence[int]) -> bytes:
    """A Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb-03 §2.2): PSFB
    FMT 15 with media SSRC 0, "REMB", the SSRC count, the bitrate as a 6-bit exponent and an
    18-bit mantissa (rounded down: the sender may send less, never more), the SSRCs."""
    if bitrate < 0 or bitrate > REMB_MAX_BITRATE:
        raise ValueError("REMB bitrate out of range")
    if len(media_ssrcs) > 255:
        raise ValueError("REMB lists at most 255 SSRCs")
    exponent = max(0, bitrate.bit_length() - 18)
    mantissa = bitrate >> exponent
    words = 4 + len(media_ssrcs)
    return struct.pack(
        f"!BBHII4sBBH{len(media_ssrcs)}I",
        0x80 | PSFB_AFB,
        RTCP_PSFB,
        words,
        sender_ssrc,
        0,
        _REMB,
        len(media_ssrcs),
        (exponent << 2) | (mantissa >> 16),
        mantissa & 0xFFFF,
        *media_ssrcs,
    )


def parse_remb(fci: bytes) -> tuple[int, tuple[int, ...]]:
    """(bitrate, SSRCs) of a REMB's feedback control information; ``ValueError`` if it is
    not one (other application feedback shares FMT 15)."""
    if len(fci) < 8 or fci[:4] != _REMB:
        raise ValueError("not a REMB")
    count = fci[4]
    if len(fci) < 8 + 4 * count:
        raise ValueError("REMB SSRC list is truncated")
    bitrate = (((fci[5] & 0x03) << 16) | _U16.unpack_from(fci, 6)[0]) << (fci[5] >> 2)
    return bitrate, struct.unpack_from(f"!{count}I", fci, 8)


def audio_level_offset(header: RtpHeader, ext_id: int) -> int:
    """Where the ssrc-audio-level byte of this packet is (RFC 6464 §3: V bit, then the level
    in -dBov, 0 loudest, 127 silence), or -1. Same for every packet of one ``layout``."""
    for element_id, _, value, length in header.extensions:
        if element_id == ext_id and length >= 1:
            return value
    return -1
