"""DICOMweb (PS3.18) for a room's images, and the browser's upload route.

Under ``/dicomweb/rooms/{room_id}``: QIDO-RS (studies, series, instances), WADO-RS
(metadata, instances, frames, rendered, thumbnails) and STOW-RS. Every call names the
room and is authorised against it: a participant token (``Authorization: Bearer``) or,
for GET only, the participant cookie the browser holds (``<img src>`` cannot send a header).
Errors are JSON (``{"error": {...}}``) like the rest of the API.

Instances are immutable, so answers carry ``Cache-Control: private`` and an ETag; a
matching ``If-None-Match`` costs a 304 and no work.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from consultd.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from consultd.imaging.index import Instance, Query, QueryError, RoomIndex, encode_rows
from consultd.imaging.pixels import DecodedFrame
from consultd.imaging.render import RenderError, RenderParams
from consultd.imaging.service import ImagingService, IngestOutcome
from consultd.rooms.policy import Action, authorize_admitted
from consultd.rooms.room import Participant, Role, Room
from consultd.services import SERVICES
from consultd.transport.http import bearer_or_cookie

IMAGING = web.AppKey("imaging", ImagingService)
PREFIX = "/dicomweb/rooms/{room_id}"
DICOM_JSON = "application/dicom+json"
CACHE = "private, max-age=86400"
THUMBNAIL_SIDE = 128
CHUNK = 1 << 20
_FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp"}
_CONTENT_TYPES = {v: k for k, v in _FORMATS.items()}


# -- who is asking -------------------------------------------------------------------------


async def participant_of(request: web.Request, action: Action) -> tuple[Room, Participant]:
    """The room in the path and the participant calling, authorised for ``action``."""
    svc = request.app[SERVICES]
    room_id = request.match_info["room_id"]
    # Cookies only for reads: a cross-site form can post to us, it cannot read.
    bearer = request.headers.get("Authorization", "").lower().startswith("bearer ")
    reading = request.method in ("GET", "HEAD")
    token = bearer_or_cookie(request, room_id) if bearer or reading else None
    if token is None:
        raise Unauthorized("send the participant token: Authorization: Bearer <token>")
    room, p = await svc.rooms.participant_for_token(room_id, token)
    authorize_admitted(p, room, action)
    return room, p


def _imaging(request: web.Request) -> ImagingService:
    return request.app[IMAGING]


def _not_modified(request: web.Request, etag: str) -> web.Response | None:
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={"ETag": etag, "Cache-Control": CACHE})
    return None


def _json_answer(request: web.Request, body: bytes, etag: str | None = None) -> web.Response:
    headers = {"Cache-Control": CACHE if etag else "private, no-store"}
    if etag:
        headers["ETag"] = etag
    return web.Response(body=body, content_type=DICOM_JSON, headers=headers)


# -- QIDO-RS --------------------------------------------------------------------------------


def _query(request: web.Request) -> Query:
    try:
        return Query.parse(list(request.query.items()))
    except QueryError as exc:
        raise BadRequest(str(exc)) from None


async def search_studies(request: web.Request) -> web.StreamResponse:
    room, _ = await participant_of(request, Action.VIEW)
    index = await _imaging(request).index(room)
    return _json_answer(request, encode_rows(index.search_studies(_query(request))))


async def search_series(request: web.Request) -> web.StreamResponse:
    room, _ = await participant_of(request, Action.VIEW)
    index = await _imaging(request).index(room)
    study = request.match_info.get("study")
    return _json_answer(request, encode_rows(index.search_series(_query(request), study)))


async def search_instances(request: web.Request) -> web.StreamResponse:
    room, _ = await participant_of(request, Action.VIEW)
    index = await _imaging(request).index(room)
    rows = index.search_instances(
        _query(request), request.match_info.get("study"), request.match_info.get("series")
    )
    return _json_answer(request, encode_rows(rows))


# -- WADO-RS: metadata ----------------------------------------------------------------------


def _gzip_ok(request: web.Request) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "")


async def series_metadata(request: web.Request) -> web.StreamResponse:
    room, p = await participant_of(request, Action.VIEW)
    imaging = _imaging(request)
    index = await imaging.index(room)
    series = index.series_of(request.match_info["study"], request.match_info["series"])
    if series is None:
        raise NotFound("no such series in this room")
    etag = f'"m-{series.etag()}"'
    if (hit := _not_modified(request, etag)) is not None:
        return hit
    imaging.opened(room, p, series.series_uid)
    gz = _gzip_ok(request)
    resp = _json_answer(request, series.metadata(gzipped=gz), etag)
    if gz:
        resp.headers["Content-Encoding"] = "gzip"
    resp.headers["Vary"] = "Accept-Encoding"
    return resp


async def study_metadata(request: web.Request) -> web.StreamResponse:
    room, p = await participant_of(request, Action.VIEW)
    imaging = _imaging(request)
    index = await imaging.index(room)
    series = index.studies().get(request.match_info["study"])
    if not series:
        raise NotFound("no such study in this room")
    for s in series:
        imaging.opened(room, p, s.series_uid)
    parts = [s.metadata(gzipped=False)[1:-1] for s in series]
    return _json_answer(request, b"[" + b",".join(x for x in parts if x) + b"]")


async def instance_metadata(request: web.Request) -> web.StreamResponse:
    room, _ = await participant_of(request, Action.VIEW)
    inst = await _instance(request, room)
    return _json_answer(request, b"[" + inst.dicom_json + b"]", f'"i-{inst.blob}"')


async def _instance(request: web.Request, room: Room) -> Instance:
    index = await _imaging(request).index(room)
    m = request.match_info
    inst = index.instance(m["study"], m["series"], m["sop"])
    if inst is None:
        raise NotFound("no such instance in this room")
    return inst


# -- WADO-RS: bulk data ---------------------------------------------------------------------


async def _multipart(
    request: web.Request,
    content_type: str,
    parts: list[bytes] | list[Path],
    etag: str | None = None,
) -> web.StreamResponse:
    """A ``multipart/related`` answer. Parts are ready before the first byte goes out, so
    an error is still a JSON answer; a client that goes away mid-answer ends it quietly."""
    boundary = secrets.token_hex(16)
    resp = web.StreamResponse(
        headers={
            "Content-Type": f'multipart/related; type="{content_type}"; boundary={boundary}',
            "Cache-Control": CACHE if etag else "private, no-store",
        }
    )
    if etag:
        resp.headers["ETag"] = etag
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
    try:
        await resp.prepare(request)
        for part in parts:
            await resp.write(head)
            if isinstance(part, Path):
                with part.open("rb") as f:
                    while chunk := await asyncio.to_thread(f.read, CHUNK):
                        await resp.write(chunk)
            else:
                await resp.write(part)
            await resp.write(b"\r\n")
        await resp.write(f"--{boundary}--\r\n".encode())
        await resp.write_eof()
    except ConnectionError:  # the client left: a reset, or "Connection lost" while draining
        pass
    return resp


async def retrieve_instance(request: web.Request) -> web.StreamResponse:
    room, p = await participant_of(request, Action.VIEW)
    inst = await _instance(request, room)
    imaging = _imaging(request)
    imaging.opened(room, p, inst.series_uid)
    return await _multipart(
        request, "application/dicom", [imaging.path_of(inst)], f'"f-{inst.blob}"'
    )


async def retrieve_series(request: web.Request) -> web.StreamResponse:
    room, p = await participant_of(request, Action.VIEW)
    imaging = _imaging(request)
    index = await imaging.index(room)
    series = index.series_of(request.match_info["study"], request.match_info["series"])
    if series is None:
        raise NotFound("no such series in this room")
    imaging.opened(room, p, series.series_uid)
    paths = [imaging.path_of(i) for i in series.ordered()]
    return await _multipart(request, "application/dicom", paths)


def _frame_numbers(text: str, frames: int) -> list[int]:
    try:
        numbers = [int(x) for x in text.split(",")]
    except ValueError:
        raise BadRequest("frame numbers must be integers separated by commas") from None
    if not numbers or len(numbers) > 64:
        raise BadRequest("ask for 1 to 64 frames at a time")
    for n in numbers:
        if not 1 <= n <= frames:
            raise NotFound(f"frame {n} does not exist (1..{frames})")
    return numbers


async def retrieve_frames(request: web.Request) -> web.StreamResponse:
    """Frames as stored values, uncompressed little endian (for client-side window/level)."""
    room, _ = await participant_of(request, Action.VIEW)
    inst = await _instance(request, room)
    numbers = _frame_numbers(request.match_info["frames"], inst.frames)
    etag = f'"r-{inst.blob}-{request.match_info["frames"]}"'
    if (hit := _not_modified(request, etag)) is not None:
        return hit
    imaging = _imaging(request)

    parts: list[bytes] = []
    for n in numbers:
        pixels = (await imaging.frame(inst, n)).pixels
        parts.append(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes())
    return await _multipart(request, "application/octet-stream", parts, etag)


async def retrieve_bulkdata(request: web.Request) -> web.StreamResponse:
    """Pixel Data's BulkDataURI (``.../bulkdata/7FE00010``): every frame's stored values,
    uncompressed little endian, one after the other in one part (PS3.18 8.7.3.3.2), so a
    multi-frame instance is whole. Frames are decoded one at a time as they go out."""
    room, _ = await participant_of(request, Action.VIEW)
    inst = await _instance(request, room)
    if request.match_info["tag"].upper() != "7FE00010":
        raise NotFound("only Pixel Data (7FE00010) is served as bulk data")
    etag = f'"b-{inst.blob}"'
    if (hit := _not_modified(request, etag)) is not None:
        return hit
    imaging = _imaging(request)

    def little_endian(frame: DecodedFrame) -> bytes:
        pixels = frame.pixels
        return bytes(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes())

    first = little_endian(await imaging.frame(inst, 1))  # a failure here is still JSON
    boundary = secrets.token_hex(16)
    resp = web.StreamResponse(
        headers={
            "Content-Type": f'multipart/related; type="application/octet-stream"; '
            f"boundary={boundary}",
            "Cache-Control": CACHE,
            "ETag": etag,
        }
    )
    try:
        await resp.prepare(request)
        await resp.write(f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode())
        await resp.write(first)
        for n in range(2, inst.frames + 1):
            await resp.write(little_endian(await imaging.frame(inst, n)))
        await resp.write(f"\r\n--{boundary}--\r\n".encode())
        await resp.write_eof()
    except ConnectionError:  # the client left: a reset, or "Connection lost" while draining
        pass
    return resp


# -- WADO-RS: rendered ----------------------------------------------------------------------


def render_params(request: web.Request, *, thumbnail: bool = False) -> RenderParams:
    q = request.query
    accept = q.get("accept") or request.headers.get("Accept") or ""
    fmt = "jpeg"
    for media in (m.split(";")[0].strip() for m in accept.split(",")):
        if media in _FORMATS:
            fmt = _FORMATS[media]
            break
    kwargs: dict[str, Any] = {"format": fmt}
    try:
        if "window" in q:
            # aiohttp has URL-decoded it already: dicomweb-client sends window=40%2C400%2Clinear
            parts = q["window"].split(",")
            if len(parts) not in (2, 3):
                raise BadRequest("window is center,width[,function]")
            kwargs["window_center"], kwargs["window_width"] = float(parts[0]), float(parts[1])
            if len(parts) == 3:
                kwargs["voi_function"] = parts[2].strip().upper().replace("-", "_")
        if "quality" in q:
            kwargs["quality"] = int(q["quality"])
        if "viewport" in q:
            side = [int(v) for v in q["viewport"].split(",")[:2]]
            if len(side) != 2:
                raise BadRequest("viewport is width,height")
            kwargs["viewport"] = (side[0], side[1])
        if thumbnail:
            kwargs["viewport"] = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
        return RenderParams(**kwargs)
    except ValueError as exc:
        raise BadRequest(f"bad rendering parameter: {exc}") from None
    except RenderError as exc:
        raise BadRequest(str(exc)) from None


async def _rendered(
    request: web.Request, inst: Instance, number: int, params: RenderParams
) -> web.StreamResponse:
    # A digest, not hash(): string hashes change with every process start.
    digest = hashlib.sha1(repr(params).encode(), usedforsecurity=False).hexdigest()[:16]
    etag = f'"v-{inst.blob}-{number}-{digest}"'
    if (hit := _not_modified(request, etag)) is not None:
        return hit
    try:
        image = await _imaging(request).rendered(inst, number, params)
    except RenderError as exc:
        raise ValidationFailed(str(exc)) from None
    return web.Response(
        body=image,
        content_type=_CONTENT_TYPES[params.format],
        headers={"Cache-Control": CACHE, "ETag": etag},
    )


async def rendered_instance(request: web.Request) -> web.StreamResponse:
    room, _ = await participant_of(request, Action.VIEW)
    inst = await _instance(request, room)
    return await _rendered(request, inst, 1, render_params(request))


async def rendered_frame(request: web.Request) -> web.StreamResponse:
    room, _ = await participant_of(request, Action.VIEW)
    inst = await _instance(request, room)
    numbers = _frame_numbers(request.match_info["frames"], inst.frames)
    if len(numbers) != 1:
        raise BadRequest("render one frame at a time")
    return await _rendered(request, inst, numbers[0], render_params(request))


async def instance_thumbnail(request: web.Request) -> web.StreamResponse:
    room, _ = await participant_of(request, Action.VIEW)
    inst = await _instance(request, room)
    return await _rendered(
        request, inst, (inst.frames + 1) // 2, render_params(request, thumbnail=True)
    )


async def series_thumbnail(request: web.Request) -> web.StreamResponse:
    room, _ = await participant_of(request, Action.VIEW)
    index = await _imaging(request).index(room)
    series = index.series_of(request.match_info["study"], request.match_info["series"])
    if series is None:
        raise NotFound("no such series in this room")
    ordered = series.ordered()
    inst = ordered[len(ordered) // 2]
    return await _rendered(
        request, inst, (inst.frames + 1) // 2, render_params(request, thumbnail=True)
    )


# -- STOW-RS and browser uploads ------------------------------------------------------------


async def _to_temp(
    imaging: ImagingService, read: Callable[[int], Awaitable[bytes]], cap: int, budget: list[int]
) -> Path:
    """Copy a body or multipart part (``read(n)``) to a temp file, refusing it past ``cap``
    bytes or past what is left of the request's ``budget``."""
    path = imaging.blobs.temp_path(".upload")
    size = 0
    try:
        with path.open("wb") as f:
            while True:
                chunk = await read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap or size > budget[0]:
                    raise PayloadTooLarge(f"a file may hold at most {cap} bytes")
                await asyncio.to_thread(f.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    budget[0] -= size
    return path


def _keep_identity(request: web.Request, p: Participant) -> bool:
    keep = request.query.get("keep_identity", "").lower() in ("1", "true", "yes")
    if keep and p.role is not Role.HOST:
        raise Forbidden("only the host may keep patient identity")
    return keep


def _blur_faces(request: web.Request, p: Participant) -> bool:
    """Faces in photos are pixelated unless the host turns it off (``blur_faces=false``)."""
    off = request.query.get("blur_faces", "").lower() in ("0", "false", "no")
    if off and p.role is not Role.HOST:
        raise Forbidden("only the host may share a photo without blurring faces")
    return not off


async def upload_file(request: web.Request) -> web.StreamResponse:
    """One file per request (the browser sends a folder as many): DICOM, JPEG, PNG or WebP."""
    room, p = await participant_of(request, Action.SHARE_IMAGES)
    imaging = _imaging(request)
    keep = _keep_identity(request, p)
    blur = _blur_faces(request, p)
    limits = imaging.limits
    if (request.content_length or 0) > limits.max_file_bytes:
        raise PayloadTooLarge(f"a file may hold at most {limits.max_file_bytes} bytes")
    path = await _to_temp(
        imaging, request.content.read, limits.max_file_bytes, [limits.max_file_bytes]
    )
    outcome = await imaging.ingest(room, p, path, keep_identity=keep, blur_faces=blur)
    status = 200 if outcome.ok else 422
    return web.json_response(
        outcome.to_wire(), status=status, headers={"Cache-Control": "no-store"}
    )


async def mask_instance(request: web.Request) -> web.StreamResponse:
    """The host blacks out regions (burned-in text) of an image: ``{"regions": [[x, y, w,
    h], ...]}`` in image pixels, at most 64."""
    room, p = await participant_of(request, Action.SHARE_IMAGES)
    try:
        body = await request.json()
        raw = body["regions"]
        regions = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in raw]
        if not 1 <= len(regions) <= 64 or any(len(r) != 4 for r in raw):
            raise ValueError
    except (ValueError, KeyError, TypeError, IndexError):
        raise BadRequest('send {"regions": [[x, y, w, h], ...]} with 1 to 64 regions') from None
    outcome = await _imaging(request).mask(room, p, request.match_info["sop"], regions)
    status = 200 if outcome.ok else 422
    return web.json_response(
        outcome.to_wire(), status=status, headers={"Cache-Control": "no-store"}
    )


