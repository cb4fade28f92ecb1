"""The scenario registry: name -> module. Each later scenario adds one line and one module."""

from __future__ import annotations

import importlib
from typing import cast

from bench.scenario import Scenario

SCENARIOS: dict[str, str] = {
    "join-chat": "bench.scenarios.join_chat",
    "annotations": "bench.scenarios.annotations",
    "imaging": "bench.scenarios.imaging",
    "media": "bench.scenarios.media",
}


def load(name: str) -> Scenario:
    """Import the scenario module registered under ``name`` (``KeyError`` when unknown)."""
    return cast(Scenario, importlib.import_module(SCENARIOS[name]))


def load_all() -> list[Scenario]:
    return [load(name) for name in SCENARIOS]
