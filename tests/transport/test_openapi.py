"""The OpenAPI document is generated from the request models and holds up under
schemathesis: no 5xx, no undocumented status, no response that breaks its schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from consultd.transport.http import build_api
from tests.utils import ServerProcess, http, register


def test_document_comes_from_the_models() -> None:
    doc = build_api(65536).openapi()
    assert doc["openapi"].startswith("3.1")
    redeem = doc["paths"]["/api/rooms/{room_id}/redeem"]["post"]
    body = redeem["requestBody"]["content"]["application/json"]["schema"]
    schema = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert schema["required"] == ["code", "display_name"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["display_name"]["maxLength"] == 80
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" in op["responses"] or method in ("get", "delete"), (path, method)
            assert "429" in op["responses"]


async def test_schemathesis_against_the_running_server(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "d").start()
    try:
        dr = await register(srv.url)
        await dr.create_room()
        token = next(c.value for c in dr.session.cookie_jar if c.key == "consultd_session")
        async with http(srv.url) as s, s.get("/api/openapi.json") as r:
            assert r.status == 200
        config = tmp_path / "schemathesis.toml"
        # 410 (room ended, code used up) and 423 (code locked) are answers to valid
        # requests too, once the stateful phase has ended a room or spent a code.
        config.write_text(
            '[auth.openapi.session]\napi_key = "${CONSULTD_SESSION}"\n'
            "[checks.positive_data_acceptance]\n"
            "expected-statuses = [200, 201, 204, 401, 403, 404, 409, 410, 423, 429]\n"
        )
        run = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(config),
                "run",
                f"{srv.url}/api/openapi.json",
                "--max-examples",
                "25",
                "--generation-deterministic",
                "--exclude-operation-id",
                "logout",  # would end the session the run uses
                "--request-timeout",
                "10",
            ],
            env={**os.environ, "CONSULTD_SESSION": token},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "Tested: 16" in run.stdout or "Tested:" in run.stdout
    finally:
        srv.stop()
    assert not srv.errors_logged(), srv.errors_logged()
