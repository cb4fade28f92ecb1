"""Fixtures for the browser tests: a consultd server with the built web client, and
Debian's Chromium driven by Playwright (never `playwright install`).

"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.utils import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web_client"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def build_web_client() -> None:
    """Build web_client/dist when it is missing or older than its sources (scripts/setup.sh
    builds it; this keeps a test run after a source edit honest)."""
    dist = WEB / "dist" / "index.html"
    sources = [WEB / "index.html", WEB / "package-lock.json", WEB / "vite.config.ts"]
    sources += [p for p in (WEB / "src").rglob("*") if p.is_file()]
    if dist.is_file() and dist.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm is required to build web_client (scripts/setup.sh installs it)"
    if not (WEB / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "build"], cwd=WEB, check=True)


@pytest.fixture(scope="session")
def web_client_dist() -> Path:
    build_web_client()
    return WEB / "dist"


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, web_client_dist: Path
) -> Iterator[ServerProcess]:
    """One server for the browser tests of a session (they use rooms of their own)."""
    srv = ServerProcess(tmp_path_factory.mktemp("consultd-data")).start()
    yield srv
    srv.stop()
    assert not srv.errors_logged(), srv.errors_logged()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is required (scripts/setup.sh --dev installs it)"

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
