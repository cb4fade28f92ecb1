"""Imaging through a real server: uploads, de-identification on ingest, DICOMweb read and
STOW with a third-party client (``dicomweb-client``), authorisation, caching, follow-me."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import cv2
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.imaging import dicomgen
from tests.utils import ServerProcess, closing, connect, redeem, register

pytestmark = pytest.mark.timeout(120)


async def _room(server: ServerProcess) -> tuple[Any, str, str]:
    host = await register(server.url)
    room = await host.create_room(lobby=False)
    adm = await host.join(room["id"])
    return host, room["id"], adm["token"]


async def _upload(host: Any, room_id: str, token: str, data: bytes, **q: str) -> tuple[int, Any]:
    url = f"/api/rooms/{room_id}/imaging/files"
    async with host.session.post(
        url, data=data, params=q, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        return r.status, await r.json()


def _series_bytes(tmp: Path, n: int = 4, **kw: Any) -> list[bytes]:
    files = dicomgen.write_series(dicomgen.ct_series(n, **kw), tmp)
    return [f.read_bytes() for f in files]


def _client(server: ServerProcess, room_id: str, token: str) -> DICOMwebClient:
    return DICOMwebClient(
        url=f"{server.url}/dicomweb/rooms/{room_id}",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_upload_deidentifies_and_dicomweb_client_reads_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    host, room_id, token = await _room(server)
    originals = _series_bytes(tmp_path, 4, rows=64, cols=64)
    answers = [await _upload(host, room_id, token, data) for data in originals]
    assert all(status == 200 and a["ok"] and not a["duplicate"] for status, a in answers)
    study, series = answers[0][1]["study_uid"], answers[0][1]["series_uid"]
    # UIDs are remapped, consistently within the room: one study, one series.
    assert study != dicomgen.CT_STUDY_UID
    assert {a["series_uid"] for _, a in answers} == {series}

    client = _client(server, room_id, token)
    studies = await asyncio.to_thread(client.search_for_studies)
    assert [s["0020000D"]["Value"][0] for s in studies] == [study]
    assert studies[0]["00201208"]["Value"] == [4]
    found = await asyncio.to_thread(client.search_for_series, study)
    assert found[0]["0020000E"]["Value"] == [series]
    assert found[0]["00080060"]["Value"] == ["CT"]
    instances = await asyncio.to_thread(
        client.search_for_instances, study, series, search_filters={"InstanceNumber": "2"}
    )
    assert len(instances) == 1 and instances[0]["00200013"]["Value"] == [2]

    metadata = await asyncio.to_thread(client.retrieve_series_metadata, study, series)
    assert len(metadata) == 4
    text = json.dumps(metadata)
    for phi in ("DOE^JANE", "MRN00427781", "SAINT EXAMPLE", "ACC99887766"):  # dicomgen's fake PHI
        assert phi not in text
    first = pydicom.Dataset.from_json(metadata[0], bulk_data_uri_handler=lambda *a: b"")
    assert first.Modality == "CT" and first.Rows == 64
    assert first.PatientIdentityRemoved == "YES"

    sop = answers[0][1]["sop_uid"]
    frames = await asyncio.to_thread(client.retrieve_instance_frames, study, series, sop, [1])
    stored = np.frombuffer(frames[0], dtype="<i2").reshape(64, 64)
    expected = pydicom.dcmread(io.BytesIO(originals[0])).pixel_array
    assert np.array_equal(stored, expected)

    jpeg = await asyncio.to_thread(
        client.retrieve_instance_frames_rendered,
        study,
        series,
        sop,
        [1],
        media_types=("image/jpeg",),
        params={"window": "40,400,linear"},  # sent URL-encoded: window=40%2C400%2Clinear
    )
    assert jpeg[:3] == b"\xff\xd8\xff"
    # The window asked for is the one applied (the file's own is 40/400): lung, -600/1500.
    lung = await asyncio.to_thread(
        client.retrieve_instance_frames_rendered,
        study,
        series,
        sop,
        [1],
        media_types=("image/jpeg",),
        params={"window": "-600,1500,linear"},
    )
    source = pydicom.dcmread(io.BytesIO(originals[0]))
    hu = expected * float(source.RescaleSlope) + float(source.RescaleIntercept)
    decoded = cv2.imdecode(np.frombuffer(lung, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded is not None
    got = decoded.astype(float)

    def window(center: float, width: float) -> Any:
        return np.clip((hu - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255

    # JPEG at quality 90 on a noisy 64² image: a few grey levels off on average.
    assert np.abs(got - window(-600, 1500)).mean() < 4
    assert np.abs(got - window(40, 400)).mean() > 20

    # Pixel Data's BulkDataURI, resolved against the metadata's URL, gives the frame.
    uri = metadata[0]["7FE00010"]["BulkDataURI"]
    url = urljoin(f"{server.url}/dicomweb/rooms/{room_id}/studies/{study}/series/{series}", uri)
    bulk = await asyncio.to_thread(client.retrieve_bulkdata, url)
    assert [np.frombuffer(b, "<i2").reshape(64, 64).tolist() for b in bulk] == [expected.tolist()]

    instance = await asyncio.to_thread(client.retrieve_instance, study, series, sop)
    assert instance.SOPInstanceUID == sop
    assert instance.preamble == b"\x00" * 128  # re-serialised with a zeroed preamble
    assert "DOE" not in str(instance.PatientName)


async def test_reupload_dedupes_and_bad_files_are_refused_one_by_one(
    server: ServerProcess, tmp_path: Path
) -> None:
    host, room_id, token = await _room(server)
    good = _series_bytes(tmp_path, 2, rows=32, cols=32)
    assert (await _upload(host, room_id, token, good[0]))[0] == 200
    status, again = await _upload(host, room_id, token, good[0])
    assert status == 200 and again["duplicate"]
    for bad in (b"not a dicom file at all", dicomgen.deep_sequence(), dicomgen.big_endian()):
        status, answer = await _upload(host, room_id, token, bad)
        assert status == 422 and not answer["ok"] and answer["reason"], answer
    # The server keeps serving: the next good file goes in.
    status, answer = await _upload(host, room_id, token, good[1])
    assert status == 200 and answer["ok"] and not answer["duplicate"]
    # A resumed upload asks by the file's SHA-256 first.
    import hashlib

    known = hashlib.sha256(good[1]).hexdigest()
    async with host.session.get(
        f"/api/rooms/{room_id}/imaging/files/{known}",
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 200 and (await r.json())["sop_uid"] == answer["sop_uid"]


async def test_stow_rs_with_dicomweb_client(server: ServerProcess, tmp_path: Path) -> None:
    _, room_id, token = await _room(server)
    datasets = dicomgen.ct_series(3, rows=32, cols=32)
    client = _client(server, room_id, token)
    answer = await asyncio.to_thread(client.store_instances, datasets)
    refs = answer.ReferencedSOPSequence
    assert len(refs) == 3
    assert "FailedSOPSequence" not in answer
    studies = await asyncio.to_thread(client.search_for_studies)
    assert studies[0]["00201208"]["Value"] == [3]


async def test_stow_rs_refuses_a_bad_instance_and_keeps_the_good(
    server: ServerProcess, tmp_path: Path
) -> None:
    _, room_id, token = await _room(server)
    first, bad, last = dicomgen.ct_series(3, rows=32, cols=32)
    del bad.StudyInstanceUID
    client = _client(server, room_id, token)
    # dicomweb-client parses the answer as DICOM JSON: it must hold tags only.
    answer = await asyncio.to_thread(client.store_instances, [first, bad, last])
    assert len(answer.ReferencedSOPSequence) == 2
    [failed] = answer.FailedSOPSequence
    assert failed.FailureReason == 0xC000
    assert failed.ErrorComment.startswith("missing_attribute:"), failed.ErrorComment
    assert len(failed.ErrorComment) <= 64
    studies = await asyncio.to_thread(client.search_for_studies)
    assert studies[0]["00201208"]["Value"] == [2]


async def test_bulk_data_uri_gives_every_frame_of_a_multi_frame_instance(
    server: ServerProcess, tmp_path: Path
) -> None:
    host, room_id, token = await _room(server)
    [ds] = dicomgen.ct_series(1, rows=32, cols=32)
    frames = np.stack([ds.pixel_array + 100 * k for k in range(3)]).astype(ds.pixel_array.dtype)
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    status, a = await _upload(
        host, room_id, token, dicomgen.write(ds, tmp_path / "three.dcm").read_bytes()
    )
    assert status == 200 and a["frames"] == 3, a
    client = _client(server, room_id, token)
    [meta] = await asyncio.to_thread(
        client.retrieve_series_metadata, a["study_uid"], a["series_uid"]
    )
    uri = meta["7FE00010"]["BulkDataURI"]
    base = f"{server.url}/dicomweb/rooms/{room_id}/studies/{a['study_uid']}/metadata"
    [bulk] = await asyncio.to_thread(client.retrieve_bulkdata, urljoin(base, uri))
    assert np.array_equal(np.frombuffer(bulk, "<i2").reshape(3, 32, 32), frames)
    auth = {"Authorization": f"Bearer {token}"}
    async with host.session.get(
        f"{server.url}{uri[: -len('7FE00010')]}00280010", headers=auth
    ) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_a_client_leaving_mid_answer_is_no_server_error(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Multipart answers bigger than the socket's buffer: the client resets the connection
    after the headers; the server ends the answer quietly (the fixture fails the test on any
    error in the server's log)."""
    import socket
    import struct

    host, room_id, token = await _room(server)
    [ds] = dicomgen.ct_series(1, rows=256, cols=256)
    one = ds.pixel_array
    ds.NumberOfFrames = 32
    ds.PixelData = np.tile(one, (32, 1, 1)).tobytes()  # 4 MiB
    status, a = await _upload(
        host, room_id, token, dicomgen.write(ds, tmp_path / "big.dcm").read_bytes()
    )
    assert status == 200 and a["frames"] == 32, a
    instance = (
        f"/dicomweb/rooms/{room_id}/studies/{a['study_uid']}/series/{a['series_uid']}"
        f"/instances/{a['sop_uid']}"
    )
    port = int(server.url.rsplit(":", 1)[1])
    for path in (
        instance + "/frames/" + ",".join(str(n) for n in range(1, 33)),
        instance + "/bulkdata/7FE00010",
    ):

        def leave_early(path: str = path) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                sock.sendall(request.encode() + b"\r\n\r\n")
                head = sock.recv(4096)
                # close with a reset (linger 0) while the server still has megabytes to send
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return head

        assert (await asyncio.to_thread(leave_early)).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.5)  # let the handlers meet the reset
    async with host.session.get(
        f"/dicomweb/rooms/{room_id}/studies", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200


async def test_who_may_upload_and_read(server: ServerProcess, tmp_path: Path) -> None:
    host, room_id, token = await _room(server)
    data = _series_bytes(tmp_path, 1, rows=32, cols=32)[0]
    # No token, a wrong token: refused with a JSON error.
    async with host.session.post(f"/api/rooms/{room_id}/imaging/files", data=data) as r:
        assert r.status == 401 and (await r.json())["error"]["code"]
    status, _ = await _upload(host, room_id, "not-a-token", data)
    assert status == 401
    # An observer reads but cannot upload, nor keep identity.
    code = await host.make_code(room_id, role="observer")
    status, obs = await redeem(server.url, room_id, code["code"], "Observer")
    assert status == 201
    status, _ = await _upload(host, room_id, obs["token"], data)
    assert status == 403
    code = await host.make_code(room_id, role="participant")
    _, guest = await redeem(server.url, room_id, code["code"], "Guest")
    status, _ = await _upload(host, room_id, guest["token"], data, keep_identity="true")
    assert status == 403
    status, _ = await _upload(host, room_id, token, data)
    assert status == 200
    async with host.session.get(
        f"/dicomweb/rooms/{room_id}/studies", headers={"Authorization": f"Bearer {obs['token']}"}
    ) as r:
        assert r.status == 200 and len(await r.json()) == 1
    # Another room's participant sees nothing of this one.
    _, _other_room, other_token = await _room(server)
    async with host.session.get(
        f"/dicomweb/rooms/{room_id}/studies", headers={"Authorization": f"Bearer {other_token}"}
    ) as r:
        assert r.status == 401


async def test_host_may_keep_identity(server: ServerProcess, tmp_path: Path) -> None:
    host, room_id, token = await _room(server)
    data = _series_bytes(tmp_path, 1, rows=32, cols=32)[0]
    status, answer = await _upload(host, room_id, token, data, keep_identity="true")
    assert status == 200 and answer["study_uid"] == dicomgen.CT_STUDY_UID


async def test_rendered_answers_carry_etags_and_304(server: ServerProcess, tmp_path: Path) -> None:
    host, room_id, token = await _room(server)
    _, a = await _upload(host, room_id, token, _series_bytes(tmp_path, 1, rows=32, cols=32)[0])
    url = (
        f"/dicomweb/rooms/{room_id}/studies/{a['study_uid']}/series/{a['series_uid']}"
        f"/instances/{a['sop_uid']}/frames/1/rendered?window=40%2C400&accept=image/png"
    )
    auth = {"Authorization": f"Bearer {token}"}
    async with host.session.get(url, headers=auth) as r:
        assert r.status == 200 and r.content_type == "image/png"
        assert "private" in r.headers["Cache-Control"]
        etag = r.headers["ETag"]
        assert (await r.read())[:8] == b"\x89PNG\r\n\x1a\n"
    async with host.session.get(url, headers={**auth, "If-None-Match": etag}) as r:
        assert r.status == 304
    async with host.session.get(url.replace("window=40%2C400", "window=abc"), headers=auth) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"
    missing = url.replace("/frames/1/", "/frames/9/")
    async with host.session.get(missing, headers=auth) as r:
        assert r.status == 404


async def test_series_metadata_is_gzipped_and_cached(server: ServerProcess, tmp_path: Path) -> None:
    host, room_id, token = await _room(server)
    answers = [
        await _upload(host, room_id, token, d) for d in _series_bytes(tmp_path, 3, rows=16, cols=16)
    ]
    a = answers[0][1]
    url = f"/dicomweb/rooms/{room_id}/studies/{a['study_uid']}/series/{a['series_uid']}/metadata"
    auth = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"}
    async with host.session.get(url, headers=auth) as r:
        assert r.status == 200 and r.headers.get("Content-Encoding") == "gzip"
        assert len(await r.json(content_type=None)) == 3


async def test_follow_the_presenter(server: ServerProcess, tmp_path: Path) -> None:
    host, room_id, token = await _room(server)
    code = await host.make_code(room_id, role="participant")
    _, guest = await redeem(server.url, room_id, code["code"], "Guest")
    _, a = await _upload(host, room_id, token, _series_bytes(tmp_path, 1, rows=16, cols=16)[0])
    presenter = await connect(server.url, room_id, token)
    follower = await connect(server.url, room_id, guest["token"])
    async with closing(presenter, follower):
        await follower.wait("joined")
        view = {
            "study_uid": a["study_uid"],
            "series_uid": a["series_uid"],
            "sop_uid": a["sop_uid"],
            "frame": 1,
            "window_center": 40.0,
            "window_width": 400.0,
            "zoom": 2.0,
        }
        ack = await presenter.call("viewer", {"follow": True, "view": view})
        assert ack["ok"], ack
        got = await follower.wait("viewer")
        assert got["view"]["sop_uid"] == a["sop_uid"] and got["view"]["zoom"] == 2.0
        bad = await presenter.call("viewer", {"follow": True, "view": {**view, "sop_uid": "1.2"}})
        assert not bad["ok"] and bad["error"]["code"] == "not_found"
        bad = await presenter.call("viewer", {"follow": True, "view": {**view, "zoom": 1e9}})
        assert not bad["ok"]
        # Someone joining now catches up with what is presented.
        code = await host.make_code(room_id, role="observer")
        _, late = await redeem(server.url, room_id, code["code"], "Late")
        latecomer = await connect(server.url, room_id, late["token"])
        async with closing(latecomer):
            got = await latecomer.wait("viewer")
            assert got["view"]["sop_uid"] == a["sop_uid"]
            # Observers follow but do not present.
            denied = await latecomer.call("viewer", {"follow": True, "view": view})
            assert not denied["ok"] and denied["error"]["code"] == "forbidden"


async def test_a_photo_becomes_a_secondary_capture(server: ServerProcess) -> None:
    import cv2

    host, room_id, token = await _room(server)
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 2] = 200
    _ok, png = cv2.imencode(".png", img)
    status, answer = await _upload(host, room_id, token, png.tobytes())
    assert status == 200 and answer["ok"], answer
    assert answer["modality"] == "OT"
    url = (
        f"/dicomweb/rooms/{room_id}/studies/{answer['study_uid']}/series/"
        f"{answer['series_uid']}/instances/{answer['sop_uid']}/frames/1"
    )
    async with host.session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        body = await r.read()
    assert len(body) > 40 * 60 * 3  # one part holding the RGB frame


