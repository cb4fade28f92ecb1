"""The browser media scenario, run inside a network namespace that holds only ``lo``
(tests/browser/test_media.py starts it under ``unshare -n``): a consultd server whose SFU
gathers on 127.0.0.1, and two headless Chromium pages with fake camera, microphone and
screen. Prints one JSON object (what each page saw) as its last line of output.

    python -m tests.browser.media_netns DATA_DIR
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.utils import ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Chromium offers no ICE candidates on loopback without it.
    "--allow-loopback-in-peer-connection",
]
WAIT_S = 20.0
SCREENSHOT = "/tmp/consultd-call.png"

#: The inbound video of a page's peer connection, from getStats(), with the receiver's mid.
STATS_JS = """async () => {
  const m = window.__consultdMedia;
  const pc = m && m.pc();
  if (!pc) return null;
  const mids = new Map(pc.getTransceivers().map((t) => [t.receiver.track.id, t.mid]));
  const video = [];
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      video.push({ id: r.id, mid: r.mid ?? mids.get(r.trackIdentifier) ?? null,
                   framesDecoded: r.framesDecoded ?? 0, frameWidth: r.frameWidth ?? 0,
                   frameHeight: r.frameHeight ?? 0 });
    }
  });
  return { connection: pc.connectionState, video, state: m.state() };
}"""


def _speech_like(path: Path) -> Path:
    """A loud warbling tone in 4 Hz bursts (about a syllable rate), 3 s looped by Chromium:
    its default fake microphone beeps too briefly to count as speech, and a steady tone is
    what noise suppression removes."""
    rate = 48000
    frames = bytearray()
    for i in range(rate * 3):
        t = i / rate
        envelope = max(0.0, math.sin(2 * math.pi * 4 * t)) ** 0.5
        pitch = 180 + 60 * math.sin(2 * math.pi * 0.7 * t)
        value = (
            0.5 * envelope * math.sin(2 * math.pi * pitch * t + 3 * math.sin(2 * math.pi * 3 * t))
        )
        frames += struct.pack("<h", int(value * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


async def _poll(what: str, fn: Callable[[], Awaitable[Any]], timeout: float = WAIT_S) -> Any:
    """``fn()`` until it returns something truthy; raise with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{what}: last seen {last!r}")


async def _stats(page: Page) -> Any:
    return await page.evaluate(STATS_JS)


async def _decoding(page: Page, count: int) -> list[dict[str, Any]]:
    """Wait until at least ``count`` inbound videos decode frames of a real size, their
    ``framesDecoded`` growing between two samples (stats of a stream that ended stay
    behind, frozen: they do not count)."""

    async def growing() -> list[dict[str, Any]] | None:
        before = await _stats(page)
        await asyncio.sleep(0.5)
        after = await _stats(page)
        if not before or not after or after["connection"] != "connected":
            return None
        was = {v["id"]: v for v in before["video"]}
        live = [
            {"before": was[v["id"]], "after": v}
            for v in after["video"]
            if v["id"] in was
            and v["framesDecoded"] > was[v["id"]]["framesDecoded"] > 0
            and v["frameWidth"] > 0
        ]
        return live if len(live) >= count else None

    result: list[dict[str, Any]] = await _poll(f"{count} video(s) decoding", growing)
    return result


