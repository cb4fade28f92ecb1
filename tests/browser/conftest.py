"""Fixtures for the browser tests: a consultd server with the built web client, and
Debian's Chromium driven by Playwright (never `playwright install`).

The `server` fixture here is a stand-in until tests/conftest.py provides one; the closest
conftest wins, so delete this one when that lands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web_client"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path


def build_web_client() -> None:
    """`npm ci` (when node_modules is missing) and `npm run build` (when dist is stale)."""
    dist = WEB / "dist" / "index.html"
    sources = [WEB / "index.html", WEB / "package-lock.json", WEB / "vite.config.ts"]
    sources += [p for p in (WEB / "src").rglob("*") if p.is_file()]
    if dist.is_file() and dist.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot build web_client")
    if not (WEB / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "build"], cwd=WEB, check=True)


def _drain(stream: object) -> None:
    for _ in stream:  # type: ignore[attr-defined]
        pass


@pytest.fixture(scope="session")
def web_client_dist() -> Path:
    """web_client/dist, built if missing or older than its sources."""
    build_web_client()
    return WEB / "dist"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, web_client_dist: Path) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("consultd-data")
    env = {
        **os.environ,
        # Cheap password hashing: these tests are not about argon2.
        "CONSULTD_ARGON2_MEMORY_KIB": "8192",
        "CONSULTD_ARGON2_TIME_COST": "1",
        "CONSULTD_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "consultd", "serve", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--data-dir", str(data_dir)]
    log_path = data_dir / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        # Keep draining stdout so that the server never blocks on a full pipe.
        threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
        if url is None:
            proc.kill()
            raise RuntimeError(f"consultd did not start:\n{log_path.read_text()}")
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"consultd /healthz did not answer:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield Server(url=url, data_dir=data_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
