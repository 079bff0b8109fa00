"""Plain-text tables of percentile summaries, as bench and compare print them."""

from __future__ import annotations

from collections.abc import Sequence

from lowlatency_service.histogram import Summary

_COLUMNS = ("p50", "p90", "p99", "p99.9", "max", "p99.9/p50", "req/s", "requests", "errors")


def table(rows: Sequence[tuple[str, Summary]]) -> str:
    """One line per case; latencies in microseconds."""
    width = max([len("case")] + [len(name) for name, _ in rows])
    lines = [f"{'case':<{width}}  " + "  ".join(f"{c:>9}" for c in _COLUMNS) + "  (us)"]
    for name, s in rows:
        cells = (
            f"{s.p50_us:.1f}",
            f"{s.p90_us:.1f}",
            f"{s.p99_us:.1f}",
            f"{s.p999_us:.1f}",
            f"{s.max_us:.1f}",
            f"{s.tail_ratio:.2f}",
            f"{s.throughput_rps:.0f}",
            str(s.requests),
            str(s.errors),
        )
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>9}" for c in cells))
    return "\n".join(lines)
