"""The SFU and its aiortc test peers gather ICE on loopback (aioice skips 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from media import set_ice_host_addresses


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    set_ice_host_addresses(["127.0.0.1"])
    yield
    set_ice_host_addresses(None)
