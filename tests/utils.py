"""Test helpers: a real server process, physicians over HTTP, participants over socket.io."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parent.parent
FAST_KDF = {"CONSULTD_ARGON2_MEMORY_KIB": "8192", "CONSULTD_ARGON2_TIME_COST": "1"}


class ServerProcess:
    """``consultd serve`` on a free loopback port, in its own process."""

    def __init__(
        self, data_dir: Path, *, database_url: str = "", env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.env = {**os.environ, **FAST_KDF, "CONSULTD_LOG_LEVEL": "WARNING", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0  # picked by the first start, kept by restarts (clients reconnect to it)
        self.log = data_dir / "server.log"

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "consultd",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=open(self.log, "a"),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if not m:
            raise RuntimeError(f"server did not start: {line!r}\n{self.log.read_text()}")
        self.url = m.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 20
        import urllib.request

        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"server not healthy\n{self.log.read_text()}") from None
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        return code

    def wait_exit(self, timeout: float = 20) -> int:
        """Wait for the process to end by itself (after a signal sent by the test)."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def errors_logged(self) -> str:
        text = self.log.read_text() if self.log.exists() else ""
        return "\n".join(
            line for line in text.splitlines() if "ERROR" in line or "Traceback" in line
        )


_open_sessions: list[aiohttp.ClientSession] = []


def http(base: str) -> aiohttp.ClientSession:
    # unsafe=True: keep cookies for an IP-address host (127.0.0.1).
    s = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    _open_sessions.append(s)
    return s


async def close_sessions() -> None:
    while _open_sessions:
        await _open_sessions.pop().close()


@dataclass
class Physician:
    session: aiohttp.ClientSession
    user: dict[str, Any]

    async def post(self, path: str, body: Any, expect: int | None = None) -> Any:
        async with self.session.post(path, json=body) as r:
            data = await r.json() if r.content_type == "application/json" else None
            if expect is not None:
                assert r.status == expect, (r.status, data)
            return data

    async def create_room(self, title: str = "Case 42", *, lobby: bool = True) -> dict[str, Any]:
        return await self.post(
            "/api/rooms", {"title": title, "summary": "de-identified", "lobby": lobby}, 201
        )

    async def make_code(self, room_id: str, **kw: Any) -> dict[str, Any]:
        return await self.post(f"/api/rooms/{room_id}/codes", kw, 201)

    async def join(self, room_id: str) -> dict[str, Any]:
        return await self.post(f"/api/rooms/{room_id}/join", {}, 201)


async def register(base: str, name: str = "Dr Ada", email: str | None = None) -> Physician:
    s = http(base)
    email = email or f"{uuid.uuid4().hex[:10]}@hospital.example"
    async with s.post(
        "/api/accounts",
        json={
            "name": name,
            "email": email,
            "password": "correct horse battery",
            "specialty": "radiology",
            "country": "FR",
            "languages": ["fr", "en"],
        },
    ) as r:
        assert r.status == 201, await r.text()
        return Physician(s, await r.json())


async def redeem(
    base: str, room_id: str, code: str, name: str = "Guest"
) -> tuple[int, dict[str, Any]]:
    async with (
        http(base) as s,
        s.post(f"/api/rooms/{room_id}/redeem", json={"code": code, "display_name": name}) as r,
    ):
        return r.status, await r.json()


@dataclass
class Peer:
    """A participant's socket.io client that records every event it receives."""

    sio: socketio.AsyncClient
    events: list[tuple[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _record(self, name: str, data: Any) -> None:
        self.events.append((name, data))
        self._changed.set()

    def of(self, name: str) -> list[Any]:
        return [d for n, d in self.events if n == name]

    async def wait(
        self, name: str, pred: Callable[[Any], bool] = lambda d: True, timeout: float = 5
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for n, d in self.events:
                if n == name and pred(d):
                    return d
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {name!r} event; got {[n for n, _ in self.events]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def call(self, event: str, data: Any = None, timeout: float = 5) -> Any:
        return await self.sio.call(event, {} if data is None else data, timeout=timeout)


EVENTS = (
    "lobby",
    "joined",
    "presence",
    "chat",
    "room",
    "rejected",
    "removed",
    "ended",
    "server_shutdown",
    "error",
    "imaging",
    "viewer",
)


async def connect(
    base: str,
    room_id: str,
    token: str | None,
    *,
    since: int | None = None,
    reconnection: bool = False,
) -> Peer:
    sio = socketio.AsyncClient(serializer="msgpack", reconnection=reconnection)
    peer = Peer(sio)
    for name in EVENTS:
        sio.on(name, (lambda n: lambda d=None: peer._record(n, d))(name))
    auth: dict[str, Any] = {"room": room_id}
    if token:
        auth["token"] = token
    if since is not None:
        auth["since"] = since
    refused: list[Any] = []
    sio.on("connect_error", lambda d=None: refused.append(d))
    try:
        await sio.connect(base, auth=auth, transports=["websocket"], wait_timeout=5)
    except socketio.exceptions.ConnectionError as exc:
        raise ConnectionRefused(refused[0] if refused else str(exc)) from None
    return peer


class ConnectionRefused(Exception):
    """The server refused the socket.io connection; ``args[0]`` is its ``{code, message}``."""


@contextlib.asynccontextmanager
async def closing(*peers: Peer) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for p in peers:
            with contextlib.suppress(Exception):
                await p.sio.disconnect()