async def test_real_ultrasound_with_burned_in_text_is_flagged(server: ServerProcess) -> None:
    import deid_data  # type: ignore[import-untyped]

    host, room_id, token = await _room(server)
    path = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
    status, answer = await _upload(host, room_id, token, path.read_bytes())
    assert status == 200, answer
    assert answer["burned_in"]
    assert "text_in_pixels" in answer["warnings"]
    # The banner at the top of this image holds the patient's name and dates.
    assert any(y < 80 for _, y, _, _ in answer["text_regions"]), answer["text_regions"]


async def test_only_the_host_may_share_a_photo_unblurred(server: ServerProcess) -> None:
    import cv2

    host, room_id, token = await _room(server)
    _, png = cv2.imencode(".png", np.full((20, 20, 3), 90, np.uint8))
    code = await host.make_code(room_id, role="participant")
    _, guest = await redeem(server.url, room_id, code["code"], "Guest")
    status, _ = await _upload(host, room_id, guest["token"], png.tobytes(), blur_faces="false")
    assert status == 403
    status, answer = await _upload(host, room_id, token, png.tobytes(), blur_faces="false")
    assert status == 200 and answer["ok"]


async def test_jpeg2000_gets_a_serving_copy_with_the_same_values(
    server: ServerProcess, tmp_path: Path
) -> None:
    from pydicom.uid import JPEG2000Lossless

    host, room_id, token = await _room(server)
    [ds] = dicomgen.ct_series(1, rows=64, cols=64)
    j2k = dicomgen.write(dicomgen.compressed(ds, JPEG2000Lossless), tmp_path / "j2k.dcm")
    status, a = await _upload(host, room_id, token, j2k.read_bytes())
    assert status == 200, a
    blobs = server.data_dir / "imaging" / "blobs"
    deadline = asyncio.get_running_loop().time() + 20
    while sum(1 for p in blobs.rglob("*") if p.is_file()) < 2:
        assert asyncio.get_running_loop().time() < deadline, "no serving copy was written"
        await asyncio.sleep(0.1)
    client = _client(server, room_id, token)
    frames = await asyncio.to_thread(
        client.retrieve_instance_frames, a["study_uid"], a["series_uid"], a["sop_uid"], [1]
    )
    assert np.array_equal(np.frombuffer(frames[0], "<i2").reshape(64, 64), ds.pixel_array)
    # Retrieval still gives the original, compressed.
    instance = await asyncio.to_thread(
        client.retrieve_instance, a["study_uid"], a["series_uid"], a["sop_uid"]
    )
    assert instance.file_meta.TransferSyntaxUID == JPEG2000Lossless


