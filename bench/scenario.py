"""What every scenario module provides, and what it gets and gives back.

A scenario is one module under ``bench/scenarios/`` exposing the ``Scenario`` protocol
(module-level names); ``bench/scenarios/__init__.py`` registers it by name.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from bench.progress import Progress
from bench.spawn import ServerProbe

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Defaults:
    """Default values of the four common parameters for one scenario."""

    rooms: int
    participants: int
    rate: float
    duration: float


@dataclass
class RunContext:
    """What a scenario's ``run`` receives."""

    url: str
    args: argparse.Namespace
    progress: Progress
    probe: ServerProbe | None
    data_dir: Path | None = None  # the spawned server's data dir (None with --url)


@dataclass
class ScenarioResult:
    """What a scenario's ``run`` returns; ``bench.report`` turns it into the JSON object."""

    latency_label: str
    latency_ms: FloatArray
    latency_at_s: FloatArray  # when each sample's event was sent, seconds from phase start
    throughput_per_s: float
    throughput_label: str
    errors: int
    worker_cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Options(Protocol):
    """Where a scenario adds its options (an argparse parser or argument group)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action: ...


class Scenario(Protocol):
    """The module-level interface of a scenario module."""

    NAME: str
    SUMMARY: str
    DEFAULTS: Defaults

    def add_arguments(self, parser: Options) -> None:
        """Add the scenario's own options."""

    def time_budget_s(self, args: argparse.Namespace) -> float:
        """Upper bound of the whole run (set-up + load + tear-down), in seconds."""

    async def run(self, ctx: RunContext) -> ScenarioResult:
        """Set up, drive the load, measure."""