# -- resumable uploads: one large file in chunks ---------------------------------------------


@dataclass(slots=True)
class _Upload:
    room_id: str
    participant_id: str
    path: Path
    size: int
    keep_identity: bool
    blur_faces: bool
    received: int = 0
    busy: bool = False
    touched: float = 0.0


#: At most this many unfinished resumable uploads per participant (each holds a temp file).
MAX_OPEN_UPLOADS = 8
#: An unfinished upload untouched this long is dropped with its temp file.
UPLOAD_IDLE_S = 3600.0
_UPLOADS = web.AppKey("imaging_uploads", dict)


def _uploads(request: web.Request) -> dict[str, _Upload]:
    uploads: dict[str, _Upload] = request.app[_UPLOADS]
    return uploads


async def start_upload(request: web.Request) -> web.StreamResponse:
    """Open a resumable upload of one file: ``{"size": bytes}`` -> ``{upload_id, offset}``.
    The client then sends chunks with ``PATCH`` and, after a dropped connection, asks
    where to go on with ``GET`` (the offset the server holds)."""
    room, p = await participant_of(request, Action.SHARE_IMAGES)
    imaging = _imaging(request)
    keep, blur = _keep_identity(request, p), _blur_faces(request, p)
    try:
        size = int((await request.json())["size"])
    except (ValueError, KeyError, TypeError):
        raise BadRequest('send {"size": <bytes of the file>}') from None
    if not 0 < size <= imaging.limits.max_file_bytes:
        raise PayloadTooLarge(f"a file may hold 1 to {imaging.limits.max_file_bytes} bytes")
    uploads = _uploads(request)
    now = time.monotonic()
    for stale in [k for k, u in uploads.items() if not u.busy and now - u.touched > UPLOAD_IDLE_S]:
        await asyncio.to_thread(uploads.pop(stale).path.unlink, missing_ok=True)
    if sum(1 for u in uploads.values() if u.participant_id == p.id) >= MAX_OPEN_UPLOADS:
        raise Conflict(f"at most {MAX_OPEN_UPLOADS} unfinished uploads at once")
    upload_id = secrets.token_urlsafe(18)
    path = imaging.blobs.temp_path(".upload")
    await asyncio.to_thread(path.touch)
    uploads[upload_id] = _Upload(room.id, p.id, path, size, keep, blur, touched=now)
    return web.json_response(
        {"upload_id": upload_id, "offset": 0}, status=201, headers={"Cache-Control": "no-store"}
    )


