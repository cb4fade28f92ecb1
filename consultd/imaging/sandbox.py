"""A pool of worker processes for untrusted imaging work, with hard per-worker limits.

Each worker is a process of its own (forkserver context: forked from a small preloaded server
process, never from the aiohttp server) that sets RLIMIT_AS (address space) and RLIMIT_CPU
(re-armed per task) before it runs anything. A task that exceeds its wall-clock timeout, hits
the memory limit or kills its process (segfault, abort, SIGXCPU) fails with
:class:`WorkerLimitExceeded`; its worker is killed and replaced while the other workers keep
going, so the pool never ends up "broken" the way ``ProcessPoolExecutor`` does.

The event loop never blocks on a worker: each one talks over a socketpair read by an asyncio
protocol (framing compatible with ``multiprocessing.connection``, which the worker side uses),
and process exit is watched through the process sentinel. Process start and reaping go
through one helper thread, since multiprocessing's bookkeeping is not thread-safe.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import multiprocessing
import os
import pickle
import resource
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, Literal, TypeVar, TypeVarTuple, cast

from consultd.imaging.limits import ImagingLimits

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
LimitKind = Literal["memory", "time", "crash"]

#: Modules the forkserver imports once, so a new worker starts in ~30 ms with them loaded (the
#: imaging worker functions; a missing one is skipped). Measured: a worker maps ~145 MiB with
#: ingest's imports, ~315 MiB with all four (OpenCV), against a 2 GiB RLIMIT_AS.
DEFAULT_PRELOAD: tuple[str, ...] = (
    "consultd.imaging.ingest",
    "consultd.imaging.pixels",
    "consultd.imaging.render",
    "consultd.imaging.photos",
)

#: Environment of the forkserver (and so of every worker), set only where the operator has not.
#: One BLAS thread keeps the inherited address space small (each OpenBLAS thread maps its own
#: buffers, which would count against RLIMIT_AS on a many-core host); two malloc arenas likewise.
WORKER_ENV: dict[str, str] = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}

_OK, _ERR, _MEM = 0, 1, 2
_SPAWN_RETRY_S = 1.0


class PoolError(Exception):
    """Base of the pool's own errors."""


class PoolBusy(PoolError):
    """Every worker is busy and the wait queue is full; retry later (HTTP 503)."""


class PoolClosed(PoolError):
    """The pool was closed before the task ran or finished."""


class RemoteError(PoolError):
    """A task raised an exception that could not be pickled back; carries its text."""


