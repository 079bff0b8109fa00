"""The load loops with fake transports: exact counts, errors, CO correction."""

from __future__ import annotations

import queue
import threading

import pytest
from lowlatency_service import loadgen


class Failure(Exception):
    pass


def counting_call(counter: list[int], fail_every: int = 0) -> loadgen.Call:
    lock = threading.Lock()

    def call() -> None:
        with lock:
            counter[0] += 1
            n = counter[0]
        if fail_every and n % fail_every == 0:
            raise Failure(f"request {n} failed")

    return call


def test_plan_needs_exactly_one_amount() -> None:
    with pytest.raises(ValueError):
        loadgen.Plan(1)
    with pytest.raises(ValueError):
        loadgen.Plan(1, requests=10, duration_s=1.0)


def test_threads_send_exactly_the_requests_asked() -> None:
    counter = [0]
    calls = [counting_call(counter) for _ in range(4)]
    outcome = loadgen.run_threads(calls, loadgen.Plan(4, requests=1000), (Failure,))
    assert counter[0] == 1000
    assert outcome.histogram.get_total_count() == 1000
    assert outcome.errors == 0
    assert outcome.uncorrected is None


def test_errors_counted_not_timed() -> None:
    counter = [0]
    outcome = loadgen.run_threads(
        [counting_call(counter, fail_every=4)], loadgen.Plan(1, requests=100), (Failure,)
    )
    assert outcome.errors == 25
    assert outcome.errors_by_code == {"Failure": 25}
    assert outcome.lost is None
    assert outcome.histogram.get_total_count() == 75
    assert outcome.first_error == "request 4 failed"


def test_unexpected_exceptions_are_not_swallowed() -> None:
    def call() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        loadgen.run_threads([call, call], loadgen.Plan(2, requests=10**9), (Failure,))


def test_duration_plan_stops() -> None:
    counter = [0]
    outcome = loadgen.run_threads([counting_call(counter)], loadgen.Plan(1, duration_s=0.05), ())
    assert outcome.histogram.get_total_count() == counter[0] > 0


def test_outstanding_keeps_slots_busy_and_counts_exactly() -> None:
    """Completions arrive on one transport thread, as gRPC's channel thread delivers them."""
    pending: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    in_flight: set[int] = set()
    completed: list[tuple[int, loadgen.Failure | None]] = []

    def bind(done: loadgen.Done) -> loadgen.Submit:
        def transport() -> None:
            while (slot := pending.get()) is not None:
                in_flight.remove(slot)
                error = loadgen.Failure("ABORTED", "boom") if len(completed) % 10 == 9 else None
                completed.append((slot, error))
                done(slot, error)

        threading.Thread(target=transport, daemon=True).start()

        def submit(slot: int) -> None:
            # One request per slot at a time: a second submit before done is a bug.
            assert slot not in in_flight
            in_flight.add(slot)
            pending.put(slot)

        return submit

    progress = loadgen.Progress()
    outcome = loadgen.Outstanding(loadgen.Plan(3, requests=100), bind, progress).run()
    pending.put(None)
    assert len(completed) == 100
    assert {slot for slot, _ in completed} == {0, 1, 2}
    assert outcome.errors_by_code == {"ABORTED": 10}
    assert outcome.histogram.get_total_count() == 90
    assert outcome.first_error == "boom"
    assert progress.completed() == (90, 10)


def test_outstanding_with_completions_on_another_thread() -> None:
    def bind(done: loadgen.Done) -> loadgen.Submit:
        def submit(slot: int) -> None:
            threading.Thread(target=done, args=(slot, None)).start()

        return submit

    outcome = loadgen.Outstanding(loadgen.Plan(8, requests=400), bind).run()
    assert outcome.histogram.get_total_count() == 400


def test_open_loop_corrected_never_below_uncorrected() -> None:
    counter = [0]
    calls = [counting_call(counter) for _ in range(2)]
    outcome = loadgen.run_open_loop(calls, loadgen.Plan(2, requests=100, rate=2000.0), ())
    assert outcome.uncorrected is not None
    assert outcome.histogram.get_total_count() == outcome.uncorrected.get_total_count() == 100
    for percentile in (50, 90, 99, 100):
        assert outcome.histogram.get_value_at_percentile(
            percentile
        ) >= outcome.uncorrected.get_value_at_percentile(percentile)


def test_open_loop_needs_a_rate() -> None:
    with pytest.raises(ValueError):
        loadgen.run_open_loop([lambda: None], loadgen.Plan(1, requests=1), ())


def dying_target(answers: int, lock: threading.Lock, state: dict[str, int]) -> loadgen.Call:
    """Answers `answers` requests in all, then every request fails as a reset connection."""

    def call() -> None:
        with lock:
            state["calls"] += 1
            alive = state["calls"] <= answers
        if not alive:
            raise ConnectionResetError("connection reset")

    return call


def test_a_lost_target_stops_the_load_after_the_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loadgen, "LOST_AFTER_S", 0.05)
    state, lock = {"calls": 0}, threading.Lock()
    calls = [dying_target(200, lock, state) for _ in range(2)]
    outcome = loadgen.run_threads(calls, loadgen.Plan(2, duration_s=30.0), (OSError,))
    assert outcome.elapsed_s < 5.0
    assert outcome.histogram.get_total_count() == 200
    lost = outcome.lost
    assert lost is not None
    # No request was in flight when the first one failed but the other slot's.
    assert sum(lost.in_flight_by_code.values()) in (1, 2)
    assert lost.refused > 0
    assert lost.refused_by_code == {"ConnectionResetError": lost.refused}
    assert outcome.errors_by_code == lost.in_flight_by_code
    assert 0 < outcome.up_s == lost.after_s < outcome.elapsed_s
    assert outcome.first_error == "connection reset"


def test_a_target_that_answers_again_is_not_lost() -> None:
    """Connection failures followed by answers are plain errors, and the run goes on."""
    counter = [0]
    lock = threading.Lock()

    def call() -> None:
        with lock:
            counter[0] += 1
            n = counter[0]
        if 100 <= n < 110:
            raise ConnectionResetError("reset")

    outcome = loadgen.run_threads([call], loadgen.Plan(1, requests=300), (OSError,))
    assert outcome.lost is None
    assert outcome.errors_by_code == {"ConnectionResetError": 10}
    assert outcome.histogram.get_total_count() == 290
    assert outcome.up_s == outcome.elapsed_s


def test_outstanding_stops_on_a_lost_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadgen, "LOST_AFTER_S", 0.05)
    gone = loadgen.Failure("UNAVAILABLE", "UNAVAILABLE: Socket closed (peer x)", connection=True)
    answered = [0]

    def bind(done: loadgen.Done) -> loadgen.Submit:
        def submit(slot: int) -> None:
            answered[0] += 1
            failure = gone if answered[0] > 50 else None
            threading.Thread(target=done, args=(slot, failure)).start()

        return submit

    outcome = loadgen.Outstanding(loadgen.Plan(4, duration_s=30.0), bind).run()
    assert outcome.elapsed_s < 5.0
    assert outcome.lost is not None
    assert outcome.histogram.get_total_count() == 50
    assert outcome.lost.refused_by_code["UNAVAILABLE"] > 0
    assert outcome.first_error == "UNAVAILABLE: Socket closed (peer x)"