def _own_upload(request: web.Request, room: Room, p: Participant) -> tuple[str, _Upload]:
    upload_id = request.match_info["upload_id"]
    upload = _uploads(request).get(upload_id)
    if upload is None or upload.room_id != room.id or upload.participant_id != p.id:
        raise NotFound("no such upload (finished, or the server restarted: start again)")
    return upload_id, upload


async def upload_offset(request: web.Request) -> web.StreamResponse:
    room, p = await participant_of(request, Action.SHARE_IMAGES)
    _, upload = _own_upload(request, room, p)
    body = {"offset": upload.received, "size": upload.size}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def upload_chunk(request: web.Request) -> web.StreamResponse:
    """Append the body at ``?offset=`` (which must be what the server holds); the chunk
    that completes the file answers with the ingest outcome."""
    room, p = await participant_of(request, Action.SHARE_IMAGES)
    upload_id, upload = _own_upload(request, room, p)
    try:
        offset = int(request.query["offset"])
    except (KeyError, ValueError):
        raise BadRequest("send ?offset=<bytes already sent>") from None
    if offset != upload.received or upload.busy:
        raise Conflict(f"the server holds {upload.received} bytes: go on from there")
    upload.busy = True
    try:
        left = upload.size - upload.received
        with upload.path.open("ab") as f:
            while chunk := await request.content.read(CHUNK):
                if len(chunk) > left:
                    raise PayloadTooLarge("more bytes than the upload announced")
                await asyncio.to_thread(f.write, chunk)
                left -= len(chunk)
                upload.received += len(chunk)
    finally:
        # What arrived stays, even from a dropped connection: the client asks for the
        # offset and goes on from there.
        upload.busy = False
        upload.touched = time.monotonic()
    if upload.received < upload.size:
        return web.json_response({"offset": upload.received}, headers={"Cache-Control": "no-store"})
    del _uploads(request)[upload_id]
    outcome = await _imaging(request).ingest(
        room, p, upload.path, keep_identity=upload.keep_identity, blur_faces=upload.blur_faces
    )
    status = 200 if outcome.ok else 422
    return web.json_response(
        outcome.to_wire(), status=status, headers={"Cache-Control": "no-store"}
    )