class WorkerLimitExceeded(PoolError):
    """A task ran out of memory or time, or its worker process died; the worker was replaced.

    ``kind`` is ``"memory"`` (MemoryError under RLIMIT_AS), ``"time"`` (wall timeout or
    RLIMIT_CPU) or ``"crash"`` (the process died some other way: a signal, an abort).
    """

    def __init__(self, kind: LimitKind, detail: str) -> None:
        super().__init__(f"worker {kind} limit: {detail}")
        self.kind: LimitKind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Counters since the pool was created."""

    size: int
    idle: int
    queued: int
    completed: int
    replaced: int
    memory: int
    time: int
    crash: int


# --------------------------------------------------------------------------------------------
# Worker side


def _arm_cpu_limit(seconds: int) -> None:
    """RLIMIT_CPU counts the process's whole life, so re-arm it as "used so far + seconds"."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _set_hard_limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _worker_main(
    conn: Connection,
    address_space: int,
    cpu_seconds: int,
    initializer: Callable[[], None] | None,
) -> None:
    """Body of a worker process: apply limits, then run tasks until the parent hangs up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is the parent's business
    _set_hard_limit(resource.RLIMIT_CORE, 0)
    _set_hard_limit(resource.RLIMIT_AS, address_space)
    if initializer is not None:
        initializer()
    # Built before any task: after a MemoryError there may be no room to build it.
    mem_msg = pickle.dumps((_MEM, None, ""))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        _arm_cpu_limit(cpu_seconds)
        out: tuple[int, Any, str] | None
        try:
            func, args = pickle.loads(data)
            out = (_OK, func(*args), "")
        except MemoryError:
            out = None
        except BaseException as exc:  # a task's failure is reported, the worker carries on
            out = (_ERR, exc, traceback.format_exc())
        try:
            payload = mem_msg if out is None else pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            out, payload = None, mem_msg
        except Exception as exc:  # unpicklable result or exception
            err = RemoteError(f"{type(exc).__name__} while pickling the task's outcome")
            payload = pickle.dumps((_ERR, err, out[2] if out else ""))
        try:
            conn.send_bytes(payload)
        except OSError:
            return
        if out is None:  # after a MemoryError the heap may be fragmented: let a fresh one serve
            os._exit(0)


# --------------------------------------------------------------------------------------------
# Parent side

_proc_executor: ThreadPoolExecutor | None = None
_forkserver_lock = threading.Lock()


def _proc_thread() -> ThreadPoolExecutor:
    """The one thread that starts and reaps worker processes (multiprocessing's child list and
    a forkserver Popen's sentinel reads are not safe to touch from two threads)."""
    global _proc_executor
    if _proc_executor is None:
        _proc_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imaging-procs")
    return _proc_executor


def _start_forkserver(preload: Sequence[str]) -> None:
    """Start multiprocessing's forkserver with our preload list and worker environment.

    The forkserver is one per process: if something else started it already, our workers
    still work, they just import their modules themselves and may map more memory.
    """
    from multiprocessing import forkserver

    with _forkserver_lock:
        if getattr(forkserver._forkserver, "_forkserver_pid", None) is not None:
            return
        # '__main__' first, as multiprocessing's default: otherwise each child re-imports the
        # server's entry script (and everything it imports) on start.
        forkserver.set_forkserver_preload(["__main__", *preload])
        added = {k: v for k, v in WORKER_ENV.items() if k not in os.environ}
        os.environ.update(added)  # inherited by the forkserver at exec, then restored
        try:
            forkserver.ensure_running()
        finally:
            for key in added:
                os.environ.pop(key, None)


class _Task:
    __slots__ = ("fut", "payload", "timeout")

    def __init__(self, fut: asyncio.Future[Any], payload: bytes, timeout: float) -> None:
        self.fut = fut
        self.payload = payload
        self.timeout = timeout


class _Worker:
    __slots__ = (
        "exited",
        "failure",
        "index",
        "link_lost",
        "proc",
        "task",
        "timer",
        "transport",
    )

    def __init__(self, index: int, proc: BaseProcess) -> None:
        self.index = index
        self.proc = proc
        self.transport: asyncio.Transport | None = None
        self.task: _Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.link_lost = False
        self.exited = False
        self.failure: WorkerLimitExceeded | None = None  # set when we killed it for a reason


class _Link(asyncio.Protocol):
    """Reads ``multiprocessing.connection`` frames (4-byte signed big-endian length; -1 then
    an 8-byte length for payloads over 2 GiB) from one worker's socket."""

    def __init__(self, pool: WorkerPool, worker: _Worker) -> None:
        self._pool = pool
        self._worker = worker
        self._buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= 4:
            size = int.from_bytes(buf[:4], "big", signed=True)
            head = 4
            if size == -1:
                if len(buf) < 12:
                    return
                size = int.from_bytes(buf[4:12], "big")
                head = 12
            if len(buf) < head + size:
                return
            msg = bytes(buf[head : head + size])
            del buf[: head + size]
            self._pool._on_message(self._worker, msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool._on_link_lost(self._worker)


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    if n > 0x7FFFFFFF:
        return (-1).to_bytes(4, "big", signed=True) + n.to_bytes(8, "big") + payload
    return n.to_bytes(4, "big", signed=True) + payload


class WorkerPool:
    """``size`` sandboxed worker processes running picklable module-level functions.

    ``await pool.run(func, *args, timeout=...)`` runs ``func(*args)`` in a worker and returns
    its result or re-raises its exception (with the remote traceback as a note). Tasks wait in
    a FIFO queue of at most ``queue_size`` when every worker is busy; beyond that ``run``
    raises :class:`PoolBusy` at once. ``timeout`` (default ``limits.task_timeout_s``) counts
    from the moment a worker takes the task. Cancelling the caller drops a queued task; a
    running one finishes (or times out) in its worker and its result is discarded.
    """

    def __init__(
        self,
        size: int,
        limits: ImagingLimits,
        *,
        queue_size: int = 1024,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        initializer: Callable[[], None] | None = None,
        name: str = "imaging",
    ) -> None:
        if size < 1 or queue_size < 0:
            raise ValueError("size must be >= 1 and queue_size >= 0")
        self.size = size
        self.limits = limits
        self.queue_size = queue_size
        self._preload = tuple(preload)
        self._initializer = initializer
        self._name = name
        self._ctx: ForkServerContext | SpawnContext
        if "forkserver" in multiprocessing.get_all_start_methods():
            self._ctx = multiprocessing.get_context("forkserver")
        else:  # pragma: no cover - not Linux
            self._ctx = multiprocessing.get_context("spawn")
        self._method = self._ctx.get_start_method()
        self._workers: dict[int, _Worker] = {}
        self._idle: collections.deque[_Worker] = collections.deque()
        self._queue: collections.deque[_Task] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: asyncio.Future[None] | None = None
        self._closed = False
        self._spawning: set[asyncio.Task[None]] = set()
        self._exit_waiters: dict[int, asyncio.Future[None]] = {}
        self._completed = 0
        self._replaced = 0
        self._kinds: dict[LimitKind, int] = {"memory": 0, "time": 0, "crash": 0}

    # -- public ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers (``run`` does it on first use); returns when all are up."""
        if self._closed:
            raise PoolClosed("pool is closed")
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._loop = loop
            self._started = loop.create_future()
            try:
                if self._method == "forkserver":
                    await loop.run_in_executor(_proc_thread(), _start_forkserver, self._preload)
                await asyncio.gather(*(self._spawn(i) for i in range(self.size)))
            except BaseException as exc:
                started, self._started = self._started, None  # a later call may retry
                started.set_exception(exc)
                started.exception()  # retrieved here; concurrent callers get it re-raised
                raise
            self._started.set_result(None)
            return
        await asyncio.shield(self._started)

    # ``timeout`` is the deadline at which the worker gets killed, which asyncio.timeout
    # around the call could not do (it would only stop waiting).
    async def run(
        self,
        func: Callable[[*Ts], T],
        *args: *Ts,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> T:
        """Run ``func(*args)`` in a worker; see the class docstring for the rules."""
        if self._closed:
            raise PoolClosed("pool is closed")
        if self._started is None or not self._started.done():
            await self.start()
        loop = self._loop
        assert loop is not None
        if len(self._queue) >= self.queue_size and not self._idle:
            raise PoolBusy(f"{self.size} workers busy and {len(self._queue)} tasks waiting")
        payload = _frame(pickle.dumps((func, args), pickle.HIGHEST_PROTOCOL))
        task = _Task(loop.create_future(), payload, timeout or self.limits.task_timeout_s)
        self._queue.append(task)
        self._dispatch()
        try:
            return cast(T, await task.fut)
        finally:
            # The caller was cancelled (which cancels task.fut too): drop it if still queued.
            if task.fut.cancel() or task.fut.cancelled():
                with contextlib.suppress(ValueError):
                    self._queue.remove(task)

    async def close(self, grace_s: float = 2.0) -> None:
        """Fail waiting and running tasks with :class:`PoolClosed` and stop every worker.

        Workers hold nothing worth finishing: losing its link, each is killed at once;
        ``grace_s`` bounds the wait for starts in flight and for the exits to be seen."""
        if self._closed:
            return
        self._closed = True
        if self._spawning:  # let starts in flight finish: they see _closed and hang up
            _done, slow = await asyncio.wait(list(self._spawning), timeout=grace_s)
            for pending_start in slow:
                pending_start.cancel()
        for task in self._queue:
            _fail(task.fut, PoolClosed("pool closed"))
        self._queue.clear()
        self._idle.clear()
        workers = list(self._workers.values())
        for w in workers:
            if w.task is not None:
                _fail(w.task.fut, PoolClosed("pool closed"))
                w.task = None
            self._cancel_timer(w)
            if w.transport is not None:
                w.transport.close()  # link lost -> killed (see _on_link_lost)
        waiters = [self._exit_waiters[w.index] for w in workers if w.index in self._exit_waiters]
        if waiters:
            _exited, pending = await asyncio.wait(waiters, timeout=grace_s)
            if pending:
                for w in workers:
                    if not w.exited:
                        w.proc.kill()
                await asyncio.wait(pending, timeout=grace_s)

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> PoolStats:
        return PoolStats(
            size=self.size,
            idle=len(self._idle),
            queued=len(self._queue),
            completed=self._completed,
            replaced=self._replaced,
            memory=self._kinds["memory"],
            time=self._kinds["time"],
            crash=self._kinds["crash"],
        )

    def worker_pids(self) -> list[int]:
        """Pids of the live workers (for tests and diagnostics)."""
        return [w.proc.pid for w in self._workers.values() if w.proc.pid and not w.exited]

    # -- workers -----------------------------------------------------------------------------

    async def _spawn(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        parent_sock, child_sock = socket.socketpair()
        child_conn = Connection(child_sock.detach())
        proc = self._ctx.Process(
            target=_worker_main,
            args=(
                child_conn,
                self.limits.worker_address_space_bytes,
                self.limits.worker_cpu_seconds,
                self._initializer,
            ),
            name=f"{self._name}-worker-{index}",
            daemon=True,
        )
        try:
            await loop.run_in_executor(_proc_thread(), proc.start)
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_conn.close()  # the child has its own copy now; ours would hide its EOF
        worker = _Worker(index, proc)
        self._workers[index] = worker
        self._exit_waiters[index] = loop.create_future()
        loop.add_reader(proc.sentinel, self._on_sentinel, worker)
        transport, _proto = await loop.connect_accepted_socket(
            lambda: _Link(self, worker), parent_sock
        )
        worker.transport = transport
        if self._closed:
            worker.transport.close()
            return
        if worker.link_lost:  # died before we even connected: its exit handler takes over
            return
        self._idle.append(worker)
        self._dispatch()

    def _respawn(self, index: int) -> None:
        if self._closed:
            return
        self._replaced += 1
        t = asyncio.ensure_future(self._respawn_loop(index))
        self._spawning.add(t)
        t.add_done_callback(self._spawning.discard)

    async def _respawn_loop(self, index: int) -> None:
        while not self._closed:
            try:
                await self._spawn(index)
                return
            except (OSError, ValueError, RuntimeError):  # forkserver gone, fds exhausted, ...
                log.exception("imaging worker %d could not be started; retrying", index)
                await asyncio.sleep(_SPAWN_RETRY_S)

    def _dispatch(self) -> None:
        while self._idle and self._queue:
            task = self._queue.popleft()
            if task.fut.done():  # cancelled while waiting
                continue
            worker = self._idle.popleft()
            transport = worker.transport
            if worker.exited or transport is None or transport.is_closing():
                self._queue.appendleft(task)
                continue
            worker.task = task
            loop = self._loop
            assert loop is not None
            worker.timer = loop.call_later(task.timeout, self._on_timeout, worker)
            transport.write(task.payload)

    def _cancel_timer(self, worker: _Worker) -> None:
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None

    def _kill(self, worker: _Worker, failure: WorkerLimitExceeded) -> None:
        """Fail the worker's task with ``failure`` and kill it; its exit handler respawns."""
        self._cancel_timer(worker)
        self._kinds[failure.kind] += 1
        worker.failure = failure
        if worker.task is not None:
            _fail(worker.task.fut, failure)
            worker.task = None
        with contextlib.suppress(ValueError, OSError):
            worker.proc.kill()

    def _on_timeout(self, worker: _Worker) -> None:
        worker.timer = None
        if worker.task is None:  # pragma: no cover - the result won the race
            return
        timeout = worker.task.timeout
        self._kill(worker, WorkerLimitExceeded("time", f"task ran over {timeout:g} s"))

    def _on_message(self, worker: _Worker, msg: bytes) -> None:
        task = worker.task
        if task is None:  # a late answer from a worker we already gave up on
            return
        try:
            status, value, tb = pickle.loads(msg)
        except Exception as exc:  # pragma: no cover - our own framing; defensive
            self._kill(worker, WorkerLimitExceeded("crash", f"unreadable answer: {exc!r}"))
            return
        if status == _MEM:
            self._kill(worker, WorkerLimitExceeded("memory", "task exhausted its memory limit"))
            return
        self._cancel_timer(worker)
        worker.task = None
        self._completed += 1
        if not task.fut.done():
            if status == _OK:
                task.fut.set_result(value)
            else:
                if isinstance(value, BaseException):
                    if tb:
                        value.add_note(f"Traceback in the worker process:\n{tb}")
                    task.fut.set_exception(value)
                else:  # pragma: no cover - defensive
                    task.fut.set_exception(RemoteError(repr(value)))
        if not self._closed:
            self._idle.append(worker)
            self._dispatch()

    def _on_link_lost(self, worker: _Worker) -> None:
        worker.link_lost = True
        if not worker.exited:
            with contextlib.suppress(ValueError, OSError):
                worker.proc.kill()  # a worker we cannot talk to is of no use
        self._maybe_finalize(worker)

    def _on_sentinel(self, worker: _Worker) -> None:
        loop = self._loop
        assert loop is not None
        loop.remove_reader(worker.proc.sentinel)
        fut = loop.run_in_executor(_proc_thread(), _reap, worker.proc)
        fut.add_done_callback(lambda f: self._on_reaped(worker, f))

    def _on_reaped(self, worker: _Worker, fut: asyncio.Future[int | None]) -> None:
        worker.exited = True
        code = None if fut.cancelled() or fut.exception() else fut.result()
        if worker.failure is None and worker.task is not None:
            self._kill_classified(worker, code)
        waiter = self._exit_waiters.get(worker.index)
        self._maybe_finalize(worker)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _kill_classified(self, worker: _Worker, code: int | None) -> None:
        """The worker died on its own during a task: say how."""
        if code is not None and code < 0:
            sig = -code
            name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
            if sig == signal.SIGXCPU:
                failure = WorkerLimitExceeded("time", "task exhausted its CPU limit (SIGXCPU)")
            else:
                failure = WorkerLimitExceeded("crash", f"worker killed by {name}")
        else:
            failure = WorkerLimitExceeded("crash", f"worker exited with status {code}")
        self._kill(worker, failure)

    def _maybe_finalize(self, worker: _Worker) -> None:
        """Once the process has exited and its socket is drained, replace it."""
        if not (worker.exited and worker.link_lost):
            return
        if self._workers.get(worker.index) is not worker:
            return
        del self._workers[worker.index]
        self._cancel_timer(worker)
        if worker.task is not None:  # died between messages without us seeing an exit code
            self._kill_classified(worker, None)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        self._respawn(worker.index)


def _reap(proc: BaseProcess) -> int | None:
    proc.join(0)
    code = proc.exitcode
    if code is not None:
        with contextlib.suppress(ValueError):
            proc.close()
    return code


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
