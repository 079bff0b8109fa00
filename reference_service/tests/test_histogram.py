"""Percentile summary, JSON schema and HdrHistogram log of the benchmark."""

from __future__ import annotations

import dataclasses

import pytest
from hdrh.log import HistogramLogReader
from lowlatency_service.histogram import (
    HIGHEST_NS,
    SCHEMA_KEYS,
    Summary,
    merge,
    new_histogram,
    read_log,
    record_ns,
    summarize,
    write_log,
)


def histogram_of_us(values_us: range) -> object:
    histogram = new_histogram()
    for value in values_us:
        record_ns(histogram, value * 1000)
    return histogram


def test_summary_percentiles_within_three_significant_digits() -> None:
    summary = summarize(histogram_of_us(range(1, 1001)), errors=2, elapsed_s=2.0)
    assert summary.p50_us == pytest.approx(500, rel=1e-3)
    assert summary.p90_us == pytest.approx(900, rel=1e-3)
    assert summary.p99_us == pytest.approx(990, rel=1e-3)
    assert summary.p999_us == pytest.approx(999, rel=1e-3)
    assert summary.max_us == pytest.approx(1000, rel=1e-3)
    assert summary.requests == 1000
    assert summary.errors == 2
    assert summary.throughput_rps == 500.0
    assert summary.tail_ratio == pytest.approx(999 / 500, rel=2e-3)


def test_tail_of_one_slow_request_in_a_thousand_shows_at_p999_not_p99() -> None:
    histogram = new_histogram()
    for _ in range(999):
        record_ns(histogram, 100_000)
    record_ns(histogram, 50_000_000)
    summary = summarize(histogram, errors=0, elapsed_s=1.0)
    assert summary.p99_us == pytest.approx(100, rel=1e-3)
    assert summary.p999_us == pytest.approx(100, rel=1e-3)
    assert summary.max_us == pytest.approx(50_000, rel=1e-3)


def test_empty_histogram_summarizes_to_zeros() -> None:
    summary = summarize(new_histogram(), errors=5, elapsed_s=0.0)
    assert summary == Summary(0.0, 0.0, 0.0, 0.0, 0.0, 0, 5, 0.0)
    assert summary.tail_ratio == 0.0


def test_record_clamps_values_outside_the_range() -> None:
    histogram = new_histogram()
    record_ns(histogram, 0)
    record_ns(histogram, -5)
    record_ns(histogram, HIGHEST_NS * 10)
    assert histogram.get_total_count() == 3
    assert histogram.get_min_value() == 1
    assert histogram.values_are_equivalent(histogram.get_max_value(), HIGHEST_NS)


def test_merge_adds_counts() -> None:
    merged = merge([histogram_of_us(range(1, 11)), histogram_of_us(range(1, 21))])
    assert merged.get_total_count() == 30


def test_json_keys_are_the_schema() -> None:
    summary = summarize(histogram_of_us(range(1, 11)), errors=0, elapsed_s=1.0)
    assert tuple(summary.to_dict()) == SCHEMA_KEYS
    assert [f.name for f in dataclasses.fields(Summary)] == list(SCHEMA_KEYS)
    assert SCHEMA_KEYS == (
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "requests",
        "errors",
        "throughput_rps",
    )


def test_hdr_log_round_trip(tmp_path) -> None:
    histogram = histogram_of_us(range(100, 2100))
    path = tmp_path / "run.hlog"
    write_log(histogram, str(path), start_s=1_700_000_000.25, end_s=1_700_000_003.75, tag="t")
    text = path.read_text()
    assert "#[Histogram log format version 1.2]" in text
    assert "#[StartTime: 1700000000.250" in text
    assert (
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"' in text
    )
    interval = text.splitlines()[-1].split(",")
    assert float(interval[0]) == 0.0
    assert float(interval[1]) == pytest.approx(3.5)

    again = read_log(str(path))
    assert again.get_total_count() == 2000
    for percentile in (50, 99, 99.9, 100):
        assert again.get_value_at_percentile(percentile) == histogram.get_value_at_percentile(
            percentile
        )


def test_hdr_log_read_by_the_library_reader_as_one_interval(tmp_path) -> None:
    path = tmp_path / "run.hlog"
    write_log(histogram_of_us(range(1, 101)), str(path), 1_700_000_000.0, 1_700_000_001.0, "t")
    reader = HistogramLogReader(str(path), new_histogram())
    try:
        first = reader.get_next_interval_histogram()
        assert first is not None
        assert first.get_total_count() == 100
        assert reader.get_next_interval_histogram() is None
    finally:
        reader.close()
