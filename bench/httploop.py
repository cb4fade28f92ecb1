"""One keep-alive HTTP client asking for one URL after another, as fast as answers come.

Used by the imaging bench against consultd and Orthanc alike: the same client, the same
connection reuse, the same accounting. A request's latency runs from the call to the last
byte of the body; a request counts only with status 200, the expected content type and a
non-empty body (anything else is an error, by kind).
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from bench import stats
from bench.pool import own_cpu_s
from bench.progress import Progress

PROGRESS_EVERY = 25
REQUEST_TIMEOUT_S = 60.0


def keep_alive_session() -> aiohttp.ClientSession:
    """One connection, kept alive; bodies as sent (a gzipped answer is not inflated, so the
    time is the server's and the wire's, not the client's zlib)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1, force_close=False),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


@dataclass
class LoopResult:
    lat_ns: array[int] = field(default_factory=lambda: array("q"))
    at_ns: array[int] = field(default_factory=lambda: array("q"))  # from the loop's start
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    body_bytes: int = 0
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    last_body: bytes = b""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def req_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def latency_ms(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.frombuffer(self.lat_ns, dtype=np.int64).astype(np.float64) / 1e6

    def at_s(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.frombuffer(self.at_ns, dtype=np.int64).astype(np.float64) / 1e9

    def summary(self) -> dict[str, Any]:
        n = max(self.ok, 1)
        return {
            "requests": self.ok,
            "errors": dict(self.errors),
            "seconds": round(self.wall_s, 3),
            "req_per_s": round(self.req_per_s, 1),
            "latency_ms": stats.percentiles(self.latency_ms()),
            "mean_body_bytes": round(self.body_bytes / n),
            "client_cpu_ms_per_request": round(self.client_cpu_s * 1e3 / n, 3),
            "server_cpu_ms_per_request": (
                round(self.server_cpu_s * 1e3 / n, 3) if self.server_cpu_s is not None else None
            ),
        }


async def request_loop(
    session: aiohttp.ClientSession,
    url_of: Callable[[int], str],
    *,
    headers: Mapping[str, str],
    content_type: str,
    duration_s: float | None,
    max_requests: int | None = None,
    progress: Progress | None = None,
    server_cpu: Callable[[], float] | None = None,
) -> LoopResult:
    """GET ``url_of(0)``, ``url_of(1)``, ... one at a time until ``duration_s`` has passed or
    ``max_requests`` were sent (at least one of the two must be given). ``progress`` moves
    in seconds when there is a duration (open its phase with ``total=duration_s``), else in
    requests."""
    if duration_s is None and max_requests is None:
        raise ValueError("a request loop needs a duration or a request count")
    out = LoopResult()
    cpu0, srv0 = own_cpu_s(), (server_cpu() if server_cpu else None)
    start = time.perf_counter_ns()
    end = start + int(duration_s * 1e9) if duration_s is not None else None
    k = 0
    shown = 0.0  # progress already shown: seconds or requests

    def show() -> None:
        nonlocal shown
        if progress is None:
            return
        now = (time.perf_counter_ns() - start) / 1e9 if end is not None else float(k)
        progress.update(now - shown)
        progress.set_postfix(f"{out.ok} ok")
        shown = now

    while (max_requests is None or k < max_requests) and (
        end is None or time.perf_counter_ns() < end
    ):
        url = url_of(k)
        k += 1
        t0 = time.perf_counter_ns()
        try:
            async with session.get(url, headers=headers) as resp:
                body = await resp.read()
                status, ctype = resp.status, resp.content_type
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            out.errors[type(exc).__name__] += 1
            continue
        t1 = time.perf_counter_ns()
        if status != 200:
            out.errors[f"http_{status}"] += 1
        elif not ctype.startswith(content_type):
            out.errors[f"type_{ctype}"] += 1
        elif not body:
            out.errors["empty_body"] += 1
        else:
            out.ok += 1
            out.body_bytes += len(body)
            out.lat_ns.append(t1 - t0)
            out.at_ns.append(t0 - start)
            out.last_body = body
        if k % PROGRESS_EVERY == 0:
            show()
    out.wall_s = (time.perf_counter_ns() - start) / 1e9
    out.client_cpu_s = own_cpu_s() - cpu0
    if server_cpu is not None and srv0 is not None:
        out.server_cpu_s = server_cpu() - srv0
    show()
    return out
