"""socket.io on the wire: the msgpack serializer.

The browser uses ``socket.io-msgpack-parser`` (notepack). Its browser build sends an
``ArrayBuffer`` as msgpack bin (``bytes`` here); notepack's Node build sends a
``Uint8Array``/``Buffer`` as bin too, and some versions use ext type 0 for a typed array:
the unpacker turns ext 0 into ``bytes`` as well.
"""

from __future__ import annotations

from typing import Any

from socketio.msgpack_packet import MsgPackPacket

from consultd.transport._engineio_bridge import MalformedPacket


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        return bytes(data)
    raise ValueError("unsupported msgpack extension")


class Packet(MsgPackPacket.configure(ext_hook=_ext_hook)):  # type: ignore[misc]
    """msgpack socket.io packet; undecodable input raises ``MalformedPacket``."""

    def __init__(self, *args: Any, encoded_packet: Any = None, **kwargs: Any) -> None:
        if encoded_packet is not None and not encoded_packet:
            raise MalformedPacket("empty socket.io packet")  # would pass as an empty EVENT
        super().__init__(*args, encoded_packet=encoded_packet, **kwargs)

    def decode(self, encoded_packet: bytes) -> None:
        try:
            super().decode(encoded_packet)
        except Exception:
            raise MalformedPacket("malformed socket.io packet") from None
        if not isinstance(self.packet_type, int) or not isinstance(self.namespace, str | None):
            raise MalformedPacket("malformed socket.io packet")
