"""Resource limits for imaging: upload caps, pixel budgets, header bounds, worker rlimits.

Every untrusted DICOM file is inspected against these bounds *before* the work they bound is
done (a header scan refuses a 400-deep sequence before pydicom recurses into it; Rows x Columns
refuses a 65535² image before a decoder allocates it). The worker rlimits are the backstop for
anything the checks miss.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class ImagingLimits:
    """Caps for one deployment; frozen and picklable so workers receive them with a task."""

    max_file_bytes: int = 512 * MiB
    """Largest single uploaded file. A 300-slice uncompressed CT is ~150 MiB in total; a large
    multi-frame (angio, US cine, tomosynthesis) instance can reach a few hundred MiB."""

    max_request_bytes: int = 4 * GiB
    """Largest total of one upload request (a browser folder drop or one STOW-RS call)."""

    max_room_bytes: int = 32 * GiB
    """Largest total of stored imaging per room (the lead's store enforces it)."""

    max_instance_pixel_bytes: int = 1 * GiB
    """Pixel budget per instance: Rows × Columns × SamplesPerPixel × NumberOfFrames ×
    ceil(BitsAllocated / 8), i.e. the bytes a full decode would allocate."""

    max_frame_pixel_bytes: int = 256 * MiB
    """Pixel budget per frame (Rows × Columns × SamplesPerPixel × ceil(BitsAllocated / 8)):
    what decoding one frame allocates. 8192² RGB at 8 bits is 192 MiB."""

    max_frames: int = 20_000
    """Most frames in one instance (the per-frame index returned by ingest grows with it)."""

    max_header_bytes: int = 64 * MiB
    """Most bytes before Pixel Data (the header pydicom parses). Enhanced multi-frame headers
    with per-frame functional groups reach a few MiB."""

    max_header_elements: int = 100_000
    """Most data elements in a header, nested ones included. pydicom spends ~5 µs per
    element; 400 k tiny elements cost 2 s of CPU. Large enhanced MR headers hold ~50 k."""

    max_sequence_depth: int = 32
    """Deepest sequence nesting. pydicom recurses per level (a 400-deep file raises
    RecursionError); real files, SR content trees included, stay well under 20."""

    max_fragments: int = 100_000
    """Most items (fragments) in encapsulated Pixel Data."""

    worker_address_space_bytes: int = 2 * GiB
    """RLIMIT_AS of each worker process. A forkserver child that has numpy, pydicom and the
    pylibjpeg plugins loaded maps ~0.2 GiB (0.3 GiB with OpenCV) when BLAS runs one thread;
    the rest covers one frame at the per-frame budget plus decoder scratch."""

    worker_cpu_seconds: int = 60
    """RLIMIT_CPU backstop per task (re-armed before each task): a worker still computing
    after this much CPU is killed by the kernel even if its parent is not watching."""

    task_timeout_s: float = 30.0
    """Default wall-clock limit of one task; on expiry the worker is killed and replaced."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value <= 0:
                raise ValueError(f"ImagingLimits.{f.name} must be positive, got {value!r}")
