"""The service container: what the transports call. Built once in ``app.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from consultd.annotate.service import AnnotationService
from consultd.auth.accounts import Accounts
from consultd.calls.service import CallService
from consultd.chat.service import ChatService
from consultd.config import Settings
from consultd.imaging.service import ImagingService
from consultd.loopload import LoopLoad
from consultd.metrics import Metrics
from consultd.rooms.registry import RoomRegistry
from consultd.rooms.service import RoomService
from consultd.store.unit import Store


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    accounts: Accounts
    registry: RoomRegistry
    rooms: RoomService
    chat: ChatService
    annotations: AnnotationService
    imaging: ImagingService
    calls: CallService
    metrics: Metrics
    load: LoopLoad
    sockets_open: Callable[[], int]


SERVICES = web.AppKey("services", Services)
