"""Audio, video and screen sharing in rooms: the signalling around the SFU in ``media/``."""

from consultd.calls.config import MediaConfig as MediaConfig
from consultd.calls.service import CallService as CallService
