"""The wire set-up: msgpack packets (notepack's ext 0 as bytes), no permessage-deflate."""

from __future__ import annotations

import aiohttp
import msgpack
import pytest

from consultd.transport._engineio_bridge import MalformedPacket
from consultd.transport.wire import Packet
from tests.utils import ServerProcess


def test_notepack_uint8array_decodes_as_bytes() -> None:
    # notepack encodes a Uint8Array as ext type 0.
    raw = msgpack.packb(
        {"type": 2, "nsp": "/", "data": ["y", msgpack.ExtType(0, b"\x01\x02\x03")]},
        use_bin_type=True,
    )
    pkt = Packet(encoded_packet=raw)
    assert pkt.data == ["y", b"\x01\x02\x03"]


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1",
        b"\x93\x01\x02\x03",
        msgpack.packb({"nsp": "/"}),
        msgpack.packb({"type": 2, "nsp": "/", "data": [msgpack.ExtType(5, b"x")]}),
        b"",
    ],
)
def test_malformed_packets_raise_one_clean_error(raw: bytes) -> None:
    with pytest.raises(MalformedPacket) as err:
        Packet(encoded_packet=raw)
    assert "x" not in str(err.value) or "packet" in str(err.value)


async def test_permessage_deflate_is_refused(server: ServerProcess) -> None:
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as s, s.ws_connect(url, compress=15) as ws:
        assert ws.compress == 0
        opening = await ws.receive()
        assert opening.data.startswith("0{") and '"pingInterval":10000' in opening.data