async def test_the_host_masks_burned_in_text(server: ServerProcess) -> None:
    import deid_data

    host, room_id, token = await _room(server)
    path = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
    status, a = await _upload(host, room_id, token, path.read_bytes())
    assert status == 200 and a["text_regions"], a
    regions = a["text_regions"]
    auth = {"Authorization": f"Bearer {token}"}
    code = await host.make_code(room_id, role="participant")
    _, guest = await redeem(server.url, room_id, code["code"], "Guest")
    mask_url = f"/api/rooms/{room_id}/imaging/instances/{a['sop_uid']}/mask"
    async with host.session.post(
        mask_url, json={"regions": regions}, headers={"Authorization": f"Bearer {guest['token']}"}
    ) as r:
        assert r.status == 403
    async with host.session.post(mask_url, json={"regions": [[0, 0, 10**6, 5]]}, headers=auth) as r:
        assert r.status == 422, await r.text()
    async with host.session.post(mask_url, json={"regions": "all"}, headers=auth) as r:
        assert r.status == 400
    async with host.session.post(mask_url, json={"regions": regions}, headers=auth) as r:
        masked = await r.json()
        assert r.status == 200, masked
    assert masked["sop_uid"] == a["sop_uid"]  # annotations stay anchored
    client = _client(server, room_id, token)
    instance = await asyncio.to_thread(
        client.retrieve_instance, a["study_uid"], a["series_uid"], a["sop_uid"]
    )
    assert instance.BurnedInAnnotation == "NO"
    pixels = instance.pixel_array  # (rows, cols) or (rows, cols, 3)
    before = pydicom.dcmread(path).pixel_array
    for x, y, w, h in regions:
        assert not pixels[y : y + h, x : x + w].any()
        assert before[y : y + h, x : x + w].any()  # there was something there
    outside = np.ones(pixels.shape[:2], bool)
    for x, y, w, h in regions:
        outside[y : y + h, x : x + w] = False
    assert np.array_equal(pixels[outside], before[outside])
    # The unmasked file is gone from the store.
    blobs = server.data_dir / "imaging" / "blobs"
    assert sum(1 for p in blobs.rglob("*") if p.is_file()) == 1


