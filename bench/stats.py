"""Percentiles of latency samples."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))


def percentiles(samples: Iterable[float] | npt.NDArray[np.float64]) -> dict[str, float]:
    """``{"p50", "p95", "p99", "max"}`` of the samples (linear interpolation), 0.0 when empty."""
    arr = np.asarray(samples if isinstance(samples, np.ndarray) else list(samples), dtype=float)
    if arr.size == 0:
        return {name: 0.0 for name, _ in PERCENTILES} | {"max": 0.0}
    values = np.percentile(arr, [q for _, q in PERCENTILES])
    out = {name: round(float(v), 3) for (name, _), v in zip(PERCENTILES, values, strict=True)}
    out["max"] = round(float(arr.max()), 3)
    return out
