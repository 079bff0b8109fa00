"""The percentile gate: limits against a summary, as a list of human-readable breaches."""

from __future__ import annotations

from dataclasses import dataclass

from lowlatency_service.histogram import Summary


@dataclass(frozen=True)
class Limits:
    """Upper bounds; None means not gated."""

    max_p50_us: float | None = None
    max_p99_us: float | None = None
    max_p999_us: float | None = None
    max_tail_ratio: float | None = None


def breaches(summary: Summary, limits: Limits) -> list[str]:
    """Every limit the summary breaks, each naming the measure, its value and its limit.

    Any request error is a breach: a service that fails requests fast must
    not pass a latency gate.
    """
    found = []
    if summary.errors:
        found.append(f"{summary.errors} error{'s' if summary.errors != 1 else ''}")
    checks = (
        ("p50", summary.p50_us, limits.max_p50_us, "{:.1f} us"),
        ("p99", summary.p99_us, limits.max_p99_us, "{:.1f} us"),
        ("p99.9", summary.p999_us, limits.max_p999_us, "{:.1f} us"),
        ("p99.9/p50", summary.tail_ratio, limits.max_tail_ratio, "{:.3f}"),
    )
    for name, value, limit, shown in checks:
        if limit is not None and value > limit:
            found.append(f"{name} = {shown.format(value)} > limit {shown.format(limit)}")
    return found


def failure_line(found: list[str]) -> str:
    """The one line printed when the gate fails."""
    return "gate failed: " + "; ".join(found)
