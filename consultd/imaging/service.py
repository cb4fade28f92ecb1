"""``ImagingService``: what the HTTP routes and socket events call for a room's images.

Flow of an uploaded file (docs/architecture.md, "a rendered slice"):

1. The route streams the body to a temp file under caps (``ImagingLimits``).
2. ``ingest`` hashes it; the same file uploaded to the room before is answered from the
   index. Otherwise a worker process (``sandbox.WorkerPool``) inspects, de-identifies and
   re-serialises it (``ingest.ingest_file``; photos: ``photos.ingest_photo`` then
   ``capture.photo_to_dicom``), and the result is moved into the blob store.
3. The index row and an audit event commit together; then the room hears ``imaging``
   (``instance_added``) and every viewer can ask for the new image.

Frames are decoded in the worker pool (never on the event loop), kept in a byte-budgeted
LRU, rendered with integer LUTs and OpenCV on a thread (cv2 releases the GIL), and the
encoded images are kept in a second LRU: a room looking at the same slice costs one render.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from pydicom import Dataset
from sqlalchemy.ext.asyncio import AsyncConnection

from annotations.measure import IMAGER_PIXEL_SPACING, PIXEL_SPACING, Calibration
from consultd.audit.log import AuditEvent
from consultd.errors import Forbidden, NotFound, ValidationFailed
from consultd.ids import now
from consultd.imaging import capture, transcode
from consultd.imaging.blobs import BlobStore, sha256_file
from consultd.imaging.index import Instance, RoomIndex, qido_attributes
from consultd.imaging.ingest import Ingested, IngestPolicy, Refused, ingest_file
from consultd.imaging.limits import ImagingLimits
from consultd.imaging.pixels import DecodedFrame, PixelDataError, read_frame, read_header
from consultd.imaging.render import RenderParams, render, render_pixels
from consultd.imaging.sandbox import PoolError, WorkerLimitExceeded, WorkerPool
from consultd.rooms.notifier import Notifier
from consultd.rooms.policy import Action, authorize
from consultd.rooms.room import Participant, Role, Room
from consultd.store.tables import imaging_instances
from consultd.store.unit import Insert, Store

log = logging.getLogger(__name__)

COMPONENT = "imaging"
PIXEL_DATA = "7FE00010"
#: Decoded frames kept in memory (a 512 x 512 CT slice is 0.5 MiB).
FRAME_CACHE_BYTES = 512 << 20
#: Rendered images kept in memory (a 512 x 512 JPEG at q90 is ~40 KiB).
RENDER_CACHE_BYTES = 64 << 20
_LOAD = sa.select(imaging_instances).where(imaging_instances.c.room_id == sa.bindparam("room_id"))


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """One uploaded file's result, as the client is told."""

    ok: bool
    duplicate: bool = False
    instance: Instance | None = None
    code: str = ""
    reason: str = ""
    warnings: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        if not self.ok:
            return {"ok": False, "code": self.code, "reason": self.reason}
        assert self.instance is not None
        return {
            "ok": True,
            "duplicate": self.duplicate,
            "warnings": list(self.warnings),
            **instance_summary(self.instance),
        }


def instance_summary(inst: Instance) -> dict[str, Any]:
    return {
        "study_uid": inst.study_uid,
        "series_uid": inst.series_uid,
        "sop_uid": inst.sop_uid,
        "frames": inst.frames,
        "instance_number": inst.instance_number,
        "modality": inst.pixel.get("modality"),
        "burned_in": bool(inst.flags.get("burned_in")),
        #: Where text was found in the first frame's pixels (x, y, w, h): names, IDs, dates
        #: burned into ultrasound or secondary captures. Shown to the host as a warning.
        "text_regions": inst.flags.get("text_regions", []),
    }


@dataclass(frozen=True, slots=True)
class OverlaySource:
    """What ``annotations.render.render_png`` needs to draw on a stored image."""

    width: int
    height: int
    spacing: Calibration | None
    pixels: Any
    slope: float
    intercept: float
    modality: str | None
    background: Any