async def known_file(request: web.Request) -> web.StreamResponse:
    """Whether the room already holds the file with this SHA-256 (a resumed upload skips it)."""
    room, _ = await participant_of(request, Action.VIEW)
    index: RoomIndex = await _imaging(request).index(room)
    sop = index.by_source.get(request.match_info["sha256"].lower())
    if sop is None:
        raise NotFound("not uploaded yet")
    outcome = IngestOutcome(True, duplicate=True, instance=index.instances[sop])
    return web.json_response(outcome.to_wire(), headers={"Cache-Control": "no-store"})


async def store_instances(request: web.Request) -> web.StreamResponse:
    """STOW-RS: ``multipart/related; type="application/dicom"``, each part one instance."""
    room, p = await participant_of(request, Action.SHARE_IMAGES)
    imaging = _imaging(request)
    keep = _keep_identity(request, p)
    if not request.content_type.startswith("multipart/related"):
        raise web.HTTPUnsupportedMediaType(
            text='{"error":{"code":"unsupported_media_type","message":"send multipart/related; '
            'type=\\"application/dicom\\"","details":[]}}',
            content_type="application/json",
        )
    # POST .../studies/{study} is taken like POST .../studies: de-identification remaps the
    # study UID, so the path (the original UID) cannot be compared with what is stored.
    limits = imaging.limits
    budget = [limits.max_request_bytes]
    outcomes: list[IngestOutcome] = []
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            await part.release()  # a nested multipart: not an instance
            outcomes.append(IngestOutcome(False, code="unsupported", reason="nested multipart"))
            continue
        ctype = part.headers.get("Content-Type", "application/dicom")
        if not ctype.startswith("application/dicom"):
            await part.release()
            outcomes.append(
                IngestOutcome(False, code="unsupported", reason="part is not application/dicom")
            )
            continue
        try:
            path = await _to_temp(imaging, part.read_chunk, limits.max_file_bytes, budget)
        except PayloadTooLarge as exc:
            outcomes.append(IngestOutcome(False, code="too_large", reason=exc.message))
            await part.release()
            continue
        outcomes.append(await imaging.ingest(room, p, path, keep_identity=keep))
    return _stow_answer(room.id, outcomes)


