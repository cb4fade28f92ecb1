"""Interop: the real ``yjs`` + ``y-protocols`` (Node, as the browser) and pycrdt peers
converge on one annotation document through the server.

The Node client (``yjs_client.mjs``) uses socket.io-client with the msgpack parser, so its
bytes go out as a ``Uint8Array`` (msgpack ext type 0), exactly as from a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.annotate.test_annotation_sync import DOC, UID, YPeer, _room, note
from tests.utils import ROOT, ServerProcess, closing, redeem

SCRIPT = Path(__file__).with_name("yjs_client.mjs")
NODE_MODULES = ROOT / "web_client" / "node_modules"
PACKAGES = ("yjs", "y-protocols", "lib0", "socket.io-client", "socket.io-msgpack-parser")


def node_note(author: str) -> dict[str, Any]:
    """What ``yjs_client.mjs`` draws (keep in step with its ``nodeNote``)."""
    return {
        "id": "n1",
        "author": author,
        "created": 1700000000000,
        "updated": 1700000004000,
        "kind": "line",
        "style": {"color": "#00C0ff", "width": 1.5},
        "anchor": {"study_uid": UID, "series_uid": UID, "instance_uid": UID, "frame": 1},
        "geometry": {"points": [[0.1, -20.25], [160, 180.5]]},
    }


def normalise(value: Any) -> Any:
    """JSON values with every number as a float (Yjs has one number type; yrs keeps ints)."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (v20) is required on PATH for the yjs interop test")
    missing = [p for p in PACKAGES if not (NODE_MODULES / p / "package.json").is_file()]
    if missing:
        pytest.fail(f"missing npm packages {missing} in {NODE_MODULES}: run `npm ci` in web_client")
    return node


async def _until(
    peer: YPeer, expect: dict[str, Any], proc: asyncio.subprocess.Process, timeout: float = 15
) -> None:
    """``peer.settle``, failing at once with the Node client's stderr if it has exited."""
    deadline = asyncio.get_running_loop().time() + timeout
    while normalise(peer.map.to_py()) != normalise(expect):
        if proc.returncode not in (None, 0):
            assert proc.stderr is not None
            err = (await proc.stderr.read()).decode()
            pytest.fail(f"the yjs client exited with {proc.returncode}: {err}")
        assert asyncio.get_running_loop().time() < deadline, (peer.map.to_py(), expect)
        await asyncio.sleep(0.02)


async def test_yjs_client_and_pycrdt_peers_converge(server: ServerProcess) -> None:
    node = _node()
    dr, room, host, guest, obs = await _room(server)
    async with closing(host.peer, guest.peer, obs.peer):
        for p in (host, guest, obs):
            await p.sync()
        # Already in the document when the Node client connects: it arrives in sync step 2.
        h1 = note("h1", host.pid)
        assert (await host.draw(h1=h1))["ok"]

        code = await dr.make_code(room["id"])
        status, adm = await redeem(server.url, room["id"], code["code"], "Yjs browser")
        assert status == 201, adm
        n1 = node_note(adm["participant_id"])
        h2 = note("h2", host.pid, x=200.0)
        config = {
            "url": server.url,
            "room": room["id"],
            "token": adm["token"],
            "doc": DOC,
            "expect": ["h1", "n1", "h2"],
        }
        proc = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            cwd=ROOT / "web_client",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(config).encode())
            await proc.stdin.drain()
            proc.stdin.close()
            # The server accepted the yjs-encoded update and relayed it to the pycrdt peers.
            await _until(host, {"h1": h1, "n1": n1}, proc)
            # Drawn after the Node client synced: it arrives as an update message.
            assert (await host.draw(h2=h2))["ok"]
            out, err = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()

        expected = {"h1": h1, "n1": n1, "h2": h2}
        for p in (host, guest, obs):
            await _until(p, expected, proc)
        from_yjs = json.loads(out)
        assert normalise(from_yjs) == normalise(host.map.to_py()) == normalise(expected)
        assert normalise(guest.map.to_py()) == normalise(obs.map.to_py()) == normalise(expected)