async def _tiles(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="media-tile"]')].map((el) => ({
          participant: el.dataset.participant, source: el.dataset.source,
          name: el.querySelector('[data-testid="media-tile-name"]').textContent,
          tag: el.querySelector('.tile-tag').textContent,
          muted: el.dataset.muted, speaking: el.dataset.speaking, videoOff: el.dataset.videoOff,
          self: el.dataset.self === 'true' }))"""
    )
    return result


async def _tile(
    page: Page, participant: str, source: str = "camera", **want: str
) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        for t in await _tiles(page):
            if t["participant"] == participant and t["source"] == source:
                if all(t.get(k) == v for k, v in want.items()):
                    return t
        return None

    result: dict[str, Any] = await _poll(f"tile {participant}/{source} {want}", find)
    return result


async def _enter_call(page: Page) -> None:
    """The device check (preview and level meter), then join with camera and microphone."""
    await page.get_by_test_id("media-start").click()
    await expect(page.get_by_test_id("media-device-check")).to_be_visible()
    await expect(page.get_by_test_id("media-join")).to_be_enabled(timeout=WAIT_S * 1000)
    await page.wait_for_function(
        "() => { const v = document.querySelector('[data-testid=\"media-preview\"]');"
        " return v && v.videoWidth > 0; }",
        timeout=WAIT_S * 1000,
    )
    # The level meter moves with the (fake) voice.
    await page.wait_for_function(
        "() => document.querySelector('[data-testid=\"media-level\"]').value > 0.02",
        timeout=WAIT_S * 1000,
    )
    await page.get_by_test_id("media-join").click()
    await expect(page.get_by_test_id("media-state")).to_have_attribute(
        "data-state", "connected", timeout=WAIT_S * 1000
    )


async def _host_account(url: str) -> tuple[str, dict[str, str], list[dict[str, Any]]]:
    """A physician's account, a room without a lobby, a participant and an observer code,
    and the session cookie for the host's browser."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=url, cookie_jar=jar) as http:

        async def post(path: str, body: dict[str, Any]) -> Any:
            async with http.post(path, json=body) as r:
                data = await r.json()
                assert r.status in (200, 201), (path, r.status, data)
                return data

        await post(
            "/api/accounts",
            {
                "name": "Dr Ada Host",
                "email": f"media-{uuid.uuid4().hex[:12]}@example.org",
                "password": "correct horse battery",
                "specialty": "radiology",
                "country": "FR",
                "languages": ["en"],
            },
        )
        room = await post("/api/rooms", {"title": "Call test", "summary": "", "lobby": False})
        codes = {}
        for role in ("participant", "observer"):
            made = await post(
                f"/api/rooms/{room['id']}/codes",
                {"role": role, "expires_in_s": 3600, "max_uses": 5},
            )
            codes[role] = made["code"]
    cookies = [{"name": c.key, "value": c.value, "url": url} for c in jar]
    return room["id"], codes, cookies


async def _redeem(page: Page, url: str, room_id: str, code: str, name: str) -> None:
    await page.goto(f"{url}/r/{room_id}")
    await page.get_by_test_id("code-input").fill(code)
    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("redeem-button").click()
    await expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "connected", timeout=WAIT_S * 1000
    )


async def _page(browser: Browser, errors: list[str], cookies: list[dict[str, Any]]) -> Page:
    context = await browser.new_context(locale="en-US", viewport={"width": 1200, "height": 1000})
    if cookies:
        await context.add_cookies(cookies)  # type: ignore[arg-type]
    await context.add_init_script(INIT_JS)
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    return page


#: The SFU's ICE address: a loopback address of its own, so the media path can be cut
#: (a blackhole route) while HTTP and the room's socket on 127.0.0.1 carry on.
RTC_ADDRESS = "127.0.0.2"


