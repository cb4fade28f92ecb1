"""Edits of the SFU's answers before they go out; pure functions over SDP text."""

from __future__ import annotations

import ipaddress


def announce_ip(sdp: str, ip: str) -> str:
    """Write ``ip`` into the host candidates (RFC 8839 §5.1) and the ``c=`` lines that name
    their address, as mediasoup's ``announcedIp``: behind a 1:1 NAT the server gathers on
    its private address but clients must send to the public one. The ICE checks still work:
    the server answers each from the socket the check arrived on."""
    lines = sdp.split("\r\n")
    rewritten: set[str] = set()
    for i, line in enumerate(lines):
        if line.startswith("a=candidate:"):
            parts = line.split(" ")
            if len(parts) >= 8 and parts[6] == "typ" and parts[7] == "host":
                rewritten.add(parts[4])
                parts[4] = ip
                lines[i] = " ".join(parts)
    family = "IP6" if ipaddress.ip_address(ip).version == 6 else "IP4"
    for i, line in enumerate(lines):
        if line.startswith("c=IN "):
            parts = line.split(" ")
            if len(parts) == 3 and parts[2] in rewritten:
                lines[i] = f"c=IN {family} {ip}"
    return "\r\n".join(lines)


def ice_credentials(sdp: str) -> frozenset[str]:
    """The ``a=ice-ufrag`` values of an offer (RFC 8839 §5.4): a new one is an ICE restart."""
    return frozenset(
        line[len("a=ice-ufrag:") :].strip()
        for line in sdp.split("\n")
        if line.startswith("a=ice-ufrag:")
    )


def dtls_fingerprints(sdp: str) -> frozenset[str]:
    """The ``a=fingerprint`` values of an offer (RFC 8122 §5): a new RTCPeerConnection has a
    new certificate, an ICE restart keeps its own."""
    return frozenset(
        line[len("a=fingerprint:") :].strip().lower()
        for line in sdp.split("\n")
        if line.startswith("a=fingerprint:")
    )
