"""Orthanc for the imaging bench's side-by-side comparison (Debian's ``orthanc``,
``orthanc-dicomweb`` and ``orthanc-gdcm`` packages).

``Orthanc`` writes a JSON configuration into a temporary directory and runs
``/usr/sbin/Orthanc`` with it: HTTP on a free port, the DICOM server, WebDAV, Lua and the
Explorer off, storage and index in the temporary directory, only the DICOMweb and GDCM
plugins loaded. Orthanc cannot bind to one interface, so it listens on every address;
``RemoteAccessAllowed: false`` makes it answer loopback clients only (with authentication
off it would otherwise serve anyone who can reach the port). It is stopped by its pid
(SIGTERM, then SIGKILL) and its directory removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import aiohttp
import psutil

from bench.spawn import _die_with_parent, free_port

BINARIES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
PLUGINS = {"dicomweb": "libOrthancDicomWeb.so", "gdcm": "libOrthancGdcm.so"}
DICOMWEB_ROOT = "/dicom-web"


def find_binary() -> Path | None:
    found = shutil.which("Orthanc")
    for candidate in (*BINARIES, *([found] if found else [])):
        path = Path(candidate)
        if path.is_file():
            return path
    return None


def find_plugin(name: str) -> Path | None:
    """The plugin's shared library (``libOrthancDicomWeb.so`` or a versioned one)."""
    for folder in map(Path, PLUGIN_DIRS):
        if not folder.is_dir():
            continue
        exact = folder / name
        if exact.exists():
            return exact
        versioned = sorted(folder.glob(name + ".*"))
        if versioned:
            return versioned[-1]
    return None


def missing() -> str | None:
    """Why Orthanc cannot run here (None when it can)."""
    if find_binary() is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb orthanc-gdcm)"
    if find_plugin(PLUGINS["dicomweb"]) is None:
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def config(root: Path, port: int, plugins: list[Path]) -> dict[str, Any]:
    storage = str(root / "db")
    return {
        "Name": "consultd-bench",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "StorageCompression": False,
        "HttpServerEnabled": True,
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # loopback clients only
        "AuthenticationEnabled": False,
        "HttpCompressionEnabled": True,
        "KeepAlive": True,
        "TcpNoDelay": True,
        "OrthancExplorerEnabled": False,
        "DicomServerEnabled": False,
        "WebDavEnabled": False,
        "LuaScripts": [],
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "SaveJobs": False,
        "DicomModalities": {},
        "OrthancPeers": {},
        "Plugins": [str(p) for p in plugins],
        "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT + "/", "EnableWado": False},
        "Gdcm": {"Enable": True},
    }


class Orthanc:
    """One Orthanc process on a free port with a fresh temporary directory."""

    def __init__(self) -> None:
        binary = find_binary()
        if binary is None:
            raise RuntimeError(missing() or "Orthanc is not installed")
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = self.url + DICOMWEB_ROOT
        self._root = Path(tempfile.mkdtemp(prefix="consultd-bench-orthanc-"))
        self.log_path = self._root / "orthanc.log"
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None
        self.version = ""
        self.plugins = [p for p in map(find_plugin, PLUGINS.values()) if p is not None]

    def start(self) -> None:
        cfg = self._root / "orthanc.json"
        cfg.write_text(json.dumps(config(self._root, self.port, self.plugins), indent=2))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "--no-jobs", str(cfg)],
            cwd=self._root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def wait_ready(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Poll ``GET /system`` until it answers; ``RuntimeError`` if Orthanc exits or is late."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"Orthanc exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(
                        self.url + "/system", timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200:
                            system: dict[str, Any] = await resp.json()
                            self.version = str(system.get("Version", ""))
                            return system
                await asyncio.sleep(0.1)
        raise RuntimeError(f"Orthanc not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def cpu_s(self) -> float:
        """Orthanc's user + system CPU seconds so far."""
        if self._ps is None:
            return 0.0
        with contextlib.suppress(psutil.Error):
            t = self._ps.cpu_times()
            return float(t.user + t.system)
        return 0.0

    def rss_mb(self) -> float:
        if self._ps is None:
            return 0.0
        with contextlib.suppress(psutil.Error):
            return float(self._ps.memory_info().rss) / 2**20
        return 0.0

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM by pid, SIGKILL if it lingers; remove the temporary directory."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Orthanc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST ------------------------------------------------------------------------------

    def rendered_url(self, study: str, series: str, sop: str) -> str:
        return f"{self.dicomweb}/studies/{study}/series/{series}/instances/{sop}/frames/1/rendered"

    def metadata_url(self, study: str, series: str) -> str:
        return f"{self.dicomweb}/studies/{study}/series/{series}/metadata"


async def upload(session: aiohttp.ClientSession, base_url: str, data: bytes) -> str:
    """``POST /instances`` one DICOM file; returns Orthanc's instance id."""
    async with session.post(
        base_url + "/instances", data=data, headers={"Content-Type": "application/dicom"}
    ) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"Orthanc refused an instance: HTTP {resp.status} {text[:200]}")
        answer = json.loads(text)
        if not isinstance(answer, dict) or answer.get("Status") not in ("Success", "AlreadyStored"):
            raise RuntimeError(f"Orthanc refused an instance: {text[:200]}")
        return str(answer["ID"])