async def test_a_large_file_resumes_where_the_server_stopped(
    server: ServerProcess, tmp_path: Path
) -> None:
    host, room_id, token = await _room(server)
    data = _series_bytes(tmp_path, 1, rows=128, cols=128)[0]
    auth = {"Authorization": f"Bearer {token}"}
    base = f"/api/rooms/{room_id}/imaging/uploads"
    async with host.session.post(base, json={"size": len(data)}, headers=auth) as r:
        assert r.status == 201
        upload = (await r.json())["upload_id"]
    url = f"{base}/{upload}"
    half = len(data) // 2
    async with host.session.patch(url, params={"offset": "0"}, data=data[:half], headers=auth) as r:
        assert r.status == 200 and (await r.json())["offset"] == half
    # A client that lost track (a reconnect) asks, and a wrong offset is refused.
    async with host.session.get(url, headers=auth) as r:
        assert (await r.json())["offset"] == half
    async with host.session.patch(url, params={"offset": "0"}, data=data, headers=auth) as r:
        assert r.status == 409
    # Someone else cannot see or feed it.
    code = await host.make_code(room_id, role="participant")
    _, guest = await redeem(server.url, room_id, code["code"], "Guest")
    async with host.session.get(url, headers={"Authorization": f"Bearer {guest['token']}"}) as r:
        assert r.status == 404
    async with host.session.patch(
        url, params={"offset": str(half)}, data=data[half:], headers=auth
    ) as r:
        done = await r.json()
        assert r.status == 200 and done["ok"] and not done["duplicate"], done
    async with host.session.get(url, headers=auth) as r:
        assert r.status == 404  # finished
    # Too many bytes for what was announced.
    async with host.session.post(base, json={"size": 10}, headers=auth) as r:
        upload = (await r.json())["upload_id"]
    async with host.session.patch(
        f"{base}/{upload}", params={"offset": "0"}, data=b"x" * 20, headers=auth
    ) as r:
        assert r.status == 413


