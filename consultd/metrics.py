"""Prometheus metrics (``GET /metrics``)."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from consultd.services import Services

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connected = Gauge(
            "consultd_connected_clients", "Open socket.io connections", registry=self.registry
        )
        self.rooms = Gauge(
            "consultd_rooms_loaded", "Rooms with live state in this process", registry=self.registry
        )
        self.events = Counter(
            "consultd_events", "socket.io events handled", ["event"], registry=self.registry
        )
        self.event_rate = Gauge(
            "consultd_events_per_second",
            "socket.io events per second over the last 10 s",
            registry=self.registry,
        )
        self.latency = Histogram(
            "consultd_event_latency_seconds",
            "Time from receiving a socket.io event to its ack",
            ["event"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "consultd_event_errors", "socket.io events refused", ["code"], registry=self.registry
        )
        self.slow_clients = Counter(
            "consultd_slow_client_disconnects",
            "Clients disconnected for falling too far behind",
            registry=self.registry,
        )
        self._children: dict[str, tuple[Counter, Histogram]] = {}
        # One (second, count) bucket per second for the events-per-second gauge.
        self._window: deque[list[int]] = deque(maxlen=11)

    def observe(self, event: str, seconds: float) -> None:
        pair = self._children.get(event)
        if pair is None:
            pair = self._children[event] = (self.events.labels(event), self.latency.labels(event))
        pair[0].inc()
        pair[1].observe(seconds)
        sec = int(time.monotonic())
        if self._window and self._window[-1][0] == sec:
            self._window[-1][1] += 1
        else:
            self._window.append([sec, 1])

    def refresh(self, services: Services) -> None:
        self.connected.set(services.sockets_open())
        self.rooms.set(len(services.registry.loaded()))
        now = int(time.monotonic())
        recent = sum(c for s, c in self._window if now - 10 <= s < now)
        self.event_rate.set(recent / 10)
