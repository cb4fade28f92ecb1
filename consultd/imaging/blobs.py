"""Content-addressed files under the data dir: a stored file is named by its SHA-256.

The same bytes stored twice (a re-upload, the same series in two rooms) take one file.
Names are hex digests only, never a UID or a client's file name, so nothing a client sends
becomes part of a path. Files arrive through ``temp_path`` and are moved in with one
``os.replace`` (atomic on POSIX): a reader never sees a half-written blob.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

_HEX64 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._tmp = root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Temp files left by a crash are garbage: nothing refers to them.
        for stale in self._tmp.iterdir():
            stale.unlink(missing_ok=True)

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh path under the store's temp dir (same file system as the blobs)."""
        return self._tmp / (secrets.token_hex(16) + suffix)

    def path(self, digest: str) -> Path:
        if not _HEX64.fullmatch(digest):
            raise ValueError("not a SHA-256 hex digest")
        return self._blobs / digest[:2] / digest[2:4] / digest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, temp: Path, digest: str) -> Path:
        """Move ``temp`` (whose SHA-256 is ``digest``) in; a blob already there is kept."""
        final = self.path(digest)
        if final.is_file():
            temp.unlink(missing_ok=True)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        return final


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
