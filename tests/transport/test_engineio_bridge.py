"""Fails loudly when a python-socketio / python-engineio upgrade moves what
``consultd/transport/_engineio_bridge.py`` relies on."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import engineio
import socketio
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket


def test_pinned_versions() -> None:
    assert version("python-socketio") == "5.18.1"
    assert version("python-engineio") == "4.15.1"


def test_private_names_still_exist() -> None:
    assert hasattr(socketio.AsyncServer, "_engineio_server_class")
    assert hasattr(socketio.AsyncServer, "_handle_event_internal")
    assert hasattr(socketio.AsyncServer, "_handle_eio_message")
    assert list(inspect.signature(socketio.AsyncServer._handle_event_internal).parameters) == [
        "self",
        "server",
        "sid",
        "eio_sid",
        "data",
        "namespace",
        "id",
    ]
    assert hasattr(engineio.AsyncServer, "create_queue")
    assert "websocket" in eio_aiohttp._async
    assert hasattr(eio_aiohttp.WebSocket, "wait")
    assert "self.queue" in inspect.getsource(AsyncSocket.close)


def test_poll_is_replaced_and_keeps_the_sentinel_contract() -> None:
    from consultd.transport import _engineio_bridge

    assert AsyncSocket.poll is _engineio_bridge._poll
    # The original (in the module's source) still has the contract _poll copies: the
    # writer's None sentinel is re-queued, and a timeout raises QueueEmpty.
    import engineio.async_socket

    source = inspect.getsource(engineio.async_socket)
    original = source.split("async def poll(self):", 1)[1].split("async def ", 1)[0]
    assert "self.queue.put_nowait(None)" in original
    assert "raise exceptions.QueueEmpty()" in original
