"""web_client/src/net/protocol.ts names the events of docs/protocol.md, one per line."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _block(text: str, name: str) -> set[str]:
    m = re.search(rf"export const {name} = \{{(.*?)\}} as const", text, re.S)
    assert m, name
    body = [line.strip() for line in m.group(1).splitlines() if line.strip()]
    pairs = [re.fullmatch(r"(\w+): '(\w+)',", line) for line in body]
    assert all(pairs), body
    assert all(p.group(1) == p.group(2) for p in pairs if p)
    return {p.group(1) for p in pairs if p}


def _doc_events(section: str) -> set[str]:
    return set(re.findall(r"^\| `(\w+)` \|", section, re.M))


def test_protocol_ts_lists_every_documented_event() -> None:
    """protocol.ts keeps one `name: 'name'` line per event, as docs/protocol.md lists them."""
    text = (ROOT / "web_client" / "src" / "net" / "protocol.ts").read_text()
    doc = (ROOT / "docs" / "protocol.md").read_text()
    before, rest = doc.split("### Client → server")
    server_doc = before.split("### Server → client")[1]
    client_doc, media = rest.split("## Media", 1)
    # The media section has its own two tables: client → server, then server → client.
    media_client, media_server = media.split("\nServer → client:", 1)
    media_server = media_server.split("\n## ", 1)[0]
    assert _block(text, "ServerEvent") == _doc_events(server_doc) | _doc_events(media_server)
    assert _block(text, "ClientEvent") == _doc_events(client_doc) | _doc_events(media_client)
