"""The browser's event names (web_client/src/net/protocol.ts) are the server's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from consultd.transport.sio import Gateway, create_server

ROOT = Path(__file__).resolve().parents[2]


def _ts_block(name: str) -> set[str]:
    text = (ROOT / "web_client" / "src" / "net" / "protocol.ts").read_text()
    m = re.search(rf"export const {name} = \{{(.*?)\}} as const", text, re.S)
    assert m, name
    return set(re.findall(r"^\s*(\w+): '\1',$", m.group(1), re.M))


def test_client_events_are_the_gateway_handlers() -> None:
    sio = create_server(65536, 100, lambda: None)
    Gateway(sio).bind(services=Any)  # type: ignore[arg-type]
    assert set(sio.handlers["/"]) == {"connect", "disconnect", "*"}
    assert set(sio._direct) == _ts_block("ClientEvent")  # every event takes the direct way


def test_server_events_are_emitted_by_the_server() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "consultd").rglob("*.py"))
    emitted = set(re.findall(r'(?:broadcast|send|emit)\(\s*(?:[\w.]+,\s*){0,2}"(\w+)"', source))
    emitted |= set(re.findall(r'\bevent="(\w+)"', source))
    assert _ts_block("ServerEvent") == emitted
