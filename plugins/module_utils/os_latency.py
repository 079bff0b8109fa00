# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""OS latency of CPUs from rt-tests: oslat and cyclictest JSON, hwlatdetect text.

Both tools write ``--json=FILE`` (rt-tests 2.x) with one entry per measuring
thread: its CPU, min, avg, max and a histogram of whole microseconds, zero
buckets left out. oslat's last bucket holds every overflow too; cyclictest
counts its overflows only as cycles missing from the histogram. A percentile
is the bucket the rank falls into; a rank among the overflows is the maximum.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional

# Buckets of 1 us each: latencies up to about 1 ms get exact percentiles.
BUCKETS = 1024
PERCENTILES = (("p50_us", 50.0), ("p99_us", 99.0), ("p999_us", 99.9))

_HWLAT_MAX_RE = re.compile(r"^Max Latency:\s*(?:(\d+)us|(Below threshold))\s*$", re.M)
_HWLAT_THRESHOLD_RE = re.compile(r"Latency threshold:\s*(\d+)us")
_HWLAT_SAMPLES_RE = re.compile(r"^Samples recorded:\s*(\d+)\s*$", re.M)
_HWLAT_EXCEEDING_RE = re.compile(r"^Samples exceeding threshold:\s*(\d+)\s*$", re.M)


class OsLatencyError(ValueError):
    """Tool output that cannot be read as expected."""


def percentile(
    histogram: Dict[int, int], overflows: int, maximum: float, pct: float
) -> Optional[float]:
    """The bucket (us) holding the pct-th percentile sample; the maximum when it is an overflow."""
    total = sum(histogram.values()) + overflows
    if total <= 0:
        return None
    rank = max(1, math.ceil(pct / 100.0 * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return float(bucket)
    return float(maximum)


def _histogram(raw: Any, source: str) -> Dict[int, int]:
    if not isinstance(raw, dict):
        raise OsLatencyError("%s: histogram is %r, not an object" % (source, raw))
    try:
        return {int(bucket): int(count) for bucket, count in raw.items()}
    except (TypeError, ValueError):
        raise OsLatencyError("%s: histogram has a non-numeric bucket or count" % source) from None


def _figures(
    cpu: int, thread: Dict[str, Any], histogram: Dict[int, int], overflows: int
) -> Dict[str, Any]:
    maximum = float(thread["max"])
    figures: Dict[str, Any] = {
        "cpu": cpu,
        "max_us": maximum,
        "min_us": float(thread["min"]),
        "avg_us": round(float(thread["avg"]), 3),
    }
    for key, pct in PERCENTILES:
        figures[key] = percentile(histogram, overflows, maximum, pct)
    figures["samples"] = sum(histogram.values()) + overflows
    figures["overflows"] = overflows
    figures["histogram"] = {str(bucket): histogram[bucket] for bucket in sorted(histogram)}
    return figures


def _threads(data: Any, tool: str) -> List[Dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("thread"), dict):
        raise OsLatencyError(
            "%s JSON has no 'thread' object (not rt-tests 2.x --json output?)" % tool
        )
    threads = []
    for key in sorted(data["thread"], key=lambda k: int(k) if str(k).isdigit() else 0):
        thread = data["thread"][key]
        missing = [f for f in ("cpu", "min", "avg", "max", "histogram") if f not in thread]
        if missing:
            raise OsLatencyError("%s JSON thread %s lacks %s" % (tool, key, ", ".join(missing)))
        threads.append(thread)
    return threads


def parse_oslat(data: Any, buckets: int = BUCKETS) -> Dict[int, Dict[str, Any]]:
    """Per-CPU figures from oslat --json; the last bucket (``buckets``) counts the overflows."""
    result = {}
    for thread in _threads(data, "oslat"):
        cpu = int(thread["cpu"])
        histogram = _histogram(thread["histogram"], "oslat CPU %d" % cpu)
        overflows = histogram.pop(buckets, 0)
        result[cpu] = _figures(cpu, thread, histogram, overflows)
    return result


def parse_cyclictest(data: Any) -> Dict[int, Dict[str, Any]]:
    """Per-CPU figures from cyclictest --json: overflows are the cycles the histogram lacks."""
    result = {}
    for thread in _threads(data, "cyclictest"):
        cpu = int(thread["cpu"])
        histogram = _histogram(thread["histogram"], "cyclictest CPU %d" % cpu)
        cycles = int(thread.get("cycles", sum(histogram.values())))
        overflows = max(0, cycles - sum(histogram.values()))
        result[cpu] = _figures(cpu, thread, histogram, overflows)
    return result


def parse_hwlatdetect(text: str) -> Dict[str, Any]:
    """Max latency, threshold and sample counts from hwlatdetect's summary."""
    found = _HWLAT_MAX_RE.search(text)
    if not found:
        raise OsLatencyError("hwlatdetect printed no 'Max Latency:' line")
    threshold = _HWLAT_THRESHOLD_RE.search(text)
    samples = _HWLAT_SAMPLES_RE.search(text)
    exceeding = _HWLAT_EXCEEDING_RE.search(text)
    return {
        "max_us": float(found.group(1)) if found.group(1) else None,
        "below_threshold": found.group(2) is not None,
        "threshold_us": float(threshold.group(1)) if threshold else None,
        "samples": int(samples.group(1)) if samples else None,
        "exceeding": int(exceeding.group(1)) if exceeding else None,
    }


def breaches(
    cpus: Dict[int, Dict[str, Any]], hwlat: Optional[Dict[str, Any]], limit: Optional[float]
) -> List[Dict[str, Any]]:
    """Each measured maximum above limit, as {figure, cpu, value, limit}."""
    if limit is None:
        return []
    found = [
        {"figure": "max_us", "cpu": cpu, "value": cpus[cpu]["max_us"], "limit": limit}
        for cpu in sorted(cpus)
        if cpus[cpu]["max_us"] > limit
    ]
    if hwlat and hwlat.get("max_us") is not None and hwlat["max_us"] > limit:
        found.append(
            {"figure": "hwlat_max_us", "cpu": None, "value": hwlat["max_us"], "limit": limit}
        )
    return found


def _us(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return ("%d" % value if float(value).is_integer() else "%.3f" % value) + " us"


def summary(figures: Dict[str, Any]) -> str:
    """One line of a CPU's figures for a report row."""
    return "max %s, p99 %s, p99.9 %s, p50 %s, avg %s, min %s, %d samples" % (
        _us(figures["max_us"]),
        _us(figures["p99_us"]),
        _us(figures["p999_us"]),
        _us(figures["p50_us"]),
        _us(figures["avg_us"]),
        _us(figures["min_us"]),
        figures["samples"],
    )
