"""Worker processes of the load generator, coordinated by the parent over pipes.

One process cannot drive a thousand sockets and keep its timestamps honest, so the
simulated participants live in ``--workers`` processes (spawn context, one event loop
each). Messages on a pipe are ``(kind, payload)`` tuples. A worker's last message is
``("cpu", seconds)``, sent by the bootstrap after the scenario's function returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import resource
import time
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

Message = tuple[str, Any]
POLL_S = 0.01


class WorkerError(RuntimeError):
    """A worker died, failed or did not answer in time."""


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class WorkerLink:
    """The worker's end of its pipe."""

    def __init__(self, conn: Connection, index: int) -> None:
        self.conn = conn
        self.index = index

    def send(self, kind: str, payload: Any = None) -> None:
        self.conn.send((kind, payload))

    async def recv(self, kind: str, timeout_s: float) -> Any:
        """Wait for the parent's next message, which must be of ``kind``."""
        deadline = time.monotonic() + timeout_s
        while not self.conn.poll():
            if time.monotonic() > deadline:
                raise WorkerError(f"worker {self.index}: no {kind!r} from the parent")
            await asyncio.sleep(POLL_S)
        got, payload = self.conn.recv()
        if got != kind:
            raise WorkerError(f"worker {self.index}: expected {kind!r}, got {got!r}")
        return payload


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a worker's main coroutine, on uvloop where it is installed (as the server
    runs): asyncio's own loop was a fifth of a worker's CPU, on the cores the server
    shares."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed except on Windows
        asyncio.run(main)
    else:
        uvloop.run(main)


def _bootstrap(target: Callable[[WorkerLink], None], conn: Connection, index: int) -> None:
    link = WorkerLink(conn, index)
    # A worker must not be what the latency measures: with the default thresholds its
    # full collections (all the send records it keeps) stalled its loop up to 240 ms.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 100, 100)
    try:
        target(link)
    except BaseException as exc:  # report, then die: the parent counts it as a failure
        with contextlib.suppress(OSError, ValueError):
            link.send("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        with contextlib.suppress(OSError, ValueError):
            link.send("cpu", own_cpu_s())
            conn.close()


class WorkerPool:
    """``n`` worker processes running ``target(link)``; the parent talks to each by index."""

    def __init__(self, target: Callable[[WorkerLink], None], n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[BaseProcess] = []
        self._child_ends: list[Connection] = []
        self.cpu_s: list[float] = [0.0] * n
        for i in range(n):
            parent_end, child_end = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=_bootstrap, args=(target, child_end, i), name=f"bench-worker-{i}"
            )
            proc.daemon = True
            self._conns.append(parent_end)
            self._child_ends.append(child_end)
            self._procs.append(proc)

    def __len__(self) -> int:
        return len(self._procs)

    def start(self) -> None:
        for proc in self._procs:
            proc.start()
        for conn in self._child_ends:  # the child holds its end now: EOF shows a dead worker
            conn.close()
        self._child_ends.clear()

    def send(self, index: int, kind: str, payload: Any = None) -> None:
        self._conns[index].send((kind, payload))

    def broadcast(self, kind: str, payload: Any = None) -> None:
        for i in range(len(self._conns)):
            self.send(i, kind, payload)

    def _take(self, index: int) -> Message | None:
        conn = self._conns[index]
        try:
            if not conn.poll():
                return None
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return None
        if kind == "cpu":
            self.cpu_s[index] = float(payload)
        elif kind == "failed":
            raise WorkerError(f"worker {index} failed: {payload}")
        return kind, payload

    async def gather(
        self,
        kind: str,
        timeout_s: float,
        on_message: Callable[[int, Message], None] | None = None,
    ) -> list[Any]:
        """One ``kind`` message from every worker; other messages go to ``on_message``."""
        results: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        while len(results) < len(self._conns):
            for i in range(len(self._conns)):
                if i in results:
                    continue
                while (msg := self._take(i)) is not None:
                    if msg[0] == kind:
                        results[i] = msg[1]
                        break
                    if on_message is not None:
                        on_message(i, msg)
                if i not in results and not self._procs[i].is_alive() and not self._conns[i].poll():
                    raise WorkerError(f"worker {i} exited (code {self._procs[i].exitcode})")
            if len(results) < len(self._conns):
                if time.monotonic() > deadline:
                    missing = sorted(set(range(len(self._conns))) - set(results))
                    raise WorkerError(f"no {kind!r} from workers {missing} in time")
                await asyncio.sleep(POLL_S)
        return [results[i] for i in range(len(self._conns))]

    async def close(self, timeout_s: float = 10.0) -> None:
        """Let the workers finish (reading their CPU figure), then end any that linger."""
        deadline = time.monotonic() + timeout_s
        while any(p.is_alive() for p in self._procs) and time.monotonic() < deadline:
            for i in range(len(self._conns)):
                with contextlib.suppress(WorkerError):
                    while self._take(i) is not None:
                        pass
            await asyncio.sleep(POLL_S * 5)
        for i in range(len(self._conns)):
            with contextlib.suppress(WorkerError):
                while self._take(i) is not None:
                    pass
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=3)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=3)
        for conn in self._conns:
            conn.close()
