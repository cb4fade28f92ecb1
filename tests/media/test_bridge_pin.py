"""media/_aiortc_bridge.py reaches into aiortc 1.16.0: fail loudly when an upgrade moves it.

Each private name the bridge uses is checked on live objects (most are instance attributes
set in ``__init__``), and the behaviour the bridge relies on is checked too: aiortc's DTLS
transport calls ``self._handle_rtp_data`` (so an instance attribute shadows it) and its
receivers create their decoder lazily, from ``get_decoder``, inside the decoder thread.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import aioice.ice
import aiortc
import aiortc.rtcdtlstransport
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pylibsrtp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver
from pylibsrtp import _binding

from media import _aiortc_bridge as bridge


def test_aiortc_is_the_pinned_version() -> None:
    assert aiortc.__version__ == bridge.AIORTC_VERSION == "1.16.0", (
        "media/_aiortc_bridge.py was written against aiortc 1.16.0: re-read aiortc's "
        "rtcdtlstransport.py, rtcrtpsender.py, rtcrtpreceiver.py and rtcpeerconnection.py, "
        "re-check every name in PRIVATE_NAMES, then update the pin"
    )


def test_pylibsrtp_is_the_pinned_version() -> None:
    assert pylibsrtp.__version__ == bridge.PYLIBSRTP_VERSION == "1.0.0", (
        "the bridge calls libsrtp on pylibsrtp 1.0.0's Session buffers: re-read "
        "pylibsrtp/__init__.py (Session.__process), then update the pin"
    )


@pytest.fixture
async def transceiver() -> AsyncIterator[RTCRtpTransceiver]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    yield pc.addTransceiver("video", direction="sendonly")
    await pc.close()


async def test_every_private_name_the_bridge_uses_exists(transceiver: RTCRtpTransceiver) -> None:
    dtls = transceiver.receiver.transport
    owners: dict[str, object] = {
        "RTCDtlsTransport": dtls,
        "RtpRouter": dtls._rtp_router,
        "RTCRtpSender": transceiver.sender,
        "RTCRtpTransceiver": transceiver,
        "MediaStreamTrack": bridge.ForwardTrack("video", "x"),
        "RTCIceTransport": dtls.transport,
        "aioice.Connection": dtls.transport._connection,
        "aioice.ice": aioice.ice,
        "pylibsrtp.Session": pylibsrtp.Session(
            pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        ),
        "pylibsrtp._binding.lib": _binding.lib,
    }
    assert set(owners) == set(bridge.PRIVATE_NAMES), "check every owner the bridge lists"
    missing = [
        f"{owner}.{name}"
        for owner, names in bridge.PRIVATE_NAMES.items()
        for name in names
        if not hasattr(owners[owner], name)
    ]
    assert not missing, f"aiortc/aioice no longer have: {missing}"


def test_the_behaviour_the_bridge_relies_on_is_unchanged() -> None:
    dtls_source = inspect.getsource(aiortc.rtcdtlstransport.RTCDtlsTransport)
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in dtls_source
    assert "self._rtp_router.route_rtcp(packet)" in dtls_source
    assert "data = self._tx_srtp.protect(data)" in dtls_source
    assert "await self.transport._send(data)" in dtls_source
    router_source = inspect.getsource(aiortc.rtcdtlstransport.RtpRouter)
    assert "def register_receiver(" in router_source
    receiver_source = inspect.getsource(aiortc.rtcrtpreceiver)
    assert "decoder = get_decoder(codec)" in receiver_source, "decoders are made lazily"
    sender_source = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender)
    assert "data = await self.__track.recv()" in sender_source
    assert "self.__encoder = get_encoder(codec)" in sender_source, "encoders follow recv()"
    for field in bridge._SR_FIELDS:
        assert field.removeprefix("_RTCRtpSender") in sender_source
    ice_source = inspect.getsource(aioice.ice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in ice_source
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in ice_source
    assert "self.transport.sendto(data, addr)" in inspect.getsource(aioice.ice.StunProtocol)
    srtp_source = inspect.getsource(pylibsrtp.Session)
    assert 'self._cdata = ffi.new("char[]", 1500)' in srtp_source
    assert "self._buffer = ffi.buffer(self._cdata)" in srtp_source
    assert "_srtp_assert(func(self._srtp[0], self._cdata, len_p))" in srtp_source


async def test_the_bridge_installs_on_a_dtls_transport(transceiver: RTCRtpTransceiver) -> None:
    dtls = transceiver.receiver.transport
    installed = bridge.DtlsBridge.of(dtls)
    assert bridge.DtlsBridge.of(dtls) is installed, "idempotent"
    assert isinstance(dtls._rtp_router, aiortc.rtcdtlstransport.RtpRouter)
    assert dtls._handle_rtp_data == installed._handle_rtp_data
    assert not installed.send_rtp(b"\x80" * 20), "nothing leaves before DTLS is connected"
    assert installed.dropped_not_connected == 1


def test_ice_host_addresses_are_configurable() -> None:
    try:
        bridge.set_ice_host_addresses(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    finally:
        bridge.set_ice_host_addresses(None)
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
