"""A fast serving copy of images whose codec is slow to decode (worker process).

A 512² JPEG 2000 slice costs 20-35 ms to decode, JPEG-LS ~6 ms, JPEG Lossless ~10 ms,
against 0.25 ms for uncompressed data. After ingest such an instance is decoded once, in
the background, into an uncompressed Explicit VR Little Endian copy that frames are then
served from; the original stays for retrieval and export. Only greyscale instances: a
colour decode changes the photometric interpretation the metadata announces.
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

import pydicom

from consultd.imaging.ingest import ZERO_PREAMBLE

#: Transfer syntaxes worth a serving copy (JPEG baseline decodes in ~0.7 ms through
#: libjpeg-turbo and RLE in ~0.7 ms: not worth the disk).
SLOW_SYNTAXES: Final = frozenset(
    {
        "1.2.840.10008.1.2.4.51",  # JPEG Extended (12 bit)
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
    }
)
#: Largest decoded instance given a serving copy (the worker holds it whole).
MAX_DECODED_BYTES: Final = 256 << 20


def worth_it(transfer_syntax: str, samples: int, decoded_bytes: int) -> bool:
    return transfer_syntax in SLOW_SYNTAXES and samples == 1 and decoded_bytes <= MAX_DECODED_BYTES


def to_native(src: str, dst: str) -> tuple[str, int]:
    """Write ``src`` decompressed to ``dst``; return the copy's SHA-256 and size."""
    ds = pydicom.dcmread(src)
    ds.decompress()
    ds.preamble = ZERO_PREAMBLE
    ds.save_as(dst, enforce_file_format=True)
    h = hashlib.sha256()
    with open(dst, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest(), os.path.getsize(dst)
