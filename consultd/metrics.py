"""Prometheus metrics (``GET /metrics``)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from consultd.services import Services

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


#: The histogram's bucket bounds as /metrics prints them ("0.1", "2.5", ...).
_BOUNDS = tuple(repr(float(b)) for b in _BUCKETS)


class _Event:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(_BUCKETS) + 1)  # per bucket, not cumulative; +Inf last


class _EventStats(Collector):
    """Per socket.io event: a count, a latency sum and latency buckets, kept as plain
    numbers by ``observe`` (every event: no lock, no loop over buckets) and turned into
    ``consultd_events_total`` and the ``consultd_event_latency_seconds`` histogram only
    when ``/metrics`` is read."""

    def __init__(self) -> None:
        self.by_event: dict[str, _Event] = {}

    def observe(self, event: str, seconds: float) -> None:
        stats = self.by_event.get(event)
        if stats is None:
            stats = self.by_event[event] = _Event()
        stats.count += 1
        stats.total += seconds
        stats.buckets[bisect_left(_BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "consultd_events", "socket.io events handled", labels=["event"]
        )
        latency = HistogramMetricFamily(
            "consultd_event_latency_seconds",
            "Time from receiving a socket.io event to its ack",
            labels=["event"],
        )
        for event, stats in sorted(self.by_event.items()):
            events.add_metric([event], stats.count)
            cumulative, seen = [], 0
            for bound, n in zip(_BOUNDS, stats.buckets, strict=False):
                seen += n
                cumulative.append((bound, float(seen)))
            cumulative.append(("+Inf", float(stats.count)))
            latency.add_metric([event], cumulative, stats.total)
        yield events
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connected = Gauge(
            "consultd_connected_clients", "Open socket.io connections", registry=self.registry
        )
        self.rooms = Gauge(
            "consultd_rooms_loaded", "Rooms with live state in this process", registry=self.registry
        )
        self.events = _EventStats()
        self.registry.register(self.events)
        self.event_rate = Gauge(
            "consultd_events_per_second",
            "socket.io events per second over the last 10 s",
            registry=self.registry,
        )
        self.errors = Counter(
            "consultd_event_errors", "socket.io events refused", ["code"], registry=self.registry
        )
        self.loop_busy = Gauge(
            "consultd_event_loop_busy",
            "Share of wall time the event loop's thread ran, smoothed over about 1 s",
            registry=self.registry,
        )
        self.slow_clients = Counter(
            "consultd_slow_client_disconnects",
            "Clients disconnected for falling too far behind",
            registry=self.registry,
        )
        # One (second, count) bucket per second for the events-per-second gauge.
        self._window: deque[list[int]] = deque(maxlen=11)

    def observe(self, event: str, seconds: float) -> None:
        self.events.observe(event, seconds)
        sec = int(time.monotonic())
        if self._window and self._window[-1][0] == sec:
            self._window[-1][1] += 1
        else:
            self._window.append([sec, 1])

    def refresh(self, services: Services) -> None:
        self.connected.set(services.sockets_open())
        self.rooms.set(len(services.registry.loaded()))
        self.loop_busy.set(services.load.busy)
        now = int(time.monotonic())
        recent = sum(c for s, c in self._window if now - 10 <= s < now)
        self.event_rate.set(recent / 10)
