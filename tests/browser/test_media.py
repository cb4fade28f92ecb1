"""The video call in the browser, end to end: two headless Chromium pages (fake camera,
microphone and screen) join one room through the UI, pass the device check (preview, level
meter) and enter the call. Each decodes the other's camera (``framesDecoded`` growing, a
real frame size, from ``RTCPeerConnection.getStats()``) and labels its tile with the
other's name; a mute shows on the other page; an observer ("Watch and listen") decodes both
cameras with no publish controls and no sending m-line, and shows in nobody's grid; a
screen share arrives as a second video in a tile labelled as a screen (its track has
``contentHint = "detail"``); audio only stops the camera and the video received, and
undoing it brings both back; when the media path breaks (a blackhole route to the SFU's own
loopback address, the room's socket untouched) both pages try an ICE restart, which the
server (aiortc) refuses, and recover on a new transport once the path is back; a dropped
room socket leaves the call on its transport; the panel speaks French; the speaking
indicator shows; the host removes the guest, whose call stops at once (camera and
microphone released) and whose tiles leave the host's page.

Server and browsers run inside a network namespace holding only ``lo`` (``unshare -n``, or
``unshare -rn`` without root), so no test traffic can leave the machine;
tests/browser/media_netns.py is the scenario, run there, and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, ROOT

pytestmark = pytest.mark.browser

TIMEOUT_S = 150


def _unshare() -> tuple[list[str] | None, str]:
    """The command that makes a network namespace here (as root: ``unshare -n``; otherwise
    inside a user namespace, ``unshare -rn``), or None and why not."""
    if shutil.which("unshare") is None:
        return None, "unshare (util-linux) is not installed"
    if shutil.which("ip") is None:
        return None, "ip (iproute2) is not installed"
    why = ""
    for flags in ("-n", "-rn"):
        cmd = ["unshare", flags, "--"]
        probe = subprocess.run(
            [*cmd, "sh", "-c", "ip link set lo up"], capture_output=True, text=True, timeout=10
        )
        if probe.returncode == 0:
            return cmd, ""
        why = probe.stderr.strip()
    return None, f"no network namespace can be made here (unshare -n / -rn): {why}"


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory, web_client_dist: Path) -> dict[str, Any]:
    unshare, why = _unshare()
    if unshare is None:
        pytest.skip(why)
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is required (scripts/setup.sh --dev installs it)"
    data = tmp_path_factory.mktemp("media-data")
    script = f"ip link set lo up && exec {sys.executable} -m tests.browser.media_netns {data}"
    proc = subprocess.run(
        [*unshare, "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr[-4000:])
    result: dict[str, Any] = json.loads(lines[-1])
    assert "error" not in result, (result, (data / "server.log").read_text()[-4000:])
    return result


def _decoding(entries: list[dict[str, Any]]) -> None:
    assert entries
    for e in entries:
        assert e["after"]["framesDecoded"] > e["before"]["framesDecoded"] > 0, e
        assert e["after"]["frameWidth"] > 0 and e["after"]["frameHeight"] > 0, e


def test_each_page_decodes_the_others_camera_under_their_name(call: dict[str, Any]) -> None:
    _decoding(call["host_video"])
    _decoding(call["guest_video"])
    ids = call["ids"]
    assert call["host_sees"]["participant"] == ids["guest"]
    assert call["host_sees"]["name"] == "Dr Guest"
    assert call["guest_sees"]["participant"] == ids["host"]
    assert call["guest_sees"]["name"] == "Dr Ada Host"
    assert not call["host_sees"]["self"] and not call["guest_sees"]["self"]
    # The host's own tile (its preview) and the guest's.
    assert {(t["participant"], t["self"]) for t in call["host_tiles"]} == {
        (ids["host"], True),
        (ids["guest"], False),
    }


def test_observer_receives_and_does_not_send(call: dict[str, Any]) -> None:
    _decoding(call["observer_video"])
    assert len(call["observer_video"]) == 2
    assert {t["participant"] for t in call["observer_tiles"]} == set(call["ids"].values())
    assert call["observer_controls"] == {
        "mute": False,
        "camera": False,
        "screen": False,
        "audio-only": True,
        "leave": True,
    }
    assert call["observer_state"]["canPublish"] is False
    assert call["observer_senders"] == 0
    observer = call["observer_state"]["self"]
    assert all(t["participant_id"] != observer for t in call["observer_state"]["tracks"])


def test_mute_shows_on_the_other_page(call: dict[str, Any]) -> None:
    assert call["host_sees_muted"]["muted"] == "true"
    assert call["host_sees_unmuted"]["muted"] == "false"


def test_screen_share_is_a_second_video_tile(call: dict[str, Any]) -> None:
    tile = call["screen_tile"]
    assert (tile["participant"], tile["source"], tile["tag"]) == (
        call["ids"]["guest"],
        "screen",
        "Screen",
    )
    assert len(call["screen_video"]) >= 2
    _decoding(call["screen_video"])
    assert call["screen_track"]["hint"] == "detail"
    # Stopped from the browser's own control: the tile left the other page.
    assert call["screen_stopped"] is True


def test_audio_only_stops_video_both_ways_and_comes_back(call: dict[str, Any]) -> None:
    assert call["host_sees_camera_off"]["videoOff"] == "true"
    assert call["guest_video_frozen"] is True
    for side in call["after_audio_only"]:
        _decoding(side)


def test_a_broken_media_path_recovers_on_a_new_transport(call: dict[str, Any]) -> None:
    # Both pages saw ICE go down, asked for an ICE restart, were refused (aiortc cannot),
    # and came back on a new peer connection once the path was restored.
    assert call["new_pcs"] == [True, True]
    assert call["server_restarts_ice"] == [False, False]
    for side in call["after_failure"]:
        _decoding(side)


def test_the_call_outlives_a_dropped_room_socket(call: dict[str, Any]) -> None:
    # The server keeps the transport through the socket's grace period: same connection.
    assert call["socket_back_same_pc"] is True
    for side in call["after_socket_drop"]:
        _decoding(side)


def test_the_call_in_french(call: dict[str, Any]) -> None:
    assert call["french"] == {
        "mute": "Couper le micro",
        "screen": "Partager l'écran",
        "state": "En appel",
    }


def test_speaking_indicator(call: dict[str, Any]) -> None:
    assert call["speaker_seen"] in call["ids"].values()


def test_removal_stops_the_removed_participants_media(call: dict[str, Any]) -> None:
    after = call["guest_after_removal"]
    assert after["pc"] is None and after["state"] == "closed"
    assert after["old_pc"] == "closed"
    assert all(state in (None, "ended") for state in after["devices"]), after
    assert [t["participant"] for t in call["host_tiles_after_removal"]] == [call["ids"]["host"]]


def test_no_errors(call: dict[str, Any]) -> None:
    assert call["page_errors"] == []
    assert call["server_errors"] == ""
