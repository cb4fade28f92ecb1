"""Pydantic models for every HTTP body and socket.io payload.

They validate requests and generate ``/api/openapi.json``; ``docs/protocol.md`` describes
the same shapes for people.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from annotations.render import MAX_SIDE

# Patterns use explicit ranges, not \s or \S: Python's and JavaScript's (JSON Schema's)
# ideas of whitespace differ, and the OpenAPI document must mean what the server checks.
Id = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Text200 = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"[^\x00-\x20\x7f]")
]
Name80 = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"[^\x00-\x20\x7f]")]
ClientId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Lang = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
#: Deliberately loose (one @, a dot in the domain): the account's e-mail is an identifier
#: here, and a stricter check would refuse addresses that hospitals really use.
Email = Annotated[
    str,
    StringConstraints(
        min_length=3,
        max_length=320,
        pattern=r"^[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]+$",
    ),
]


def _integral(v: object) -> object:
    """JSON has one number type: accept 60.0 as 60, refuse strings, booleans and 60.5."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("must be an integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("must be an integer")
        return int(v)
    return v


def Int(*, ge: int, le: int | None = None) -> Any:
    """An integer field with bounds; the bounds stay visible to JSON Schema."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# -- requests -------------------------------------------------------------------------------


class Empty(Strict):
    """No fields: send ``{}``."""


class RegisterBody(Strict):
    name: Text200
    email: Email
    password: Annotated[str, StringConstraints(min_length=10, max_length=256)]
    specialty: Text200
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]
    languages: Annotated[list[Lang], Field(min_length=1, max_length=10)]


class LoginBody(Strict):
    email: Annotated[str, StringConstraints(min_length=3, max_length=320)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class CreateRoomBody(Strict):
    title: Text200
    summary: Annotated[str, StringConstraints(max_length=4000)] = ""
    lobby: StrictBool = True


class UpdateRoomBody(Strict):
    title: Text200 | None = None
    summary: Annotated[str, StringConstraints(max_length=4000)] | None = None
    lobby: StrictBool | None = None


class CreateCodeBody(Strict):
    role: Literal["participant", "observer"] = "participant"
    expires_in_s: Int(ge=60, le=7 * 24 * 3600) = 24 * 3600  # type: ignore[valid-type]
    max_uses: Int(ge=1, le=500) = 10  # type: ignore[valid-type]


class InviteBody(Strict):
    email: Email


class RedeemBody(Strict):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    display_name: Name80


# -- responses ------------------------------------------------------------------------------


class UserOut(Strict):
    id: str
    email: str
    name: str
    specialty: str
    country: str
    languages: list[str]


class RoomOut(Strict):
    id: str
    title: str
    summary: str
    lobby: bool
    status: Literal["open", "ended"]
    host_user_id: str
    created_at: str
    link: str


class RoomList(Strict):
    rooms: list[RoomOut]


class ShareCodeOut(Strict):
    id: str
    role: Literal["participant", "observer"]
    expires_at: str
    max_uses: int
    uses: int
    revoked: bool
    locked: bool
    created_at: str
    code: str | None = Field(default=None, description="Only in the creation response.")


class ShareCodeList(Strict):
    codes: list[ShareCodeOut]


class InviteOut(Strict):
    email: str
    #: False until a physician registers with this e-mail; the invitation applies then.
    registered: bool


class AdmissionOut(Strict):
    room_id: str
    participant_id: str
    token: str
    role: Literal["host", "participant", "observer"]
    state: Literal["lobby", "admitted"]


class AuditEventOut(Strict):
    seq: int
    at: str
    actor: str
    action: str
    target: str | None
    room_id: str | None
    detail: dict[str, Any]


class AuditList(Strict):
    events: list[AuditEventOut]


class AnnotationExport(Strict):
    room_id: str
    #: image key -> annotation id -> annotation (annotations/SCHEMA.md)
    docs: dict[str, dict[str, dict[str, Any]]]


class Health(Strict):
    status: Literal["ok"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[Any]


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- socket.io payloads (client -> server) --------------------------------------------------


class SioAuth(BaseModel):
    model_config = ConfigDict(extra="ignore")
    room: Id
    token: Annotated[str, StringConstraints(min_length=16, max_length=128)] | None = None
    since: Int(ge=0) | None = None  # type: ignore[valid-type]


class ChatIn(Strict):
    id: ClientId
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class TargetIn(Strict):
    participant_id: Id


class LobbyIn(Strict):
    enabled: StrictBool


DocId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


class YIn(Strict):
    """One y-protocols message for one annotation document (one per image)."""

    doc: DocId
    data: Annotated[bytes, Field(min_length=1, max_length=1024 * 1024)]


DicomUid = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]


class ViewState(Strict):
    """What a presenter's viewer shows; followers' viewers track it (``viewer`` event)."""

    study_uid: DicomUid
    series_uid: DicomUid
    sop_uid: DicomUid
    frame: Annotated[int, Field(ge=1, le=100_000)] = 1
    window_center: Annotated[float, Field(ge=-1e6, le=1e6)] | None = None
    window_width: Annotated[float, Field(gt=0, le=1e7)] | None = None
    zoom: Annotated[float, Field(ge=0.05, le=64)] = 1.0
    pan_x: Annotated[float, Field(ge=-1e5, le=1e5)] = 0.0
    pan_y: Annotated[float, Field(ge=-1e5, le=1e5)] = 0.0


class ViewerIn(Strict):
    """``follow``: true starts (or continues) presenting with ``view``; false stops."""

    follow: bool
    view: ViewState | None = None


MediaSource = Literal["microphone", "camera", "screen"]
#: An SDP token (RFC 8866 §9), as a MID is.
Mid = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,64}$")]


class MediaOfferIn(Strict):
    """An SDP offer for the participant's transport; ``sources`` names each sending m-line."""

    sdp: Annotated[StrictStr, StringConstraints(min_length=1, max_length=65536)]
    sources: Annotated[dict[Mid, MediaSource], Field(max_length=32)] = {}


class MediaCandidateIn(Strict):
    """One trickled ICE candidate (``""`` ends them)."""

    candidate: Annotated[StrictStr, StringConstraints(max_length=1024)]
    sdp_mid: Annotated[StrictStr, StringConstraints(max_length=64)] | None = None
    sdp_mline_index: Annotated[StrictInt, Field(ge=0, le=1024)] | None = None


class MediaMuteIn(Strict):
    source: MediaSource
    muted: StrictBool


# -- query strings --------------------------------------------------------------------------


def _decimal(v: object) -> object:
    """A query-string integer: 1 to 5 decimal digits, nothing else (no sign, space,
    exponent or underscore)."""
    if not (isinstance(v, str) and 1 <= len(v) <= 5 and v.isascii() and v.isdigit()):
        raise ValueError("must be a decimal integer")
    return int(v)


OverlaySide = Annotated[int, Field(ge=1, le=MAX_SIDE), BeforeValidator(_decimal)]


class OverlayQuery(BaseModel):
    """``GET /api/rooms/{room_id}/annotations/{doc_id}/overlay.png``: the image key (from
    the path) and the image's size in pixels, which an image the room holds supplies itself.
    Other query parameters are ignored."""

    model_config = ConfigDict(extra="ignore")
    doc_id: DocId
    width: OverlaySide | None = None
    height: OverlaySide | None = None
    #: Draw over the image itself (rendered with its own window) instead of transparency.
    background: bool = False
