"""Light clients for the load generator: socket.io over one websocket, and the HTTP calls.

python-socketio's ``AsyncClient`` costs too much per connection to simulate a thousand
participants from a couple of processes. ``SioClient`` speaks only what consultd needs
(docs/protocol.md, "Socket.io"): Engine.IO v4 over a websocket (no polling, no upgrade)
and the msgpack socket.io parser, one reader task per connection, one future per ack.

Engine.IO v4 control packets are text frames: ``0{json}`` open, ``2`` ping (answered
``3`` pong), ``1`` close, ``4<text>`` a text message. A binary frame is a whole message.
With the msgpack parser every socket.io packet is one binary frame holding the map
``{"type": int, "nsp": "/", "data": ..., "id": int}`` (``id`` only when an ack is due).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import aiohttp
import msgpack  # type: ignore[import-untyped, unused-ignore]

# socket.io packet types (socket.io-protocol v5)
CONNECT = 0
DISCONNECT = 1
EVENT = 2
ACK = 3
CONNECT_ERROR = 4

SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
MAX_FRAME = 1 << 20

EventHandler = Callable[[Any], None]


class Packet(NamedTuple):
    """One decoded socket.io packet."""

    type: int
    nsp: str
    data: Any
    id: int | None


def encode_packet(ptype: int, data: Any = None, ack_id: int | None = None, nsp: str = "/") -> bytes:
    """Encode a socket.io packet the way ``socket.io-msgpack-parser`` does."""
    packet: dict[str, Any] = {"type": ptype, "nsp": nsp, "data": data}
    if ack_id is not None:
        packet["id"] = ack_id
    out: bytes = msgpack.packb(packet)
    return out


def decode_packet(frame: bytes) -> Packet:
    """Decode one binary websocket frame; ``ValueError`` when it is not a socket.io packet."""
    try:
        obj = msgpack.unpackb(frame)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise ValueError(f"frame is not msgpack: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), int):
        raise ValueError(f"msgpack frame is not a socket.io packet: {obj!r}")
    ack_id = obj.get("id")
    return Packet(
        obj["type"],
        obj.get("nsp") or "/",
        obj.get("data"),
        ack_id if isinstance(ack_id, int) else None,
    )


def parse_open(text: str) -> dict[str, Any]:
    """Parse the Engine.IO open packet (``0{"sid": ..., "pingInterval": ...}``)."""
    if not text.startswith("0"):
        raise ValueError(f"expected an Engine.IO open packet, got {text[:40]!r}")
    info = json.loads(text[1:])
    if not isinstance(info, dict) or "sid" not in info:
        raise ValueError(f"malformed Engine.IO open packet: {text[:80]!r}")
    return info


class ConnectError(Exception):
    """The server refused or dropped the socket.io connection (``connect_error``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def connect_error(data: Any) -> ConnectError:
    """The error of a CONNECT_ERROR packet.

    docs/protocol.md sends ``{code, message}``; python-socketio's
    ``ConnectionRefusedError(message, extra)`` sends ``{message, data: extra}``.
    """
    if not isinstance(data, dict):
        return ConnectError("error", str(data))
    nested = data.get("data")
    code = data.get("code") or (nested.get("code") if isinstance(nested, dict) else None)
    return ConnectError(str(code or "error"), str(data.get("message", data)))


class SioClient:
    """One socket.io connection to the default namespace.

    Register event handlers before ``connect``: the server may emit right after the
    CONNECT ack (``joined``). Handlers run in the reader task and must not block.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        auth: Mapping[str, Any],
        handlers: Mapping[str, EventHandler],
        on_close: Callable[[SioClient], None] | None = None,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self._session = session
        self._max_frame = max_frame
        self._url = base_url.rstrip("/").replace("http", "ws", 1) + SIO_PATH
        self._auth = dict(auth)
        self._handlers = handlers
        self._on_close = on_close
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[Any] | None = None
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self.closed = False
        self.close_reason = ""

    async def connect(self, timeout_s: float) -> Any:
        """Open the websocket, send CONNECT with the auth object, wait for the ack."""
        loop = asyncio.get_running_loop()
        self._connected = loop.create_future()
        async with asyncio.timeout(timeout_s):
            self._ws = await self._session.ws_connect(
                self._url,
                autoping=True,
                compress=0,
                max_msg_size=self._max_frame,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
            msg = await self._ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectError("bad_handshake", f"no Engine.IO open packet ({msg.type})")
            parse_open(msg.data)
            await self._ws.send_bytes(encode_packet(CONNECT, self._auth))
            self._task = asyncio.create_task(self._read_loop())
            return await self._connected

    def on(self, event: str, handler: EventHandler) -> None:
        """Add or replace the handler of ``event`` (safe from inside another handler)."""
        self._handlers = {**self._handlers, event: handler}

    async def emit(self, event: str, payload: Any) -> None:
        """Send an event without an ack callback."""
        await self._send(encode_packet(EVENT, [event, payload]))

    async def call(self, event: str, payload: Any) -> asyncio.Future[Any]:
        """Send an event with an ack callback; the returned future gets the ack payload."""
        self._next_id += 1
        ack_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        try:
            await self._send(encode_packet(EVENT, [event, payload], ack_id))
        except BaseException:
            self._acks.pop(ack_id, None)
            raise
        return fut

    async def close(self, timeout_s: float = 2.0) -> None:
        """Send a socket.io DISCONNECT and close the websocket (idempotent)."""
        ws = self._ws
        if ws is not None and not ws.closed:
            try:
                async with asyncio.timeout(timeout_s):
                    await ws.send_bytes(encode_packet(DISCONNECT))
                    await ws.close()
            except (TimeoutError, aiohttp.ClientError, ConnectionError, RuntimeError):
                pass
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._finish("closed by client")

    async def _send(self, frame: bytes) -> None:
        ws = self._ws
        if ws is None or ws.closed or self.closed:
            raise ConnectionError("socket is closed")
        await ws.send_bytes(frame)

    async def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        reason = "server closed the websocket"
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.BINARY:
                    if self._on_packet(msg.data):
                        reason = "server disconnect"
                        break
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    data: str = msg.data
                    if data == "2":
                        await ws.send_str("3")
                    elif data.startswith("1"):
                        reason = "engine.io close"
                        break
                    # "4<text>" would be a text socket.io packet: not with the msgpack parser
                else:  # CLOSE, CLOSING, CLOSED, ERROR
                    break
        except (aiohttp.ClientError, ConnectionError) as exc:
            reason = f"connection error: {exc}"
        finally:
            self._finish(reason)
            if not ws.closed:
                await ws.close()

    def _on_packet(self, frame: bytes) -> bool:
        """Dispatch one packet; True when the server disconnected this socket."""
        try:
            packet = decode_packet(frame)
        except ValueError:
            return False  # a lost message shows in the caller's delivery accounting
        ptype = packet.type
        if ptype == EVENT:
            data = packet.data
            if isinstance(data, list) and data:
                handler = self._handlers.get(data[0])
                if handler is not None:
                    handler(data[1] if len(data) > 1 else None)
        elif ptype == ACK:
            fut = self._acks.pop(packet.id, None) if packet.id is not None else None
            if fut is not None and not fut.done():
                data = packet.data
                fut.set_result(data[0] if isinstance(data, list) and data else data)
        elif ptype == CONNECT:
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(packet.data)
        elif ptype == CONNECT_ERROR:
            if self._connected is not None and not self._connected.done():
                self._connected.set_exception(connect_error(packet.data))
        elif ptype == DISCONNECT:
            return True
        return False

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = self.close_reason or reason
        err = ConnectionError(self.close_reason)
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(ConnectError("disconnected", self.close_reason))
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(err)
        self._acks.clear()
        if self._on_close is not None:
            self._on_close(self)


# --- HTTP ------------------------------------------------------------------------------


class ApiError(Exception):
    """A non-2xx answer from the HTTP API (docs/protocol.md, error body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> tuple[Any, aiohttp.ClientResponse]:
    """Send JSON, return the decoded JSON answer; raise ``ApiError`` on 4xx/5xx."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with session.request(method, url, json=body, headers=headers, timeout=timeout) as resp:
        text = await resp.text()
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if resp.status >= 400:
            err = data.get("error") if isinstance(data, dict) else None
            if isinstance(err, dict):
                raise ApiError(resp.status, str(err.get("code")), str(err.get("message")))
            raise ApiError(resp.status, f"http_{resp.status}", text[:200])
        return data, resp


class Physician:
    """A registered physician: keeps its ``consultd_session`` cookie by hand.

    aiohttp's cookie jar refuses cookies from IP hosts and ``Secure`` cookies over http,
    so the session cookie is read from the register answer and sent back as a header.
    """

    COOKIE = "consultd_session"

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers: dict[str, str] = {}
        self.user: dict[str, Any] = {}

    async def register(self, name: str, email: str, password: str) -> dict[str, Any]:
        body = {
            "name": name,
            "email": email,
            "password": password,
            "specialty": "internal medicine",
            "country": "FR",
            "languages": ["en", "fr"],
        }
        data, resp = await request_json(self._session, "POST", self._base + "/api/accounts", body)
        morsel = resp.cookies.get(self.COOKIE)
        if morsel is None:
            raise ApiError(resp.status, "no_session", f"register did not set {self.COOKIE}")
        self._headers = {"Cookie": f"{self.COOKIE}={morsel.value}"}
        self.user = data
        return self.user

    async def create_room(self, title: str, lobby: bool = False) -> dict[str, Any]:
        body = {"title": title, "summary": "", "lobby": lobby}
        data, _ = await request_json(
            self._session, "POST", self._base + "/api/rooms", body, self._headers
        )
        room: dict[str, Any] = data
        return room

    async def join(self, room_id: str) -> dict[str, Any]:
        """Join a room as this physician (its host, or a participant when the lobby is off);
        the ``Admission`` answer carries the participant ``token``."""
        url = f"{self._base}/api/rooms/{room_id}/join"
        data, _ = await request_json(self._session, "POST", url, {}, self._headers)
        admission: dict[str, Any] = data
        return admission

    async def create_code(
        self, room_id: str, max_uses: int, role: str = "participant", expires_in_s: int = 3600
    ) -> dict[str, Any]:
        body = {"role": role, "expires_in_s": expires_in_s, "max_uses": max_uses}
        url = f"{self._base}/api/rooms/{room_id}/codes"
        data, _ = await request_json(self._session, "POST", url, body, self._headers)
        code: dict[str, Any] = data
        return code


async def redeem(
    session: aiohttp.ClientSession, base_url: str, room_id: str, code: str, display_name: str
) -> dict[str, Any]:
    """Redeem a share code; the ``Admission`` answer carries the participant ``token``."""
    url = f"{base_url.rstrip('/')}/api/rooms/{room_id}/redeem"
    data, _ = await request_json(session, "POST", url, {"code": code, "display_name": display_name})
    admission: dict[str, Any] = data
    return admission


def loopback_address(group: int, index: int) -> str:
    """The ``index``-th client source address of ``group`` inside 127.0.0.0/8.

    Linux routes the whole of 127.0.0.0/8 to the loopback interface, so simulated clients
    can come from distinct addresses while every connection still goes to 127.0.0.1.
    """
    return f"127.{10 + group % 240}.{index // 250 % 256}.{index % 250 + 1}"


def new_session(local_ip: str | None = None, limit: int = 0) -> aiohttp.ClientSession:
    """A client session without a cookie jar (tokens travel in JSON and auth objects).

    ``local_ip`` binds its connections to that source address. No session-wide total
    timeout: websockets live for the whole run; each HTTP call and connect has its own.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=limit, local_addr=(local_ip, 0) if local_ip is not None else None
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0),
    )


class AddressSessions:
    """One HTTP/websocket session per client source address: ``per_address`` members share
    each address of ``addr_group`` (0: all use the default address), so per-address limits
    apply to the simulated members as they would to people."""

    def __init__(self, addr_group: int, per_address: int) -> None:
        self.addr_group = addr_group
        self.per_address = per_address
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}

    def get(self, index: int) -> aiohttp.ClientSession:
        """The session of the ``index``-th member."""
        ip = (
            loopback_address(self.addr_group, index // self.per_address)
            if self.per_address > 0
            else None
        )
        session = self._sessions.get(ip)
        if session is None:
            session = self._sessions[ip] = new_session(ip)
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), 5)
