"""The run's report: the JSON object of BENCH.md, a human summary, a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import stats
from bench.scenario import ScenarioResult

#: A generator whose event loop lags more than this at p99 is a bottleneck itself
#: (BENCH.md): each latency it measures holds its receiver's lag.
GENERATOR_LAG_LIMIT_MS = 10.0


def build(
    scenario: str,
    args: argparse.Namespace,
    result: ScenarioResult,
    server: dict[str, float] | None,
    generator_cpu_s: float,
) -> dict[str, Any]:
    """The object ``--json`` writes (keys and order as in BENCH.md)."""
    extra = dict(result.extra)
    extra["generator_cpu_s"] = round(generator_cpu_s, 3)
    lag = extra.get("generator_loop_lag_ms")
    if isinstance(lag, dict) and float(lag.get("p99", 0.0)) > GENERATOR_LAG_LIMIT_MS:
        extra["generator_overloaded"] = (
            f"its event loop lagged {lag['p99']:g} ms at p99 (over {GENERATOR_LAG_LIMIT_MS:g}):"
            " the latencies include that lag (more --workers help only if cores are free)"
        )
    return {
        "scenario": scenario,
        "params": {
            "rooms": args.rooms,
            "participants": args.participants,
            "rate": _number(args.rate),
            "duration": _number(args.duration),
        },
        "latency_ms": stats.percentiles(result.latency_ms),
        "throughput_per_s": float(result.throughput_per_s),
        "errors": int(result.errors),
        "server": server,
        "extra": extra,
    }


def _number(value: float) -> float | int:
    """``200`` rather than ``200.0`` for whole numbers given as floats."""
    return int(value) if float(value).is_integer() else value


def write_json(report: dict[str, Any], path: str) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def summary(report: dict[str, Any], result: ScenarioResult) -> str:
    """A few lines for a human."""
    lat = report["latency_ms"]
    params = report["params"]
    head = " ".join(f"{k}={v}" for k, v in params.items())
    lines = [
        f"consultd-bench {report['scenario']}  {head}",
        f"  {result.latency_label} (ms): p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}"
        f"  p99 {lat['p99']:.2f}  max {lat['max']:.2f}  ({result.latency_ms.size} samples)",
        f"  throughput: {report['throughput_per_s']:.1f} {result.throughput_label}",
        f"  errors: {report['errors']}",
    ]
    server = report["server"]
    if server is not None:
        lines.append(
            f"  server: {server['cpu_s']:.2f} CPU s, peak RSS {server['peak_rss_mb']:.1f} MB"
        )
    for key, value in report["extra"].items():
        if value not in (None, {}, []):
            lines.append(f"  {key}: {_fmt(value)}")
    return "\n".join(lines)


def plot(result: ScenarioResult, path: str, title: str) -> None:
    """Latency over time (scatter + per-second p50/p99) and the latency distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = result.latency_ms
    at = result.latency_at_s
    fig, (ax_t, ax_d) = plt.subplots(1, 2, figsize=(12, 4.5))
    fig.suptitle(title)
    if lat.size:
        ax_t.scatter(
            at, lat, s=2, alpha=0.3, color="0.55", linewidths=0, rasterized=True, label="samples"
        )
        seconds = np.floor(at).astype(np.int64)
        buckets = np.unique(seconds)
        p50 = [np.percentile(lat[seconds == b], 50) for b in buckets]
        p99 = [np.percentile(lat[seconds == b], 99) for b in buckets]
        ax_t.plot(buckets + 0.5, p50, "-o", ms=3, color="tab:blue", label="p50 per second")
        ax_t.plot(buckets + 0.5, p99, "-o", ms=3, color="tab:red", label="p99 per second")
        ax_t.legend(loc="upper right", fontsize="small")
        upper = max(float(np.percentile(lat, 99.9)), 1e-3)
        bins = np.linspace(0.0, upper, 80)
        ax_d.hist(np.clip(lat, 0.0, upper), bins=bins)
        for name, q in stats.percentiles(lat).items():
            if name != "max":
                ax_d.axvline(q, linestyle="--", linewidth=1)
                ax_d.annotate(name, (q, 0), xytext=(2, 12), textcoords="offset points",
                              rotation=90, fontsize="small")  # fmt: skip
    else:
        for ax in (ax_t, ax_d):
            ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
    ax_t.set_xlabel("send time (s from phase start)")
    ax_t.set_ylabel(f"{result.latency_label} (ms)")
    ax_t.set_title("latency over time")
    ax_d.set_xlabel(f"{result.latency_label} (ms, clipped at p99.9)")
    ax_d.set_ylabel("samples")
    ax_d.set_title("latency distribution")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
