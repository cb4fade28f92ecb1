"""The server under test: spawn it (``--spawn``) or find it (``--url``), and watch it.

``SpawnedServer`` runs ``python -m consultd serve`` on a free loopback port with a fresh
temporary data dir, waits for ``GET /healthz`` and stops it with SIGTERM. ``ServerProbe``
reads the server's CPU seconds and RSS with psutil (sampled in a thread for the peak) and
its high-water mark (``VmHWM``) from /proc at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import aiohttp
import psutil

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
REPO_ROOT = Path(__file__).resolve().parents[1]


def check_loopback(url: str) -> str:
    """Return ``url`` without a trailing slash; ``ValueError`` unless it is http on loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"--url must be http://127.0.0.1:PORT (load goes to loopback only): {url!r}"
        )
    return url.rstrip("/")


def raise_nofile_limit(want: int = 65536) -> int:
    """Raise the soft open-files limit towards ``want`` (children inherit it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProbe:
    """CPU and memory of the server process (and of any children it forks)."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.pid = pid
        self._proc = psutil.Process(pid)
        self._interval = interval_s
        self._peak_rss = 0
        self._phase_peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.final_cpu_s: float | None = None
        self.final_peak_rss_mb: float | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                rss = self.rss_bytes()
            except psutil.Error:
                return
            self._peak_rss = max(self._peak_rss, rss)
            self._phase_peak_rss = max(self._phase_peak_rss, rss)

    def phase_peak_mb(self) -> float:
        """Peak RSS since the previous call (sampled), in MB; starts the next phase."""
        with contextlib.suppress(psutil.Error):
            self._phase_peak_rss = max(self._phase_peak_rss, self.rss_bytes())
        peak, self._phase_peak_rss = self._phase_peak_rss, 0
        return round(peak / (1024 * 1024), 1)

    def _family(self) -> list[psutil.Process]:
        procs = [self._proc]
        with contextlib.suppress(psutil.Error):
            procs.extend(self._proc.children(recursive=True))
        return procs

    def rss_bytes(self) -> int:
        """Resident memory now, server plus its children."""
        total = 0
        for proc in self._family():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu_s(self) -> float:
        """User + system CPU seconds so far, server plus its children (live and reaped)."""
        if self.final_cpu_s is not None:
            return self.final_cpu_s
        total = 0.0
        for i, proc in enumerate(self._family()):
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
                if i == 0:
                    total += t.children_user + t.children_system
        return total

    def peak_rss_mb(self) -> float:
        """Peak RSS: the sampled peak, or the kernel's ``VmHWM`` when that is higher."""
        if self.final_peak_rss_mb is not None:
            return self.final_peak_rss_mb
        peak = max(self._peak_rss, self._vm_hwm_bytes())
        with contextlib.suppress(psutil.Error):
            peak = max(peak, self.rss_bytes())
        return peak / (1024 * 1024)

    def _vm_hwm_bytes(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    def finish(self) -> None:
        """Freeze the figures (call before the process goes away) and stop sampling."""
        if self.final_cpu_s is None:
            self.final_cpu_s = self.cpu_s()
            self.final_peak_rss_mb = self.peak_rss_mb()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def figures(self) -> dict[str, float]:
        return {"cpu_s": round(self.cpu_s(), 3), "peak_rss_mb": round(self.peak_rss_mb(), 1)}


def attach(url: str) -> ServerProbe | None:
    """Probe the local process listening on ``url``'s port, when it can be seen."""
    port = urlsplit(url).port or 80
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid:
                    return ServerProbe(conn.pid)
    except (psutil.Error, OSError):
        return None
    return None


def _die_with_parent() -> None:
    """preexec: SIGTERM the server if the harness dies (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SpawnedServer:
    """``python -m consultd serve`` on a free loopback port with a fresh data dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._root = Path(tempfile.mkdtemp(prefix="consultd-bench-"))
        self.data_dir = self._root / "data"
        self.data_dir.mkdir()
        self.log_path = self._root / "server.log"
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.probe: ServerProbe | None = None
        self.exit_code: int | None = None
        self.stop_s: float | None = None  # SIGTERM to exit
        self.killed = False

    def start(self) -> None:
        """Start the process (from the main thread: the death signal follows that thread)."""
        env = dict(os.environ)
        if (REPO_ROOT / "consultd").is_dir():
            path = env.get("PYTHONPATH")
            env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable, "-m", "consultd", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        self.probe = ServerProbe(self.proc.pid)
        self.probe.start()

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll ``GET /healthz`` until 200; ``RuntimeError`` if the server exits or is late."""
        assert self.proc is not None
        if await wait_healthy(self.url, self.proc, timeout_s):
            return
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"server exited with {code} before it was ready:\n{self.log_tail()}")
        raise RuntimeError(f"server not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """Freeze the probe's figures, SIGTERM, wait, SIGKILL if needed, remove the temp dir."""
        if self.probe is not None:
            self.probe.finish()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.killed = True
                proc.kill()
                proc.wait(timeout=5)
            self.stop_s = time.monotonic() - t0
        if proc is not None:
            self.exit_code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._root, ignore_errors=True)


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll ``GET url/healthz`` until it answers 200 (True); False once ``proc`` has exited
    or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(
                    url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    if resp.status == 200:
                        return True
            await asyncio.sleep(0.1)
    return False
