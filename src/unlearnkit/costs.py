"""Training cost as every figure here reports it (run.json, `unlearn report`, `unlearn bench`): peak and
current resident set size in bytes, and time per epoch without the warm-up epoch."""

from __future__ import annotations

import resource
import statistics
import sys
from pathlib import Path


def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak RSS of this process image. VmHWM first: ru_maxrss survives exec on Linux, so a child forked
    from a big parent would report the parent's peak."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    """Current RSS (falls back to the peak where /proc is missing)."""
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else peak_rss_bytes()


def timed_epochs(epoch_seconds: list[float]) -> list[int]:
    """Indices of the epochs that count: all but the first (warm-up), unless there is only one."""
    return list(range(1, len(epoch_seconds))) if len(epoch_seconds) > 1 else list(range(len(epoch_seconds)))


def time_per_epoch(epoch_seconds: list[float]) -> float | None:
    """Median wall time of the timed epochs (None without any)."""
    timed = timed_epochs(epoch_seconds)
    return statistics.median(epoch_seconds[i] for i in timed) if timed else None