#: PS3.4 status codes a STOW-RS Failure Reason carries (C000: cannot understand).
_FAILURE_REASONS = {
    "too_large": 0xA700,  # out of resources
    "room_full": 0xA700,
    "too_costly": 0xA700,
    "transfer_syntax": 0xC122,  # transfer syntax not supported
}


def _stow_answer(room_id: str, outcomes: list[IngestOutcome]) -> web.Response:
    ok = [o for o in outcomes if o.ok and o.instance is not None]
    failed = [o for o in outcomes if not o.ok]
    body: dict[str, Any] = {}
    if ok:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [o.instance.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [o.instance.sop_uid]},
                    "00081190": {
                        "vr": "UR",
                        "Value": [
                            f"/dicomweb/rooms/{room_id}/studies/{o.instance.study_uid}"
                            f"/series/{o.instance.series_uid}/instances/{o.instance.sop_uid}"
                        ],
                    },
                }
                for o in ok
                if o.instance is not None
            ],
        }
    if failed:
        # Every key must be a tag: a DICOM JSON reader (pydicom's, so dicomweb-client's)
        # refuses anything else. The reason goes in Error Comment (LO, 64 characters).
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081197": {"vr": "US", "Value": [_FAILURE_REASONS.get(o.code, 0xC000)]},
                    "00000902": {"vr": "LO", "Value": [f"{o.code}: {o.reason}"[:64]]},
                }
                for o in failed
            ],
        }
    status = 200 if not failed else (202 if ok else 409)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=DICOM_JSON,
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    P = PREFIX
    S = P + "/studies/{study}"
    SE = S + "/series/{series}"
    I = SE + "/instances/{sop}"  # noqa: E741
    r.add_get(P + "/studies", search_studies)
    r.add_post(P + "/studies", store_instances)
    r.add_post(S, store_instances)
    r.add_get(P + "/series", search_series)
    r.add_get(P + "/instances", search_instances)
    r.add_get(S + "/series", search_series)
    r.add_get(S + "/instances", search_instances)
    r.add_get(SE + "/instances", search_instances)
    r.add_get(S + "/metadata", study_metadata)
    r.add_get(SE + "/metadata", series_metadata)
    r.add_get(SE, retrieve_series)
    r.add_get(SE + "/thumbnail", series_thumbnail)
    r.add_get(I, retrieve_instance)
    r.add_get(I + "/metadata", instance_metadata)
    r.add_get(I + "/rendered", rendered_instance)
    r.add_get(I + "/thumbnail", instance_thumbnail)
    r.add_get(I + "/frames/{frames}", retrieve_frames)
    r.add_get(I + "/bulkdata/{tag}", retrieve_bulkdata)
    r.add_get(I + "/frames/{frames}/rendered", rendered_frame)
    r.add_post("/api/rooms/{room_id}/imaging/files", upload_file)
    r.add_get("/api/rooms/{room_id}/imaging/files/{sha256}", known_file)
    r.add_post("/api/rooms/{room_id}/imaging/instances/{sop}/mask", mask_instance)
    r.add_post("/api/rooms/{room_id}/imaging/uploads", start_upload)
    r.add_get("/api/rooms/{room_id}/imaging/uploads/{upload_id}", upload_offset)
    r.add_patch("/api/rooms/{room_id}/imaging/uploads/{upload_id}", upload_chunk)
    app[_UPLOADS] = {}