class _LRU:
    """Byte-budgeted least-recently-used map."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        if size > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= old[1]
        self._items[key] = (value, size)
        self.used += size
        while self.used > self.budget:
            _, (_, dropped) = self._items.popitem(last=False)
            self.used -= dropped


class RoomImaging:
    """The imaging a room owns: its index, and what its presenter shows (follow-me)."""

    def __init__(self, notifier: Notifier, room_id: str) -> None:
        self.notifier = notifier
        self.room_id = room_id
        self.index = RoomIndex()
        self.loaded = False
        self.loading: asyncio.Lock = asyncio.Lock()
        self.presenter: str | None = None
        self.view: dict[str, Any] | None = None
        self.opened: set[tuple[str, str]] = set()

    async def close(self) -> None:
        self.index = RoomIndex()

    def participant_joined(self, participant_id: str) -> None:
        if self.presenter is not None and self.presenter != participant_id:
            data = {"presenter": self.presenter, "view": self.view}
            self.notifier.send(self.room_id, participant_id, "viewer", data)

    async def participant_left(self, participant_id: str) -> None:
        if self.presenter == participant_id:
            self.presenter, self.view = None, None
            data = {"presenter": None, "view": None}
            self.notifier.broadcast(self.room_id, "viewer", data)


class ImagingService:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        data_dir: Path,
        secret_key: bytes,
        *,
        limits: ImagingLimits | None = None,
        workers: int = 2,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.limits = limits or ImagingLimits()
        self.blobs = BlobStore(data_dir / "imaging")
        self._key = secret_key
        self.pool = WorkerPool(workers, self.limits)
        self._frames = _LRU(FRAME_CACHE_BYTES)
        self._rendered = _LRU(RENDER_CACHE_BYTES)
        self._decoding: dict[tuple[str, int], asyncio.Future[DecodedFrame]] = {}
        # cv2's LUT, resize and imencode release the GIL: renders run beside the loop.
        self._render_threads = ThreadPoolExecutor(2, thread_name_prefix="render")
        self._transcoding = asyncio.Lock()
        self._background: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.pool.close()
        self._render_threads.shutdown(wait=False, cancel_futures=True)

    # -- index -----------------------------------------------------------------------------

    def component(self, room: Room) -> RoomImaging:
        comp = room.components.get(COMPONENT)
        if comp is None:
            comp = room.components[COMPONENT] = RoomImaging(self.notifier, room.id)
        assert isinstance(comp, RoomImaging)
        return comp

    async def index(self, room: Room) -> RoomIndex:
        comp = self.component(room)
        if comp.loaded:
            return comp.index
        async with comp.loading:
            if not comp.loaded:
                async with self.store.db.read() as conn:
                    rows = (await conn.execute(_LOAD, {"room_id": room.id})).mappings().all()
                for row in rows:
                    comp.index.add(_instance_from_row(row))
                comp.loaded = True
        return comp.index

    def room_secret(self, room_id: str) -> bytes:
        """The room's de-identification key: UIDs remap the same way for every upload into
        the room (series stay linked, a re-upload deduplicates), differently in another."""
        return hmac.new(self._key, b"deid:" + room_id.encode(), hashlib.sha256).digest()

    # -- ingest ----------------------------------------------------------------------------

    async def ingest(
        self,
        room: Room,
        p: Participant,
        upload: Path,
        *,
        keep_identity: bool = False,
        blur_faces: bool = True,
    ) -> IngestOutcome:
        """Ingest one uploaded file (module docstring); ``upload`` is removed afterwards."""
        try:
            return await self._ingest(room, p, upload, keep_identity, blur_faces)
        finally:
            await asyncio.to_thread(upload.unlink, missing_ok=True)

    async def _ingest(
        self, room: Room, p: Participant, upload: Path, keep_identity: bool, blur_faces: bool
    ) -> IngestOutcome:
        index = await self.index(room)
        source = await asyncio.to_thread(sha256_file, upload)
        known = index.by_source.get(source)
        if known is not None:
            return IngestOutcome(True, duplicate=True, instance=index.instances[known])
        if index.total_bytes >= self.limits.max_room_bytes:
            return IngestOutcome(False, code="room_full", reason="the room's imaging is full")
        out = self.blobs.temp_path(".dcm")
        secret = self.room_secret(room.id)
        try:
            kind = await asyncio.to_thread(_sniff, upload)
            if kind == "dicom":
                policy = IngestPolicy(
                    secret=secret, keep_identity=keep_identity, limits=self.limits
                )
                result: Ingested | Refused = await self.pool.run(
                    ingest_file, str(upload), str(out), policy
                )
            elif kind == "photo":
                result = await self.pool.run(
                    capture.ingest_photo_file,
                    str(upload),
                    str(out),
                    secret,
                    p.id,
                    self.limits,
                    blur_faces,
                )
            else:
                return IngestOutcome(
                    False, code="unsupported", reason="not a DICOM file, JPEG, PNG or WebP image"
                )
        except WorkerLimitExceeded as exc:
            out.unlink(missing_ok=True)
            return IngestOutcome(False, code="too_costly", reason=_limit_reason(exc))
        except PoolError:
            out.unlink(missing_ok=True)
            log.exception("imaging worker failed")
            return IngestOutcome(False, code="worker_error", reason="the file could not be read")
        if isinstance(result, Refused):
            out.unlink(missing_ok=True)
            return IngestOutcome(False, code=result.code, reason=result.reason)
        stored = await asyncio.to_thread(self.blobs.put, out, result.sha256)
        text: list[tuple[int, int, int, int]] = []
        if result.burned_in and kind == "dicom":
            # The tags say text may be burned in (or cannot say, for US and secondary
            # captures): look at the pixels, so the host sees where.
            try:
                text = await self.pool.run(capture.text_regions, str(stored))
            except PoolError:
                text = []
        inst = self._instance(room, p, result, source, keep_identity, text)
        if inst.sop_uid in index.instances:
            # The same instance from another file (re-exported, re-compressed): keep the
            # first, and remember this file too.
            index.by_source.setdefault(source, inst.sop_uid)
            return IngestOutcome(True, duplicate=True, instance=index.instances[inst.sop_uid])
        await self.store.later(
            Insert(imaging_instances, _row(room.id, inst)),
            AuditEvent(
                room.id,
                p.id,
                "imaging.uploaded",
                inst.sop_uid,
                room.id,
                {"series": inst.series_uid, "identity_kept": keep_identity},
            ),
        )
        if not index.add(inst):
            return IngestOutcome(True, duplicate=True, instance=index.instances[inst.sop_uid])
        series = index.series[inst.series_uid]
        self.notifier.broadcast(
            room.id,
            "imaging",
            {
                "kind": "instance_added",
                "instances": len(series.instances),
                **instance_summary(inst),
            },
        )
        if transcode.worth_it(
            inst.transfer_syntax,
            result.samples_per_pixel,
            result.rows * result.columns * result.frames * ((result.bits_allocated + 7) // 8),
        ):
            task = asyncio.ensure_future(self._serving_copy(room.id, inst))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        warnings = tuple(result.warnings) + (("text_in_pixels",) if text else ())
        return IngestOutcome(True, instance=inst, warnings=warnings)

    def _instance(
        self,
        room: Room,
        p: Participant,
        r: Ingested,
        source: str,
        keep_identity: bool,
        text: list[tuple[int, int, int, int]],
    ) -> Instance:
        # Path-absolute: right whatever host and port the client reached us on. All the
        # frames (dicomweb.retrieve_bulkdata), not frame 1: multi-frame instances too.
        pixel_uri = (
            f"/dicomweb/rooms/{room.id}/studies/{r.study_uid}/series/{r.series_uid}"
            f"/instances/{r.sop_instance_uid}/bulkdata/7FE00010"
        )
        dicom = _with_bulk_uris(r.dicom_json, pixel_uri)
        pixel = {
            "rows": r.rows,
            "columns": r.columns,
            "frames": r.frames,
            "modality": r.modality,
            "photometric": r.photometric,
            "pixel_spacing": r.pixel_spacing,
            "imager_pixel_spacing": r.imager_pixel_spacing,
            "rescale_slope": r.rescale_slope,
            "rescale_intercept": r.rescale_intercept,
            "window_center": r.window_center,
            "window_width": r.window_width,
        }
        position = r.image_position or (0.0, 0.0, 0.0)
        return Instance(
            sop_uid=r.sop_instance_uid,
            study_uid=r.study_uid,
            series_uid=r.series_uid,
            sop_class_uid=r.sop_class_uid,
            transfer_syntax=r.transfer_syntax,
            blob=r.sha256,
            size=r.bytes,
            frames=r.frames,
            instance_number=r.instance_number,
            order=_order(r.instance_number, position, r.sop_instance_uid),
            pixel=pixel,
            dicom_json=json.dumps(dicom, separators=(",", ":")).encode(),
            qido=qido_attributes(dicom),
            flags={
                "burned_in": r.burned_in,
                "identity_kept": keep_identity,
                "text_regions": [list(b) for b in text],
            },
            source_sha256=source,
            uploaded_by=p.id,
            uploaded_at=now(),
        )

    async def mask(
        self, room: Room, p: Participant, sop_uid: str, regions: list[tuple[int, int, int, int]]
    ) -> IngestOutcome:
        """The host blacks out ``regions`` (burned-in text) in every frame of an image. The
        image keeps its UIDs (annotations stay anchored); the unmasked file is deleted
        unless another room holds the same one."""
        if p.role is not Role.HOST:  # the route has authorised p in the room
            raise Forbidden("only the host may mask an image")
        index = await self.index(room)
        old = index.instances.get(sop_uid)
        if old is None:
            raise NotFound("no such image in this room")
        for x, y, w, h in regions:
            rows, cols = int(old.pixel.get("rows") or 0), int(old.pixel.get("columns") or 0)
            if not (0 <= x < cols and 0 <= y < rows and 0 < w <= cols - x and 0 < h <= rows - y):
                raise ValidationFailed("each region must lie inside the image")
        out = self.blobs.temp_path(".dcm")
        try:
            result = await self.pool.run(
                capture.mask_regions, str(self.path_of(old)), str(out), regions, self.limits
            )
        except WorkerLimitExceeded as exc:
            await asyncio.to_thread(out.unlink, missing_ok=True)
            return IngestOutcome(False, code="too_costly", reason=_limit_reason(exc))
        if isinstance(result, Refused):
            await asyncio.to_thread(out.unlink, missing_ok=True)
            return IngestOutcome(False, code=result.code, reason=result.reason)
        await asyncio.to_thread(self.blobs.put, out, result.sha256)
        keep = bool(old.flags.get("identity_kept"))
        inst = self._instance(room, p, result, old.source_sha256, keep, [])
        inst.uploaded_by, inst.uploaded_at = old.uploaded_by, old.uploaded_at
        inst.flags["masked_regions"] = [list(r) for r in regions]
        await self.store.later(
            _replace_job(room.id, inst),
            AuditEvent(
                room.id, p.id, "imaging.masked", inst.sop_uid, room.id, {"regions": len(regions)}
            ),
        )
        index.replace(inst)
        await self._delete_if_unused(old)
        self.notifier.broadcast(
            room.id, "imaging", {"kind": "instance_replaced", **instance_summary(inst)}
        )
        return IngestOutcome(True, instance=inst)

    async def _delete_if_unused(self, old: Instance) -> None:
        async with self.store.db.read() as conn:
            used = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(imaging_instances)
                    .where(imaging_instances.c.blob == old.blob)
                )
            ).scalar_one()
        if used:
            return
        for digest in (old.blob, old.pixel.get("serving_blob")):
            if digest:
                await asyncio.to_thread(self.blobs.path(digest).unlink, missing_ok=True)

    # -- pixels ----------------------------------------------------------------------------

    def path_of(self, inst: Instance) -> Path:
        """The stored file, as uploaded (after de-identification): retrieval and export."""
        return self.blobs.path(inst.blob)

    def frames_path(self, inst: Instance) -> Path:
        """Where frames are decoded from: the serving copy when there is one."""
        serving = inst.pixel.get("serving_blob")
        return self.blobs.path(serving) if serving else self.blobs.path(inst.blob)

    async def _serving_copy(self, room_id: str, inst: Instance) -> None:
        """Decode a slow-codec instance once into an uncompressed copy (transcode.py)."""
        async with self._transcoding:  # one at a time: the other worker keeps ingesting
            out = self.blobs.temp_path(".dcm")
            try:
                digest, _ = await self.pool.run(
                    transcode.to_native, str(self.path_of(inst)), str(out)
                )
            except PoolError:
                log.warning("no serving copy for an instance (%s)", inst.transfer_syntax)
                await asyncio.to_thread(out.unlink, missing_ok=True)
                return
            await asyncio.to_thread(self.blobs.put, out, digest)
            inst.pixel["serving_blob"] = digest
            pixel = {**inst.pixel, "order": list(inst.order)}
            self.store.later(_set_pixel_job(room_id, inst.sop_uid, pixel))

    async def frame(self, inst: Instance, number: int) -> DecodedFrame:
        """Frame ``number`` (1-based, as in DICOMweb) decoded, from the cache or a worker."""
        if not 1 <= number <= inst.frames:
            raise NotFound(f"frame {number} does not exist (1..{inst.frames})")
        key = (inst.blob, number)
        cached: DecodedFrame | None = self._frames.get(key)
        if cached is not None:
            return cached
        task = self._decoding.get(key)
        if task is None:
            # One decode per frame however many viewers ask for it at once.
            task = self._decoding[key] = asyncio.ensure_future(self._decode(inst, number))
            task.add_done_callback(lambda _: self._decoding.pop(key, None))
        return await asyncio.shield(task)

    async def _decode(self, inst: Instance, number: int) -> DecodedFrame:
        try:
            decoded: DecodedFrame = await self.pool.run(
                read_frame, str(self.frames_path(inst)), number - 1
            )
        except WorkerLimitExceeded as exc:
            raise ValidationFailed(_limit_reason(exc)) from None
        self._frames.put((inst.blob, number), decoded, decoded.pixels.nbytes)
        return decoded

    async def rendered(self, inst: Instance, number: int, params: RenderParams) -> bytes:
        key = (inst.blob, number, params)
        cached: bytes | None = self._rendered.get(key)
        if cached is not None:
            return cached
        decoded = await self.frame(inst, number)
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(
            self._render_threads, render, decoded.pixels, decoded.info, params
        )
        self._rendered.put(key, image, len(image))
        return image

    async def overlay_source(
        self, room: Room, doc_id: str, background: bool
    ) -> OverlaySource | None:
        """The image an annotation document (``<sop uid>:<frame>``) is drawn on, if the room
        holds it: its size, calibration, stored values (ROI statistics) and, when asked,
        the image rendered with its own window to draw over."""
        sop, _, frame_text = doc_id.partition(":")
        inst = (await self.index(room)).instances.get(sop)
        if inst is None or not frame_text.isdigit():
            return None
        decoded = await self.frame(inst, int(frame_text))
        info = decoded.info
        spacing: Calibration | None = None
        for key, source in (
            ("pixel_spacing", PIXEL_SPACING),
            ("imager_pixel_spacing", IMAGER_PIXEL_SPACING),
        ):
            value = inst.pixel.get(key)
            if value and len(value) == 2:
                spacing = Calibration(float(value[0]), float(value[1]), source)
                break
        grey = info.samples_per_pixel == 1
        shown = None
        if background:
            loop = asyncio.get_running_loop()
            shown = await loop.run_in_executor(
                self._render_threads, render_pixels, decoded.pixels, info, RenderParams()
            )
            if shown.ndim == 2:
                shown = np.repeat(shown[:, :, None], 3, axis=2)
        return OverlaySource(
            width=info.columns,
            height=info.rows,
            spacing=spacing,
            pixels=decoded.pixels if grey else None,
            slope=info.rescale_slope,
            intercept=info.rescale_intercept,
            modality=inst.pixel.get("modality"),
            background=shown,
        )

    async def source_header(self, room: Room, doc_id: str) -> Dataset | None:
        """The stored attributes, without pixel data, of the image an annotation document
        (``<sop uid>:<frame>``) is drawn on, if the room holds it (read in a worker, as
        every parse of an uploaded file is)."""
        inst = (await self.index(room)).instances.get(doc_id.partition(":")[0])
        if inst is None:
            return None
        try:
            header: Dataset = await self.pool.run(read_header, str(self.path_of(inst)))
        except (PoolError, PixelDataError):
            raise ValidationFailed("the image's header could not be read") from None
        return header

    # -- follow the presenter ------------------------------------------------------------------

    async def present(
        self, p: Participant, room: Room, follow: bool, view: dict[str, Any] | None
    ) -> None:
        """``p`` presents ``view`` (everyone else's viewer follows) or stops presenting.
        One presenter at a time: the latest to start takes over."""
        authorize(p, room, Action.PRESENT)
        comp = self.component(room)
        if not follow:
            if comp.presenter != p.id:
                return
            comp.presenter, comp.view = None, None
        else:
            if view is None:
                raise ValidationFailed("presenting needs a view")
            if view["sop_uid"] not in (await self.index(room)).instances:
                raise NotFound("no such image in this room")
            comp.presenter, comp.view = p.id, view
        self.notifier.broadcast(
            room.id, "viewer", {"presenter": comp.presenter, "view": comp.view}, exclude=p.id
        )

    # -- audit of viewing --------------------------------------------------------------------

    def opened(self, room: Room, p: Participant, series_uid: str) -> None:
        """Record once per participant and series (per process) that they opened it."""
        comp = self.component(room)
        key = (p.id, series_uid)
        if key in comp.opened:
            return
        comp.opened.add(key)
        self.store.later(AuditEvent(room.id, p.id, "imaging.viewed", series_uid, room.id, {}))


def _with_bulk_uris(model: dict[str, Any], pixel_uri: str) -> dict[str, Any]:
    """Pixel Data's placeholder URI made real; other large binary values (``bulkdata:``
    placeholders: overlays, ICC profiles) are left out, as nothing serves them."""
    out: dict[str, Any] = {}
    for tag, attr in model.items():
        if not isinstance(attr, dict):
            continue
        uri = attr.get("BulkDataURI")
        if uri is not None:
            if tag == PIXEL_DATA:
                out[tag] = {"vr": attr.get("vr", "OW"), "BulkDataURI": pixel_uri}
            continue
        value = attr.get("Value")
        if attr.get("vr") == "SQ" and isinstance(value, list):
            attr = {**attr, "Value": [_with_bulk_uris(item, pixel_uri) for item in value]}
        out[tag] = attr
    return out


def _sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:2] == b"\x02\x00" and head[4:6] in (b"UL", b"OB", b"UI"):
        # The file meta group with no preamble and no DICM prefix: what pydicom writes for a
        # dataset built in memory, so what dicomweb-client's STOW sends. Put them in front.
        fixed = path.with_suffix(".part10")
        with path.open("rb") as src, fixed.open("wb") as dst:
            dst.write(bytes(128) + b"DICM")
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(fixed, path)
        return "dicom"
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n":
        return "photo"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "photo"
    return "other"


def _limit_reason(exc: WorkerLimitExceeded) -> str:
    return {
        "memory": "reading it needs more memory than a file may use",
        "time": "reading it takes longer than a file may take",
    }.get(exc.kind, "reading it failed")


def _order(number: int | None, position: Any, uid: str) -> tuple[float, float, str]:
    try:
        along = float(position[2])
    except (TypeError, ValueError, IndexError):
        along = 0.0
    # Unnumbered instances sort last (a large number, not inf: the row is stored as JSON).
    return (float(number) if number is not None else 1e12, along, uid)


def _set_pixel_job(
    room_id: str, sop_uid: str, pixel: dict[str, Any]
) -> Callable[[AsyncConnection], Awaitable[None]]:
    async def job(conn: AsyncConnection) -> None:
        await conn.execute(
            imaging_instances.update()
            .where(imaging_instances.c.room_id == room_id)
            .where(imaging_instances.c.sop_instance_uid == sop_uid)
            .values(pixel=pixel)
        )

    return job


def _replace_job(room_id: str, inst: Instance) -> Callable[[AsyncConnection], Awaitable[None]]:
    row = _row(room_id, inst)

    async def job(conn: AsyncConnection) -> None:
        await conn.execute(
            imaging_instances.update()
            .where(imaging_instances.c.room_id == room_id)
            .where(imaging_instances.c.sop_instance_uid == inst.sop_uid)
            .values({k: v for k, v in row.items() if k not in ("room_id", "sop_instance_uid")})
        )

    return job


def _row(room_id: str, inst: Instance) -> dict[str, Any]:
    return {
        "room_id": room_id,
        "sop_instance_uid": inst.sop_uid,
        "study_uid": inst.study_uid,
        "series_uid": inst.series_uid,
        "sop_class_uid": inst.sop_class_uid,
        "transfer_syntax": inst.transfer_syntax,
        "blob": inst.blob,
        "bytes": inst.size,
        "frames": inst.frames,
        "instance_number": inst.instance_number,
        "pixel": {**inst.pixel, "order": list(inst.order)},
        "dicom_json": inst.dicom_json,
        "flags": inst.flags,
        "source_sha256": inst.source_sha256,
        "uploaded_by": inst.uploaded_by,
        "uploaded_at": inst.uploaded_at,
    }


def _instance_from_row(row: Any) -> Instance:
    pixel = dict(row["pixel"])
    order = pixel.pop("order", None) or [1e12, 0.0, row["sop_instance_uid"]]
    dicom_json = bytes(row["dicom_json"])
    return Instance(
        sop_uid=row["sop_instance_uid"],
        study_uid=row["study_uid"],
        series_uid=row["series_uid"],
        sop_class_uid=row["sop_class_uid"],
        transfer_syntax=row["transfer_syntax"],
        blob=row["blob"],
        size=row["bytes"],
        frames=row["frames"],
        instance_number=row["instance_number"],
        order=(float(order[0]), float(order[1]), str(order[2])),
        pixel=pixel,
        dicom_json=dicom_json,
        qido=qido_attributes(json.loads(dicom_json)),
        flags=dict(row["flags"]),
        source_sha256=row["source_sha256"],
        uploaded_by=row["uploaded_by"],
        uploaded_at=row["uploaded_at"],
    )
