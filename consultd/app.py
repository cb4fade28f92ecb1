"""Wiring only: the aiohttp application, the socket.io server, start-up and shutdown."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from consultd.annotate.service import AnnotationService
from consultd.auth.accounts import Accounts
from consultd.auth.passwords import Passwords
from consultd.calls import CallService, MediaConfig
from consultd.chat.service import ChatService
from consultd.config import Settings
from consultd.imaging.dicomweb import IMAGING
from consultd.imaging.dicomweb import add_routes as add_dicomweb_routes
from consultd.imaging.service import ImagingService
from consultd.loopload import LoopLoad
from consultd.metrics import Metrics
from consultd.rooms.registry import RoomRegistry
from consultd.rooms.service import RoomService, load_or_create_secret
from consultd.services import SERVICES, Services
from consultd.store.db import Database
from consultd.store.unit import Store
from consultd.transport.http import (
    add_web_client,
    build_api,
    csrf_middleware,
    error_middleware,
    metrics_handler,
    security_headers,
)
from consultd.transport.sio import Gateway, create_server

log = logging.getLogger(__name__)

WEB_DIST = Path(__file__).resolve().parent.parent / "web_client" / "dist"


def tune_gc() -> None:
    """Keep full collections off the hot path: everything alive after start-up (modules,
    SQLAlchemy's statement caches, the app) is frozen out of the collector, and young
    generations are collected less often. Measured with the join-chat bench (README)."""
    import gc
    import os

    if os.environ.get("CONSULTD_GC_DEFAULT"):
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def create_app(settings: Settings, *, web_dist: Path = WEB_DIST) -> web.Application:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(
        middlewares=[security_headers, error_middleware, csrf_middleware(settings.public_origin)],
        client_max_size=settings.max_message_bytes,
    )
    metrics = Metrics()
    load = LoopLoad()
    sio = create_server(
        settings.max_message_bytes, settings.max_queued_packets, metrics.slow_clients.inc
    )
    gateway = Gateway(sio)
    sio.attach(app)

    media_config = MediaConfig.from_settings(settings)  # ValueError names a bad setting
    db = Database(settings.resolved_database_url)
    store = Store(db)
    registry = RoomRegistry(store)
    secret_key = load_or_create_secret(settings.data_dir / "secret.key")
    services = Services(
        settings=settings,
        store=store,
        accounts=Accounts(
            store,
            Passwords(memory_kib=settings.argon2_memory_kib, time_cost=settings.argon2_time_cost),
            session_ttl_s=settings.session_ttl_s,
        ),
        registry=registry,
        rooms=RoomService(
            store,
            registry,
            gateway,
            secret_key=secret_key,
            grace_s=settings.grace_s,
            history_limit=settings.history_limit,
        ),
        chat=ChatService(store, gateway),
        annotations=AnnotationService(
            store, gateway, compact_every=settings.annotation_compact_every, load=load
        ),
        imaging=ImagingService(
            store,
            gateway,
            settings.data_dir,
            secret_key,
            workers=settings.imaging_workers,
        ),
        calls=CallService(store, gateway, media_config),
        metrics=metrics,
        load=load,
        sockets_open=gateway.open_sockets,
    )
    app[SERVICES] = services
    app[IMAGING] = services.imaging
    add_dicomweb_routes(app)
    gateway.bind(services)

    api = build_api(settings.max_message_bytes)
    api.install(app)
    openapi = api.openapi()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(openapi)

    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/metrics", metrics_handler)
    add_web_client(app, web_dist)

    async def on_startup(app: web.Application) -> None:
        await db.migrate()
        await services.imaging.start()
        services.chat.start()
        services.calls.start()
        tune_gc()
        load.start()
        log.info(
            "consultd ready on %s:%s (store: %s)",
            settings.host,
            settings.port,
            db.engine.dialect.name,
        )

    async def on_shutdown(app: web.Application) -> None:
        # Clients are told first; acknowledged chat is already on disk, queued chat is
        # written before the store closes.
        load.close()
        await gateway.shutdown()
        await services.calls.close()  # every peer connection and its UDP ports
        await services.chat.close()
        await services.imaging.close()
        await store.close()

    async def on_cleanup(app: web.Application) -> None:
        await registry.close()
        await db.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app
