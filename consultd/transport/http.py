"""aiohttp routes -> service calls, and the one HTTP error middleware."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from annotations.measure import Calibration, ImageInfo
from annotations.render import MAX_SIDE, OverlayTooComplex, render_png
from annotations.sr import NothingToReport, measurement_report, report_bytes
from consultd.audit.log import AuditEvent
from consultd.auth.accounts import User
from consultd.errors import (
    BadRequest,
    ConsultdError,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from consultd.rooms.room import Role, Room
from consultd.services import SERVICES, Services
from consultd.transport import schemas as s
from consultd.transport.openapi import Api

log = logging.getLogger(__name__)

SESSION_COOKIE = "consultd_session"


def participant_cookie(room_id: str) -> str:
    return f"consultd_p_{room_id}"


def _error_response(
    status: int, code: str, message: str, details: list[Any] | None = None
) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message, "details": details or []}})
    return web.Response(status=status, text=body, content_type="application/json")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ConsultdError as exc:
        resp = _error_response(exc.http_status, exc.code, exc.message, exc.details)
        if isinstance(exc, RateLimited):
            resp.headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return resp
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status, "http_error"
        )
        resp = _error_response(exc.status, code, exc.reason)
        if exc.status == 405:
            resp.headers["Allow"] = exc.headers.get("Allow", "")
        return resp
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(500, "internal", "internal error")


def csrf_middleware(public_origin: str) -> Any:
    """Refuse state-changing requests whose ``Origin`` is not ours (cookies are SameSite=Lax
    and bodies must be JSON, which a cross-site form cannot send)."""

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin and origin != "null":
                ours = public_origin or f"{request.scheme}://{request.host}"
                if urlsplit(origin)._replace(path="").geturl() != ours:
                    raise Forbidden("cross-site request refused")
            elif origin == "null":
                raise Forbidden("cross-site request refused")
        return await handler(request)

    return check


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


# -- identity -----------------------------------------------------------------------------


def _svc(request: web.Request) -> Services:
    return request.app[SERVICES]


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


async def current_user(request: web.Request) -> User:
    token = request.cookies.get(SESSION_COOKIE)
    user = await _svc(request).accounts.user_for_session(token) if token else None
    if user is None:
        raise Unauthorized("sign in first")
    return user


async def optional_user(request: web.Request) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    return await _svc(request).accounts.user_for_session(token) if token else None


async def room_of_member(request: web.Request) -> Room:
    """The room in the path, for its host, an invited physician or a participant."""
    room, _ = await member_of(request)
    return room


async def member_of(request: web.Request) -> tuple[Room, str]:
    """``room_of_member``, and who is asking (the account, else the participant): the
    actor of an audit event."""
    room_id = request.match_info["room_id"]
    svc = _svc(request)
    user = await optional_user(request)
    if user is not None:
        try:
            return await svc.rooms.room_for_user(user, room_id), user.id
        except Forbidden:
            pass
    token = bearer_or_cookie(request, room_id)
    if token is None:
        raise Unauthorized("sign in or join the room first")
    room, p = await svc.rooms.participant_for_token(room_id, token)
    return room, p.id


def bearer_or_cookie(request: web.Request, room_id: str) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(participant_cookie(room_id))


def _set_cookie(
    resp: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int
) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=_svc(request).settings.secure_cookies,
        path="/",
    )


def _json(model: type[BaseModel], data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=model.model_validate(data).model_dump_json(),
        content_type="application/json",
    )


# -- routes -------------------------------------------------------------------------------


def build_api(max_body_bytes: int) -> Api:
    api = Api(max_body_bytes=max_body_bytes)
    R = "/api/rooms/{room_id}"

    @api.route(
        "POST",
        "/api/accounts",
        summary="Register a physician",
        body=s.RegisterBody,
        response=s.UserOut,
        status=201,
        errors=(409,),
        tag="accounts",
    )
    async def register(request: web.Request, body: s.RegisterBody) -> web.StreamResponse:
        svc = _svc(request)
        user, token = await svc.accounts.register(
            name=body.name,
            email=str(body.email),
            password=body.password,
            specialty=body.specialty,
            country=body.country,
            languages=body.languages,
            ip=client_ip(request),
        )
        resp = _json(s.UserOut, user.to_wire(), 201)
        _set_cookie(resp, request, SESSION_COOKIE, token, svc.settings.session_ttl_s)
        return resp

    @api.route(
        "POST",
        "/api/sessions",
        summary="Sign in",
        body=s.LoginBody,
        response=s.UserOut,
        tag="accounts",
    )
    async def login(request: web.Request, body: s.LoginBody) -> web.StreamResponse:
        svc = _svc(request)
        user, token = await svc.accounts.login(
            email=body.email, password=body.password, ip=client_ip(request)
        )
        resp = _json(s.UserOut, user.to_wire())
        _set_cookie(resp, request, SESSION_COOKIE, token, svc.settings.session_ttl_s)
        return resp

    @api.route("DELETE", "/api/sessions/current", summary="Sign out", status=204, tag="accounts")
    async def logout(request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await _svc(request).accounts.logout(token)
        resp = web.Response(status=204)
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    @api.route(
        "GET",
        "/api/me",
        summary="The signed-in physician",
        response=s.UserOut,
        security=("session",),
        tag="accounts",
    )
    async def me(request: web.Request) -> Any:
        return (await current_user(request)).to_wire()

    @api.route(
        "POST",
        "/api/rooms",
        summary="Create a consult room (you are its host)",
        body=s.CreateRoomBody,
        response=s.RoomOut,
        status=201,
        security=("session",),
        tag="rooms",
    )
    async def create_room(request: web.Request, body: s.CreateRoomBody) -> Any:
        user = await current_user(request)
        room = await _svc(request).rooms.create_room(
            user, title=body.title, summary=body.summary, lobby=body.lobby
        )
        return room.to_wire()

    @api.route(
        "GET",
        "/api/rooms",
        summary="Rooms you host or were invited to",
        response=s.RoomList,
        security=("session",),
        tag="rooms",
    )
    async def list_rooms(request: web.Request) -> Any:
        user = await current_user(request)
        return {"rooms": await _svc(request).rooms.rooms_of(user)}

    @api.route(
        "GET",
        R,
        summary="A room",
        response=s.RoomOut,
        security=("session", "participant"),
        tag="rooms",
    )
    async def get_room(request: web.Request) -> Any:
        return (await room_of_member(request)).to_wire()

    @api.route(
        "GET",
        R + "/annotations",
        summary="Export the room's annotations as JSON, per image (annotations/SCHEMA.md)",
        response=s.AnnotationExport,
        security=("session", "participant"),
        tag="annotations",
    )
    async def export_annotations(request: web.Request) -> Any:
        room = await room_of_member(request)
        return {"room_id": room.id, "docs": await _svc(request).annotations.export(room)}

    #: Renders at once: each holds up to ~0.5 GB at 8192 x 8192 and a few seconds of CPU.
    overlay_slots = asyncio.Semaphore(2)

    @api.route(
        "GET",
        R + "/annotations/{doc_id}/overlay.png",
        summary="One image's annotations drawn as a PNG overlay, "
        "?width=&height= in image pixels (annotations/render.py)",
        security=("session", "participant"),
        tag="annotations",
    )
    async def annotation_overlay(request: web.Request) -> web.StreamResponse:
        room = await room_of_member(request)
        doc_id = request.match_info["doc_id"]
        try:
            query = s.OverlayQuery.model_validate({**request.query, "doc_id": doc_id})
            invalid = None
        except ValidationError as exc:
            invalid = BadRequest(
                f"width and height must be integers 1..{MAX_SIDE}, and the doc id an image key",
                details=[
                    {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors(include_url=False, include_input=False)
                ],
            )
            if any(e["loc"][:1] == ("doc_id",) for e in exc.errors()):
                raise invalid from None
        # An image without annotations is a 404, whatever size is asked for.
        notes = await _svc(request).annotations.image(room, doc_id)
        if not notes:
            raise NotFound("no annotations on this image")
        if invalid is not None:
            raise invalid
        image = await _svc(request).imaging.overlay_source(room, doc_id, query.background)
        if image is None and (query.width is None or query.height is None):
            raise BadRequest("width and height are needed for an image the room does not hold")
        async with overlay_slots:
            try:
                if image is not None:
                    png = await asyncio.to_thread(
                        render_png, list(notes.values()), image.width, image.height,
                        spacing=image.spacing, pixels=image.pixels, slope=image.slope,
                        intercept=image.intercept, modality=image.modality,
                        background=image.background,
                    )  # fmt: skip
                else:
                    assert query.width is not None and query.height is not None
                    png = await asyncio.to_thread(
                        render_png, list(notes.values()), query.width, query.height
                    )
            except OverlayTooComplex as exc:
                raise ValidationFailed(str(exc)) from None
        return web.Response(
            body=png, content_type="image/png", headers={"Cache-Control": "private, no-store"}
        )

    @api.route(
        "GET",
        R + "/annotations/{doc_id}/report.dcm",
        summary="One image's measurements as a DICOM Structured Report "
        "(TID 1500 Measurement Report, Comprehensive SR; annotations/sr.py)",
        errors=(422,),
        security=("session", "participant"),
        tag="annotations",
    )
    async def annotation_report(request: web.Request) -> web.StreamResponse:
        room, actor = await member_of(request)
        doc_id = request.match_info["doc_id"]
        try:
            s.OverlayQuery.model_validate({"doc_id": doc_id})
        except ValidationError:
            raise BadRequest("the doc id must be an image key (<sop uid>:<frame>)") from None
        svc = _svc(request)
        notes = await svc.annotations.image(room, doc_id)
        if not notes:
            raise NotFound("no annotations on this image")
        image = await svc.imaging.overlay_source(room, doc_id, False)
        header = await svc.imaging.source_header(room, doc_id)
        if image is None or header is None:
            raise NotFound("this room does not hold the annotated image")
        info = ImageInfo(
            image.spacing or Calibration(), image.pixels, image.slope, image.intercept,
            image.modality,
        )  # fmt: skip
        async with overlay_slots:
            try:
                data = await asyncio.to_thread(
                    _report, list(notes.values()), header, info, room.id, doc_id
                )
            except NothingToReport as exc:
                raise ValidationFailed(str(exc)) from None
        svc.store.later(
            AuditEvent(room.id, actor, "annotations.exported", doc_id, room.id, {"as": "sr"})
        )
        return web.Response(
            body=data,
            content_type="application/dicom",
            headers={
                "Cache-Control": "private, no-store",
                "Content-Disposition": 'attachment; filename="measurements.dcm"',
            },
        )

    @api.route(
        "PATCH",
        R,
        summary="Change a room's title, summary or lobby switch (host)",
        body=s.UpdateRoomBody,
        response=s.RoomOut,
        errors=(410,),
        security=("session",),
        tag="rooms",
    )
    async def update_room(request: web.Request, body: s.UpdateRoomBody) -> Any:
        user = await current_user(request)
        room = await _svc(request).rooms.update_room(
            user,
            request.match_info["room_id"],
            title=body.title,
            summary=body.summary,
            lobby=body.lobby,
        )
        return room.to_wire()

    @api.route(
        "POST",
        R + "/end",
        summary="End the room for everyone (host)",
        body=s.Empty,
        response=s.RoomOut,
        errors=(410,),
        security=("session",),
        tag="rooms",
    )
    async def end_room(request: web.Request, body: s.Empty) -> Any:
        user = await current_user(request)
        svc = _svc(request)
        room = await svc.rooms.room_for_user(user, request.match_info["room_id"], host=True)
        return (await svc.rooms.end(room, user.id)).to_wire()

    @api.route(
        "POST",
        R + "/codes",
        summary="Create a share code (host)",
        body=s.CreateCodeBody,
        response=s.ShareCodeOut,
        status=201,
        errors=(409, 410),
        security=("session",),
        tag="share codes",
    )
    async def create_code(request: web.Request, body: s.CreateCodeBody) -> Any:
        user = await current_user(request)
        return await _svc(request).rooms.create_code(
            user,
            request.match_info["room_id"],
            role=Role(body.role),
            expires_in_s=body.expires_in_s,
            max_uses=body.max_uses,
        )

    @api.route(
        "GET",
        R + "/codes",
        summary="List a room's share codes (host)",
        response=s.ShareCodeList,
        security=("session",),
        tag="share codes",
    )
    async def list_codes(request: web.Request) -> Any:
        user = await current_user(request)
        return {"codes": await _svc(request).rooms.list_codes(user, request.match_info["room_id"])}

    @api.route(
        "DELETE",
        R + "/codes/{code_id}",
        summary="Revoke a share code (host)",
        status=204,
        security=("session",),
        tag="share codes",
    )
    async def revoke_code(request: web.Request) -> None:
        user = await current_user(request)
        await _svc(request).rooms.revoke_code(
            user, request.match_info["room_id"], request.match_info["code_id"]
        )

    @api.route(
        "POST",
        R + "/invites",
        summary="Invite a registered physician (host)",
        body=s.InviteBody,
        response=s.InviteOut,
        status=201,
        errors=(410,),
        security=("session",),
        tag="rooms",
    )
    async def invite(request: web.Request, body: s.InviteBody) -> Any:
        user = await current_user(request)
        svc = _svc(request)
        await svc.rooms.invite(user, request.match_info["room_id"], body.email)
        invitee = await svc.accounts.user_by_email(body.email)
        return {"email": body.email.strip().lower(), "registered": invitee is not None}

    @api.route(
        "POST",
        R + "/redeem",
        summary="Join a room with a share code (no account needed)",
        body=s.RedeemBody,
        response=s.AdmissionOut,
        status=201,
        errors=(410, 423),
        tag="admission",
    )
    async def redeem(request: web.Request, body: s.RedeemBody) -> web.StreamResponse:
        svc = _svc(request)
        room_id = request.match_info["room_id"]
        adm = await svc.rooms.redeem(room_id, body.code, body.display_name, client_ip(request))
        resp = _json(s.AdmissionOut, adm.to_wire(), 201)
        _set_cookie(resp, request, participant_cookie(room_id), adm.token, 7 * 24 * 3600)
        return resp

    @api.route(
        "POST",
        R + "/join",
        summary="Join a room you host or were invited to",
        body=s.Empty,
        response=s.AdmissionOut,
        status=201,
        errors=(410,),
        security=("session",),
        tag="admission",
    )
    async def join(request: web.Request, body: s.Empty) -> web.StreamResponse:
        user = await current_user(request)
        svc = _svc(request)
        room_id = request.match_info["room_id"]
        adm = await svc.rooms.join_as_physician(user, room_id)
        resp = _json(s.AdmissionOut, adm.to_wire(), 201)
        _set_cookie(resp, request, participant_cookie(room_id), adm.token, 7 * 24 * 3600)
        return resp

    @api.route(
        "GET",
        R + "/audit",
        summary="The room's audit log (host)",
        response=s.AuditList,
        security=("session",),
        tag="rooms",
    )
    async def audit(request: web.Request) -> Any:
        user = await current_user(request)
        return {
            "events": await _svc(request).rooms.audit_events(user, request.match_info["room_id"])
        }

    @api.route("GET", "/healthz", summary="Liveness", response=s.Health, tag="operations")
    async def healthz(request: web.Request) -> Any:
        return {"status": "ok"}

    return api


async def metrics_handler(request: web.Request) -> web.Response:
    svc = _svc(request)
    svc.metrics.refresh(svc)
    return web.Response(
        body=generate_latest(svc.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def add_web_client(app: web.Application, dist: Path) -> None:
    """Serve the built browser client: ``/``, ``/r/<room-id>`` and ``/assets/…``."""

    async def index(request: web.Request) -> web.StreamResponse:
        page = dist / "index.html"
        if not page.is_file():
            return _error_response(
                503, "unavailable", "the web client is not built: run scripts/setup.sh"
            )
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    app.router.add_get("/r/{room_id}", index)
    assets = dist / "assets"
    if assets.is_dir():
        app.router.add_static("/assets/", assets, append_version=False)
    for extra in ("favicon.ico", "favicon.svg"):
        if (dist / extra).is_file():
            f = dist / extra

            async def fav(request: web.Request, f: Path = f) -> web.StreamResponse:
                return web.FileResponse(f)

            app.router.add_get("/" + extra, fav)


def _report(
    notes: list[dict[str, Any]], header: Any, image: ImageInfo, room_id: str, doc_id: str
) -> bytes:
    frame = int(doc_id.rpartition(":")[2])
    report = measurement_report(notes, header, image, room_id=room_id, doc_id=doc_id, frame=frame)
    return report_bytes(report)
