"""The gate: limits against a summary, as the verdict bench prints, writes and exits with.

This module is the one place the verdict is computed; the benchmark role
reads the ``verdict`` object of bench's JSON and never recomputes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lowlatency_service.histogram import Summary

# Exit status of bench, one per outcome; 2 (usage error) is argparse's own.
EXIT_STATUS = {"passed": 0, "breached": 1, "unreachable": 3, "target_lost": 3}
EXIT_USAGE = 2


@dataclass(frozen=True)
class Limits:
    """Upper bounds; None means not gated."""

    max_p50_us: float | None = None
    max_p99_us: float | None = None
    max_p999_us: float | None = None
    max_tail_ratio: float | None = None
    max_window_p999_us: float | None = None
    max_p999_drift: float | None = None
    max_rss_growth_mb: float | None = None


@dataclass(frozen=True)
class WindowFigures:
    """What a windowed run (soak) is gated on; None where it could not be measured."""

    window_p999_us: float | None = None  # the worst window's p99.9
    p999_drift: float | None = None  # mean p99.9 of the last windows / of the first
    rss_growth_mb: float | None = None  # the service's RSS at the end minus at the start, MiB


# Printed names of the figures that are latencies in us.
_LATENCY_NAMES = {
    "p50_us": "p50",
    "p99_us": "p99",
    "p999_us": "p99.9",
    "window_p999_us": "worst window p99.9",
}


@dataclass(frozen=True)
class Breach:
    """One figure above its limit; ``figure`` is the JSON key of the figure."""

    figure: str
    value: float
    limit: float

    def text(self) -> str:
        if self.figure == "errors":
            count = int(self.value)
            return f"{count} error{'s' if count != 1 else ''}"
        if self.figure == "tail_ratio":
            return f"p99.9/p50 = {self.value:.3f} > limit {self.limit:.3f}"
        if self.figure == "p999_drift":
            return f"p99.9 drift (last/first windows) = {self.value:.3f} > limit {self.limit:.3f}"
        if self.figure == "rss_growth_mb":
            return f"service RSS growth = {self.value:.1f} MiB > limit {self.limit:.1f} MiB"
        name = _LATENCY_NAMES[self.figure]
        return f"{name} = {self.value:.1f} us > limit {self.limit:.1f} us"

    def as_dict(self) -> dict[str, float | str]:
        return {"figure": self.figure, "value": self.value, "limit": self.limit}


def breaches(
    summary: Summary, limits: Limits, windows: WindowFigures | None = None
) -> list[Breach]:
    """Every limit the summary (and a soak's window figures) breaks, with figure, value and limit.

    Any request error is a breach (limit 0): a service that fails requests
    fast must not pass a latency gate. A window figure that could not be
    measured (None) is not judged.
    """
    found = []
    if summary.errors:
        found.append(Breach("errors", summary.errors, 0))
    checks = (
        ("p50_us", summary.p50_us, limits.max_p50_us),
        ("p99_us", summary.p99_us, limits.max_p99_us),
        ("p999_us", summary.p999_us, limits.max_p999_us),
        ("tail_ratio", round(summary.tail_ratio, 3), limits.max_tail_ratio),
    )
    if windows is not None:
        checks += (
            ("window_p999_us", windows.window_p999_us, limits.max_window_p999_us),
            ("p999_drift", windows.p999_drift, limits.max_p999_drift),
            ("rss_growth_mb", windows.rss_growth_mb, limits.max_rss_growth_mb),
        )
    for figure, value, limit in checks:
        if limit is not None and value is not None and value > limit:
            found.append(Breach(figure, value, limit))
    return found


def codes_text(errors_by_code: Mapping[str, int]) -> str:
    """'UNAVAILABLE 3, DEADLINE_EXCEEDED 1', most frequent first."""
    ordered = sorted(errors_by_code.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{code} {count}" for code, count in ordered)


@dataclass(frozen=True)
class Verdict:
    """What bench concludes: ``outcome`` is passed, breached, unreachable or target_lost."""

    outcome: str
    message: str
    breaches: tuple[Breach, ...] = ()
    errors_by_code: Mapping[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def exit_code(self) -> int:
        return EXIT_STATUS[self.outcome]

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "outcome": self.outcome,
            "breaches": [b.as_dict() for b in self.breaches],
            "errors_by_code": dict(self.errors_by_code),
            "message": self.message,
        }


def judge(
    summary: Summary,
    limits: Limits,
    errors_by_code: Mapping[str, int],
    lost: str | None = None,
    windows: WindowFigures | None = None,
) -> Verdict:
    """The verdict of a run; ``lost`` is the one line saying when the target was lost."""
    found = tuple(breaches(summary, limits, windows))
    parts = [b.text() for b in found]
    if found and found[0].figure == "errors" and errors_by_code:
        parts[0] += f" ({codes_text(errors_by_code)})"
    if lost is not None:
        message = "; ".join([lost, *parts])
        return Verdict("target_lost", message, found, dict(errors_by_code))
    if found:
        return Verdict("breached", "gate failed: " + "; ".join(parts), found, dict(errors_by_code))
    return Verdict("passed", f"gate passed: {summary.requests} requests, 0 errors", ())


def unreachable(target: str, reason: str) -> Verdict:
    """The verdict when no connection to the target could be made at all."""
    return Verdict("unreachable", f"target {target} unreachable: {reason}")
