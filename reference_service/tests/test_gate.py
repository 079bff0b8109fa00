"""The gate: limits to breaches, and the verdict bench prints, writes and exits with."""

from __future__ import annotations

from lowlatency_service.gate import Breach, Limits, breaches, judge, unreachable
from lowlatency_service.histogram import Summary


def summary(
    errors: int = 0, p50: float = 300.0, p99: float = 450.0, p999: float = 812.0
) -> Summary:
    return Summary(p50, 400.0, p99, p999, 2000.0, 10000, errors, 3000.0)


def test_no_limits_no_errors_passes() -> None:
    assert breaches(summary(), Limits()) == []
    verdict = judge(summary(), Limits(), {})
    assert verdict.as_dict() == {
        "passed": True,
        "exit_code": 0,
        "outcome": "passed",
        "breaches": [],
        "errors_by_code": {},
        "message": "gate passed: 10000 requests, 0 errors",
    }


def test_limits_above_the_values_pass() -> None:
    limits = Limits(max_p50_us=301, max_p99_us=451, max_p999_us=813, max_tail_ratio=2.8)
    assert breaches(summary(), limits) == []


def test_value_equal_to_the_limit_passes() -> None:
    assert breaches(summary(), Limits(max_p50_us=300.0, max_p999_us=812.0)) == []


def test_breach_names_figure_value_and_limit() -> None:
    assert breaches(summary(), Limits(max_p999_us=500)) == [Breach("p999_us", 812.0, 500)]
    verdict = judge(summary(), Limits(max_p999_us=500), {})
    assert (verdict.passed, verdict.exit_code, verdict.outcome) == (False, 1, "breached")
    assert verdict.as_dict()["breaches"] == [{"figure": "p999_us", "value": 812.0, "limit": 500}]
    assert verdict.message == "gate failed: p99.9 = 812.0 us > limit 500.0 us"


def test_every_breach_in_the_verdict_and_one_line() -> None:
    limits = Limits(max_p50_us=100, max_p99_us=400, max_p999_us=500, max_tail_ratio=2.0)
    verdict = judge(summary(errors=3), limits, {"UNAVAILABLE": 2, "DEADLINE_EXCEEDED": 1})
    assert [(b["figure"], b["value"], b["limit"]) for b in verdict.as_dict()["breaches"]] == [
        ("errors", 3, 0),
        ("p50_us", 300.0, 100),
        ("p99_us", 450.0, 400),
        ("p999_us", 812.0, 500),
        ("tail_ratio", 2.707, 2.0),
    ]
    assert verdict.message == (
        "gate failed: 3 errors (UNAVAILABLE 2, DEADLINE_EXCEEDED 1); "
        "p50 = 300.0 us > limit 100.0 us; p99 = 450.0 us > limit 400.0 us; "
        "p99.9 = 812.0 us > limit 500.0 us; p99.9/p50 = 2.707 > limit 2.000"
    )
    assert verdict.errors_by_code == {"UNAVAILABLE": 2, "DEADLINE_EXCEEDED": 1}


def test_any_error_fails_without_limits() -> None:
    verdict = judge(summary(errors=1), Limits(), {"INVALID_ARGUMENT": 1})
    assert verdict.exit_code == 1
    assert verdict.message == "gate failed: 1 error (INVALID_ARGUMENT 1)"


def test_tail_ratio_alone() -> None:
    assert breaches(summary(p50=400.0, p999=800.0), Limits(max_tail_ratio=2.0)) == []
    assert breaches(summary(p50=400.0, p999=801.0), Limits(max_tail_ratio=2.0)) == [
        Breach("tail_ratio", 2.002, 2.0)
    ]


def test_lost_target_exits_3_with_what_was_measured() -> None:
    verdict = judge(summary(errors=8), Limits(), {"UNAVAILABLE": 8}, lost="target lost 2.0 s in")
    assert (verdict.passed, verdict.exit_code, verdict.outcome) == (False, 3, "target_lost")
    assert verdict.message == "target lost 2.0 s in; 8 errors (UNAVAILABLE 8)"
    assert verdict.as_dict()["breaches"] == [{"figure": "errors", "value": 8, "limit": 0}]


def test_unreachable_names_the_target() -> None:
    verdict = unreachable("127.0.0.1:9", "Connection refused")
    assert verdict.as_dict() == {
        "passed": False,
        "exit_code": 3,
        "outcome": "unreachable",
        "breaches": [],
        "errors_by_code": {},
        "message": "target 127.0.0.1:9 unreachable: Connection refused",
    }