async def test_a_part_past_the_file_cap_or_the_request_budget_is_refused(tmp_path: Path) -> None:
    """STOW-RS streams each part to disk under the per-file cap and what is left of the
    per-request budget; a part past either is refused and leaves no temp file."""
    from types import SimpleNamespace

    from consultd.errors import PayloadTooLarge
    from consultd.imaging.dicomweb import _to_temp

    imaging: Any = SimpleNamespace(
        blobs=SimpleNamespace(temp_path=lambda suffix="": tmp_path / f"t{len(made)}{suffix}")
    )
    made: list[int] = []

    def body(n_bytes: int) -> Any:
        data = io.BytesIO(b"x" * n_bytes)
        made.append(n_bytes)

        async def read(n: int) -> bytes:
            return data.read(min(n, 7))

        return read

    budget = [100]
    first = await _to_temp(imaging, body(60), 80, budget)
    assert first.read_bytes() == b"x" * 60 and budget == [40]
    with pytest.raises(PayloadTooLarge):
        await _to_temp(imaging, body(50), 80, budget)  # under the file cap, past the budget
    with pytest.raises(PayloadTooLarge):
        await _to_temp(imaging, body(90), 1000, [89])  # past the budget by 1
    with pytest.raises(PayloadTooLarge):
        await _to_temp(imaging, body(81), 80, [1000])  # past the file cap
    assert budget == [40]
    assert os.listdir(tmp_path) == [first.name]  # the others removed
