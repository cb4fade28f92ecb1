"""``announce_ip``: host candidates and their c= lines carry the announced address."""

from __future__ import annotations

from consultd.calls.sdp import announce_ip, ice_credentials

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "m=video 40123 UDP/TLS/RTP/SAVPF 97",
        "c=IN IP4 10.0.0.5",
        "a=candidate:1 1 udp 2130706431 10.0.0.5 40123 typ host",
        "a=candidate:2 1 udp 1694498815 198.51.100.1 40123 typ srflx raddr 10.0.0.5 rport 1",
        "a=end-of-candidates",
        "",
    ]
)


def test_host_candidates_and_their_connection_line_are_rewritten() -> None:
    out = announce_ip(ANSWER, "203.0.113.9")
    assert "a=candidate:1 1 udp 2130706431 203.0.113.9 40123 typ host" in out
    assert "c=IN IP4 203.0.113.9" in out
    # Other candidate types and lines are left as they are.
    assert "198.51.100.1 40123 typ srflx raddr 10.0.0.5" in out
    assert out.count("\r\n") == ANSWER.count("\r\n")
    assert announce_ip(ANSWER, "2001:db8::1").count("c=IN IP6 2001:db8::1") == 1


def test_ice_credentials_of_an_offer() -> None:
    offer = "v=0\r\nm=audio 9 x 0\r\na=ice-ufrag:abcd\r\nm=video 9 x 0\r\na=ice-ufrag:abcd\r\n"
    assert ice_credentials(offer) == {"abcd"}
    assert ice_credentials("v=0\r\n") == frozenset()
