"""The percentile gate: limits to breaches, and the one-line failure."""

from __future__ import annotations

from lowlatency_service.gate import Limits, breaches, failure_line
from lowlatency_service.histogram import Summary


def summary(
    errors: int = 0, p50: float = 300.0, p99: float = 450.0, p999: float = 812.0
) -> Summary:
    return Summary(p50, 400.0, p99, p999, 2000.0, 10000, errors, 3000.0)


def test_no_limits_no_errors_passes() -> None:
    assert breaches(summary(), Limits()) == []


def test_limits_above_the_values_pass() -> None:
    limits = Limits(max_p50_us=301, max_p99_us=451, max_p999_us=813, max_tail_ratio=2.8)
    assert breaches(summary(), limits) == []


def test_value_equal_to_the_limit_passes() -> None:
    assert breaches(summary(), Limits(max_p50_us=300.0, max_p999_us=812.0)) == []


def test_breach_names_percentile_value_and_limit() -> None:
    assert breaches(summary(), Limits(max_p999_us=500)) == ["p99.9 = 812.0 us > limit 500.0 us"]


def test_every_breach_is_listed_in_one_line() -> None:
    found = breaches(
        summary(errors=3),
        Limits(max_p50_us=100, max_p99_us=400, max_p999_us=500, max_tail_ratio=2.0),
    )
    assert found == [
        "3 errors",
        "p50 = 300.0 us > limit 100.0 us",
        "p99 = 450.0 us > limit 400.0 us",
        "p99.9 = 812.0 us > limit 500.0 us",
        "p99.9/p50 = 2.707 > limit 2.000",
    ]
    line = failure_line(found)
    assert line.startswith("gate failed: 3 errors; p50 = 300.0 us")
    assert "\n" not in line


def test_any_error_fails_without_limits() -> None:
    assert failure_line(breaches(summary(errors=3), Limits())) == "gate failed: 3 errors"
    assert breaches(summary(errors=1), Limits()) == ["1 error"]


def test_tail_ratio_alone() -> None:
    assert breaches(summary(p50=400.0, p999=800.0), Limits(max_tail_ratio=2.0)) == []
    assert breaches(summary(p50=400.0, p999=801.0), Limits(max_tail_ratio=2.0)) == [
        "p99.9/p50 = 2.002 > limit 2.000"
    ]
