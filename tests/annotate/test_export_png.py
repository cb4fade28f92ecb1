"""One image's annotations as a PNG overlay, through the real server: members only, the
size from the query, JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycrdt import Doc, Map

from annotations.render import MAX_SIDE
from annotations.sync import sync_step1, update_message
from consultd.transport.http import build_api
from tests.utils import Peer, Physician, ServerProcess, closing, connect, http, redeem, register

UID = "1.2.840.99.1"
DOC = UID + ":1"


def red_line(author: str) -> dict[str, Any]:
    return {
        "id": "l1",
        "author": author,
        "created": 1.0,
        "updated": 1.0,
        "kind": "line",
        "style": {"color": "#ff0000", "width": 2.0},
        "anchor": {"study_uid": UID, "series_uid": UID, "instance_uid": UID, "frame": 1.0},
        "geometry": {"points": [[10.5, 20.5], [60.5, 20.5]]},
    }


class Drawer:
    """A participant's Y.Doc on image ``doc``, as in test_annotation_sync.py: it only sends."""

    def __init__(self, peer: Peer, doc: str = DOC) -> None:
        self.peer = peer
        self.image = doc
        self.doc: Doc[Any] = Doc()
        self.map: Map[Any] = self.doc.get("annotations", type=Map)

    async def send(self, data: bytes) -> dict[str, Any]:
        return await self.peer.sio.call("y", {"doc": self.image, "data": data}, timeout=5)

    async def draw(self, key: str, value: dict[str, Any] | None) -> None:
        sv = self.doc.get_state()
        with self.doc.transaction():
            if value is None:
                del self.map[key]
            else:
                self.map[key] = value
        ack = await self.send(update_message(self.doc.get_update(sv)))
        assert ack.get("ok"), ack


@dataclass
class CtRoom:
    """A room holding one 64 x 80 CT slice (0.7 mm pixels), its host drawing on it."""

    dr: Physician
    room: dict[str, Any]
    admission: dict[str, Any]
    stored: dict[str, Any]  # the server's answer to the upload
    doc: str  # the slice's image key
    drawer: Drawer

    def anchor(self) -> dict[str, Any]:
        s = self.stored
        return {
            "study_uid": s["study_uid"],
            "series_uid": s["series_uid"],
            "instance_uid": s["sop_uid"],
            "frame": 1.0,
        }


@asynccontextmanager
async def ct_room(server: ServerProcess, tmp_path: Path) -> AsyncIterator[CtRoom]:
    from tests.imaging import dicomgen

    dr = await register(server.url)
    room = await dr.create_room(lobby=False)
    adm = await dr.join(room["id"])
    [path] = dicomgen.write_series(dicomgen.ct_series(1, rows=64, cols=80), tmp_path)
    async with dr.session.post(
        f"/api/rooms/{room['id']}/imaging/files",
        data=path.read_bytes(),
        headers={"Authorization": f"Bearer {adm['token']}"},
    ) as r:
        stored = await r.json()
        assert r.status == 200, stored
    doc = f"{stored['sop_uid']}:1"
    host = await connect(server.url, room["id"], adm["token"])
    await host.wait("joined")
    async with closing(host):
        drawer = Drawer(host, doc)
        assert (await drawer.send(sync_step1(drawer.doc.get_state())))["ok"]
        yield CtRoom(dr, room, adm, stored, doc, drawer)


def overlay(room_id: str, doc: str = DOC, query: str = "?width=100&height=50") -> str:
    return f"/api/rooms/{room_id}/annotations/{doc}/overlay.png{query}"


