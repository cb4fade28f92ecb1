"""The one error tree. Each class knows its HTTP status and its socket.io code.

Errors are mapped to responses in exactly two places: the HTTP middleware in
``transport/http.py`` (a JSON body) and the socket.io wrapper in ``transport/sio.py``
(an ack or an ``error`` event). No handler builds its own error response.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ConsultdError(Exception):
    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class BadRequest(ConsultdError):
    http_status = 400
    code = "bad_request"


class ValidationFailed(ConsultdError):
    http_status = 422
    code = "validation_error"


class Unauthorized(ConsultdError):
    http_status = 401
    code = "unauthorized"


class Forbidden(ConsultdError):
    http_status = 403
    code = "forbidden"


class NotFound(ConsultdError):
    http_status = 404
    code = "not_found"


class AnnotationRefused(ConsultdError):
    """An annotation update that breaks the schema or the author's rights
    (``details`` name the field path)."""

    http_status = 422
    code = "annotation_rejected"


class MediaInvalidState(ConsultdError):
    """A media call out of order: no ``media_join`` yet, a closed transport, an offer
    while one is applied (``media.InvalidStateError``)."""

    http_status = 409
    code = "media_invalid_state"


class MediaNegotiationFailed(ConsultdError):
    """An offer or ICE candidate the SFU cannot apply (``media.NegotiationError``)."""

    http_status = 422
    code = "media_negotiation_failed"


class MediaPublishNotAllowed(ConsultdError):
    """A sending m-line from an observer, or past the room's publisher cap
    (``media.PublishNotAllowedError``)."""

    http_status = 403
    code = "media_publish_not_allowed"


class Conflict(ConsultdError):
    http_status = 409
    code = "conflict"


class Gone(ConsultdError):
    http_status = 410
    code = "gone"


class PayloadTooLarge(ConsultdError):
    http_status = 413
    code = "payload_too_large"


class Locked(ConsultdError):
    http_status = 423
    code = "locked"


class RateLimited(ConsultdError):
    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ConsultdError):
    http_status = 503
    code = "unavailable"