def _media_path(*, broken: bool) -> None:
    """Cut (or restore) every packet to and from the SFU's address."""
    action = "add" if broken else "del"
    cmd = ["ip", "route", action, "blackhole", f"{RTC_ADDRESS}/32", "table", "local"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


async def _media_state(page: Page, state: str) -> bool:
    result: bool = await page.evaluate("(s) => window.__consultdMedia.state().state === s", state)
    return result


#: Test hooks on, and every WebSocket kept, so that the test can drop the room's socket.
INIT_JS = """window.__consultdTestHooks = true;
window.__websockets = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) { super(...args); window.__websockets.push(this); }
};"""

KEEP_PC_JS = "() => { window.__oldPc = window.__consultdMedia.pc(); }"


async def _new_pc(page: Page) -> bool:
    """The page's peer connection is a new one, and the one kept by KEEP_PC_JS is closed."""
    result: bool = await page.evaluate(
        "() => { const pc = window.__consultdMedia.pc(); return !!pc && pc !== window.__oldPc"
        " && window.__oldPc.connectionState === 'closed'; }"
    )
    return result


async def _frozen(page: Page) -> bool:
    """No inbound video decodes any more frames (over one second)."""
    before = await _stats(page)
    await asyncio.sleep(1.0)
    after = await _stats(page)
    count = {v["id"]: v["framesDecoded"] for v in before["video"]}
    return all(v["framesDecoded"] == count.get(v["id"], 0) for v in after["video"])


async def scenario(url: str, data: Path, out: dict[str, Any]) -> None:
    """Fills ``out`` as it goes (what was reached is reported even after a failure)."""
    errors: list[str] = []
    room_id, codes, cookies = await _host_account(url)
    tone = _speech_like(data / "speech.wav")
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={tone}"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            host = await _page(browser, errors, cookies)
            guest = await _page(browser, errors, [])
            await host.goto(f"{url}/r/{room_id}")
            await expect(host.get_by_test_id("connection-status")).to_have_attribute(
                "data-state", "connected", timeout=WAIT_S * 1000
            )
            await _redeem(guest, url, room_id, codes["participant"], "Dr Guest")
            t0 = time.monotonic()
            await asyncio.gather(_enter_call(host), _enter_call(guest))
            out["t_in_call"] = time.monotonic() - t0
            host_id = (await _stats(host))["state"]["self"]
            guest_id = (await _stats(guest))["state"]["self"]
            out["ids"] = {"host": host_id, "guest": guest_id}

            # Each page decodes the other's camera, and labels its tile with the name.
            out["host_video"], out["guest_video"] = await asyncio.gather(
                _decoding(host, 1), _decoding(guest, 1)
            )
            out["host_sees"] = await _tile(host, guest_id, videoOff="false")
            out["guest_sees"] = await _tile(guest, host_id, videoOff="false")
            out["host_tiles"] = await _tiles(host)

            # An observer watches and listens: both cameras, no publish controls, no tile of
            # its own anywhere.
            out["t_observer"] = time.monotonic() - t0
            observer = await _page(browser, errors, [])
            await _redeem(observer, url, room_id, codes["observer"], "Dr Watcher")
            await expect(observer.get_by_test_id("media-start")).to_have_text("Watch and listen")
            await observer.get_by_test_id("media-start").click()
            await expect(observer.get_by_test_id("media-state")).to_have_attribute(
                "data-state", "connected", timeout=WAIT_S * 1000
            )
            out["observer_video"] = await _decoding(observer, 2)
            out["observer_tiles"] = await _tiles(observer)
            out["observer_controls"] = {
                name: await observer.get_by_test_id(f"media-{name}").is_visible()
                for name in ("mute", "camera", "screen", "audio-only", "leave")
            }
            out["observer_state"] = (await _stats(observer))["state"]
            out["observer_senders"] = await observer.evaluate(
                "() => window.__consultdMedia.pc().getTransceivers()"
                ".filter((t) => t.currentDirection && t.currentDirection.startsWith('send')).length"
            )
            await observer.context.close()

            # Mute on one page shows on the other.
            await guest.get_by_test_id("media-mute").click()
            await expect(guest.get_by_test_id("media-mute")).to_have_attribute(
                "aria-pressed", "true"
            )
            out["host_sees_muted"] = await _tile(host, guest_id, muted="true")
            await guest.get_by_test_id("media-mute").click()
            out["host_sees_unmuted"] = await _tile(host, guest_id, muted="false")

            # Screen sharing: a second video and tile on the other page.
            out["t_screen"] = time.monotonic() - t0
            await guest.get_by_test_id("media-screen").click()
            out["screen_tile"] = await _tile(host, guest_id, "screen", videoOff="false")
            out["screen_video"] = await _decoding(host, 2)
            await host.get_by_test_id("media-panel").screenshot(path=SCREENSHOT)
            out["screen_track"] = await guest.evaluate(
                "() => { const t = window.__consultdMedia.pc().getSenders()"
                ".map((s) => s.track).find((t) => t && t.contentHint === 'detail');"
                " return t ? { hint: t.contentHint, label: t.label } : null; }"
            )
            await expect(guest.get_by_test_id("media-screen")).to_have_attribute(
                "aria-pressed", "true"
            )
            # The browser's own "Stop sharing" ends the track (the event it fires, here).
            await guest.evaluate(
                "() => window.__consultdMedia.pc().getSenders().map((s) => s.track)"
                ".find((t) => t && t.contentHint === 'detail').dispatchEvent(new Event('ended'))"
            )
            await _poll("screen tile gone", lambda: _no_tile(host, guest_id, "screen"))
            await expect(guest.get_by_test_id("media-screen")).to_have_attribute(
                "aria-pressed", "false"
            )
            out["screen_stopped"] = True

            out["t_audio_only"] = time.monotonic() - t0
            # Audio only on the guest's page: it stops sending its camera and receiving video.
            await guest.get_by_test_id("media-audio-only").click()
            await expect(guest.get_by_test_id("media-audio-only")).to_have_attribute(
                "aria-pressed", "true"
            )
            out["host_sees_camera_off"] = await _tile(host, guest_id, videoOff="true")
            out["guest_video_frozen"] = await _poll(
                "guest receives no video", lambda: _frozen(guest)
            )
            await guest.get_by_test_id("media-audio-only").click()
            out["after_audio_only"] = await asyncio.gather(_decoding(host, 1), _decoding(guest, 1))

            # The media path fails (TCP, so the room's socket, is untouched): both pages see
            # ICE go down, try an ICE restart (the server, aiortc, refuses it) and recover on
            # a new transport once the path is back.
            for page in (host, guest):
                await page.evaluate(KEEP_PC_JS)
            out["t_failure"] = time.monotonic() - t0
            _media_path(broken=True)
            try:
                for page in (host, guest):
                    await _poll("ICE down", partial(_media_state, page, "reconnecting"))
                out["t_detected"] = time.monotonic() - t0
            finally:
                _media_path(broken=False)
            out["new_pcs"] = [
                await _poll("a new transport", partial(_new_pc, page)) for page in (host, guest)
            ]
            out["after_failure"] = await asyncio.gather(_decoding(host, 1), _decoding(guest, 1))
            out["t_recovered"] = time.monotonic() - t0
            out["server_restarts_ice"] = [
                (await _stats(page))["state"]["serverRestartsIce"] for page in (host, guest)
            ]

            # The room's socket drops and comes back: the call goes on, on the same transport.
            await guest.evaluate(KEEP_PC_JS)
            out["t_socket_drop"] = time.monotonic() - t0
            await guest.evaluate("() => window.__websockets.forEach((ws) => ws.close())")
            await expect(guest.get_by_test_id("connection-status")).not_to_have_attribute(
                "data-state", "connected", timeout=WAIT_S * 1000
            )
            await expect(guest.get_by_test_id("connection-status")).to_have_attribute(
                "data-state", "connected", timeout=WAIT_S * 1000
            )
            out["t_socket_reconnected"] = time.monotonic() - t0
            out["socket_back_same_pc"] = await guest.evaluate(
                "() => window.__consultdMedia.pc() === window.__oldPc"
            )
            out["after_socket_drop"] = await asyncio.gather(_decoding(host, 1), _decoding(guest, 1))
            out["t_socket_back"] = time.monotonic() - t0

            # The call speaks French too.
            await host.get_by_test_id("lang-select").select_option("fr")
            out["french"] = {
                name: await host.get_by_test_id(f"media-{name}").inner_text()
                for name in ("mute", "screen", "state")
            }
            await host.get_by_test_id("lang-select").select_option("en")

            # Someone speaks: the speaking indicator shows on their tile.
            out["speaker_seen"] = await _speaker_seen([host, guest])

            # The host removes the guest: the guest's media stops at once.
            await guest.evaluate(KEEP_PC_JS)
            person = host.get_by_test_id(f"participant-{guest_id}")
            await person.get_by_role("button", name="Remove").click()
            await expect(guest.get_by_test_id("room-closed")).to_be_visible(timeout=WAIT_S * 1000)
            out["guest_after_removal"] = await guest.evaluate(
                "() => ({ pc: window.__consultdMedia.pc(),"
                " state: window.__consultdMedia.state().state,"
                " old_pc: window.__oldPc.connectionState, devices: window.__oldPc.getSenders()"
                ".map((s) => s.track && s.track.readyState) })"
            )
            await _poll("guest's tiles gone from the host", lambda: _no_tile(host, guest_id))
            out["host_tiles_after_removal"] = await _tiles(host)
        finally:
            out["page_errors"] = errors
            for name, page in (("host", host), ("guest", guest)):
                if not page.is_closed():
                    out[f"{name}_final_state"] = await page.evaluate(
                        "() => window.__consultdMedia && window.__consultdMedia.state()"
                    )
            await browser.close()


async def _no_tile(page: Page, participant: str, source: str | None = None) -> bool:
    return not any(
        t["participant"] == participant and (source is None or t["source"] == source)
        for t in await _tiles(page)
    )


async def _speaker_seen(pages: list[Page]) -> str | None:
    async def seen() -> str | None:
        for page in pages:
            for t in await _tiles(page):
                if t["speaking"] == "true":
                    return str(t["participant"])
        return None

    try:
        who: str = await _poll("a speaking indicator", seen, timeout=8)
    except TimeoutError:
        return None
    return who


def main() -> None:
    data = Path(sys.argv[1])
    srv = ServerProcess(data, env={"CONSULTD_RTC_HOST_ADDRESSES": RTC_ADDRESS}).start()
    result: dict[str, Any] = {}
    try:
        asyncio.run(scenario(srv.url, data, result))
    except Exception as exc:  # reported to the test, which fails with it
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        srv.stop()
        result["server_errors"] = srv.errors_logged()
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
