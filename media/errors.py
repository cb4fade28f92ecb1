"""Errors the SFU raises at its edge (signalling); the hot path counts and drops instead.

The socket.io layer maps them to its own codes; ``code`` is a stable string for that.
"""


class MediaError(Exception):
    """Base class of every error raised by ``media``."""

    code = "media_error"


class InvalidStateError(MediaError):
    """The object is closed, or the signalling state does not allow the call."""

    code = "media_invalid_state"


class NegotiationError(MediaError):
    """The offer could not be applied (malformed SDP, no common codec, wrong type)."""

    code = "media_negotiation_failed"


class PublishNotAllowedError(MediaError):
    """The participant may not publish (observer), or the room's publisher cap is reached."""

    code = "media_publish_not_allowed"