async def test_overlay_png_for_members_only(server: ServerProcess) -> None:
    dr = await register(server.url)
    room = await dr.create_room(lobby=False)
    adm = await dr.join(room["id"])
    host = await connect(server.url, room["id"], adm["token"])
    await host.wait("joined")
    async with closing(host):
        drawer = Drawer(host)
        assert (await drawer.send(sync_step1(drawer.doc.get_state())))["ok"]
        await drawer.draw("l1", red_line(adm["participant_id"]))

        # The host's session: 200, a PNG of the requested size with the red line on row 20.
        async with dr.session.get(overlay(room["id"])) as r:
            assert r.status == 200, await r.text()
            assert r.content_type == "image/png"
            assert r.headers["Cache-Control"] == "private, no-store"
            png = await r.read()
        bgra = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        assert bgra.shape == (50, 100, 4)
        red = (bgra[..., 0] == 0) & (bgra[..., 1] == 0) & (bgra[..., 2] == 255)
        lit = red & (bgra[..., 3] > 200)
        assert lit[20, 15:55].all()
        assert bgra[45, 90].tolist() == [0, 0, 0, 0]

        # A guest with a participant token (Bearer) is a member too.
        code = await dr.make_code(room["id"])
        _, guest = await redeem(server.url, room["id"], code["code"], "Guest")
        bearer = {"Authorization": "Bearer " + guest["token"]}
        async with (
            http(server.url) as s,
            s.get(overlay(room["id"], query="?width=640&height=480"), headers=bearer) as r,
        ):
            assert r.status == 200
            big = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_UNCHANGED)
            assert big.shape == (480, 640, 4)

        # Not members: the same answer as the JSON export next to it, as a JSON error.
        stranger = await register(server.url, "Dr Stranger")
        for session in (stranger.session, http(server.url)):
            async with session.get(f"/api/rooms/{room['id']}/annotations") as r:
                export_status = r.status
            async with session.get(overlay(room["id"])) as r:
                assert r.status == export_status and r.status in (401, 403, 404)
                assert (await r.json())["error"]["code"] in (
                    "unauthorized",
                    "forbidden",
                    "not_found",
                )
        async with (
            http(server.url) as s,
            s.get(
                overlay(room["id"]), headers={"Authorization": "Bearer not-a-token-of-this-room"}
            ) as r,
        ):
            assert r.status == 401 and r.content_type == "application/json"
        async with dr.session.get(overlay("f" * 32)) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"

        # Bad or missing sizes, a malformed image key: 400 with a JSON error.
        bad_queries = [
            "",
            "?width=100",
            "?height=50",
            "?width=abc&height=50",
            "?width=0&height=50",
            "?width=100&height=-5",
            "?width=1e3&height=50",
            "?width=%2B100&height=50",
            "?width=100.0&height=50",
            f"?width={MAX_SIDE + 1}&height=50",
            "?width=100&height=999999",
        ]
        for query in bad_queries:
            async with dr.session.get(overlay(room["id"], query=query)) as r:
                assert r.status == 400, (query, r.status)
                body = await r.json()
                assert body["error"]["code"] == "bad_request", body
        for doc in ("bad%20doc", "x" * 129, "a%2Fb"):
            async with dr.session.get(overlay(room["id"], doc=doc)) as r:
                assert r.status in (400, 404), (doc, r.status)
                assert r.content_type == "application/json"
        async with dr.session.get(overlay(room["id"], doc="bad!doc")) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"

        # An image without annotations, and one whose only annotation was deleted: 404
        # (before the size is looked at).
        for query in ("?width=100&height=50", "?width=0"):
            async with dr.session.get(overlay(room["id"], doc=UID + ":2", query=query)) as r:
                assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        await drawer.draw("l1", None)
        async with dr.session.get(overlay(room["id"])) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


def test_the_overlay_is_in_the_openapi_document() -> None:
    doc = build_api(65536).openapi()
    op = doc["paths"]["/api/rooms/{room_id}/annotations/{doc_id}/overlay.png"]["get"]
    assert op["operationId"] == "annotation_overlay"
    assert {"session": []} in op["security"] and {"participant": []} in op["security"]
    assert "400" in op["responses"] and "404" in op["responses"]


async def test_overlay_on_an_image_the_room_holds(server: ServerProcess, tmp_path: Any) -> None:
    """The image's own size and calibration; drawn over the image when asked."""
    async with ct_room(server, tmp_path) as ct:
        dr, room, doc = ct.dr, ct.room, ct.doc
        line = red_line(ct.admission["participant_id"])
        line["anchor"] = ct.anchor()
        await ct.drawer.draw("l1", line)

        async with dr.session.get(overlay(room["id"], doc, "")) as r:
            assert r.status == 200, await r.text()
            bgra = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_UNCHANGED)
        assert bgra.shape == (64, 80, 4)  # the image's size, no query needed
        async with dr.session.get(overlay(room["id"], doc, "?background=true")) as r:
            assert r.status == 200, await r.text()
            bgr = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_UNCHANGED)
        assert bgr.shape == (64, 80, 3)
        # Off the line, the CT itself shows through (not transparent black everywhere).
        assert int(bgr[40:60, 5:75].max()) > 0
        # An image the room does not hold still needs the size.
        async with dr.session.get(overlay(room["id"], "1.2.3:1", "")) as r:
            assert r.status in (400, 404)
