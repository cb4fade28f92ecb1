"""Media settings: parsed and checked at start-up, with the setting named in the error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from consultd.calls.config import IceServer, MediaConfig
from consultd.config import Settings
from tests.utils import ROOT


def test_defaults_reach_nothing_outside() -> None:
    c = MediaConfig.from_settings(Settings())
    assert c == MediaConfig()
    assert c.ice_servers == () and c.host_addresses is None and c.port_range is None
    assert (c.max_publishers, c.max_bitrate) == (16, 20_000_000)


def test_every_setting_is_parsed() -> None:
    ice = (
        '[{"urls": "stun:stun.example.org:3478"},'
        ' {"urls": ["turns:turn.example.org:443?transport=tcp"], "username": "u",'
        ' "credential": "p"}]'
    )
    c = MediaConfig.from_settings(
        Settings(
            ice_servers=ice,
            rtc_host_addresses="10.0.0.5, ::1",
            rtc_announced_ip="203.0.113.9",
            rtc_ports="40000-40999",
            max_publishers=4,
            room_max_bitrate=5_000_000,
        )
    )
    assert c.ice_servers == (
        IceServer(("stun:stun.example.org:3478",)),
        IceServer(("turns:turn.example.org:443?transport=tcp",), "u", "p"),
    )
    assert c.ice_servers[1].to_wire() == {
        "urls": ["turns:turn.example.org:443?transport=tcp"],
        "username": "u",
        "credential": "p",
    }
    assert c.host_addresses == ("10.0.0.5", "::1")
    assert c.announced_ip == "203.0.113.9"
    assert c.port_range == (40000, 40999)
    assert (c.max_publishers, c.max_bitrate) == (4, 5_000_000)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("ice_servers", "stun:x", "ice_servers"),
        ("ice_servers", '{"urls": "stun:x"}', "ice_servers"),
        ("ice_servers", '[{"urls": "http://x"}]', "ice_servers"),
        ("ice_servers", '[{"urls": []}]', "ice_servers"),
        ("ice_servers", '[{"urls": "turn:x"}]', "username"),
        ("ice_servers", '[{"urls": "stun:x", "password": "p"}]', "ice_servers"),
        ("rtc_host_addresses", "eth0", "rtc_host_addresses"),
        ("rtc_announced_ip", "example.org", "rtc_announced_ip"),
        ("rtc_ports", "40000", "rtc_ports"),
        ("rtc_ports", "50000-40000", "rtc_ports"),
        ("rtc_ports", "80-90", "rtc_ports"),
        ("max_publishers", -1, "max_publishers"),
        ("room_max_bitrate", 500, "room_max_bitrate"),
    ],
)
def test_a_bad_setting_is_named(field: str, value: object, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        MediaConfig.from_settings(Settings(**{field: value}))  # type: ignore[arg-type]


def test_the_server_refuses_to_start_with_a_bad_setting() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "consultd", "serve", "--port", "0", "--rtc-ports", "9-8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"CONSULTD_ICE_SERVERS": "[]", "PATH": ""},
    )
    assert run.returncode == 2
    assert "rtc_ports (CONSULTD_RTC_PORTS)" in run.stderr
