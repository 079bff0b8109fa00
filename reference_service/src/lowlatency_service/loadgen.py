"""Load loops that time requests into HDR histograms, independent of the transport.

Three ways to keep N requests in flight:

- ``run_threads``: closed loop, one thread per slot, each sending its next
  request when the previous one answered (the plain client).
- ``Outstanding``: closed loop, N outstanding asynchronous requests driven
  by one client thread: no thread per slot, so no GIL contention and no
  wake-ups between client threads.
- ``run_open_loop``: constant rate. Each slot has a fixed schedule (slot k
  sends at start + (k + i * N) / rate) and its latency is measured from the
  intended send time, so a stall of the service counts for every request it
  delayed, as wrk2 and HdrHistogram correct for coordinated omission. The
  plain service time (from the actual send) is kept in a second histogram.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from lowlatency_service.histogram import merge, new_histogram, record_ns

# A blocking request: returns when answered, raises one of the failure types otherwise.
Call = Callable[[], None]
# Completion of a slot's request: done(slot, error text or None).
Done = Callable[[int, "str | None"], None]
# Starts a request of a slot asynchronously; the transport then calls done.
Submit = Callable[[int], None]


@dataclass(frozen=True)
class Plan:
    """How much load: a request count or a duration, and optionally a rate."""

    concurrency: int
    requests: int | None = None
    duration_s: float | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if (self.requests is None) == (self.duration_s is None):
            raise ValueError("a plan has exactly one of requests and duration_s")


class _Budget:
    """Hands out permission to send; shared by all slots without a lock.

    ``next()`` on itertools.count is atomic under the GIL, and a deadline
    check needs no shared state, so no slot ever waits for another here.
    """

    def __init__(self, plan: Plan) -> None:
        self._limit = plan.requests
        self._tickets = itertools.count()
        duration_ns = int((plan.duration_s or 0.0) * 1e9)
        self._deadline_ns = time.perf_counter_ns() + duration_ns
        self._stopped = False

    def stop(self) -> None:
        """Refuse every later take(): ends the run early."""
        self._stopped = True

    def take(self) -> bool:
        if self._stopped:
            return False
        if self._limit is not None:
            return next(self._tickets) < self._limit
        return time.perf_counter_ns() < self._deadline_ns


@dataclass
class Outcome:
    """What one run measured; ``uncorrected`` only in open-loop mode."""

    histogram: HdrHistogram
    errors: int
    first_error: str | None
    elapsed_s: float
    started_at: float
    uncorrected: HdrHistogram | None = None


@dataclass
class _Slot:
    """Per-slot counters, so slots on different threads never share a histogram."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    uncorrected: HdrHistogram | None = None
    errors: int = 0
    first_error: str | None = None

    def fail(self, error: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = error


class Progress:
    """Completed-request count of a running load, for a progress line."""

    def __init__(self) -> None:
        self._slots: Sequence[_Slot] = ()

    def attach(self, slots: Sequence[_Slot]) -> None:
        self._slots = slots

    def completed(self) -> tuple[int, int]:
        """(answered, failed) so far; read without locks, so approximate while running."""
        slots = list(self._slots)
        return sum(s.histogram.get_total_count() for s in slots), sum(s.errors for s in slots)


def _collect(slots: Sequence[_Slot], started_ns: int, started_at: float) -> Outcome:
    elapsed_s = (time.perf_counter_ns() - started_ns) / 1e9
    first_error = next((s.first_error for s in slots if s.first_error), None)
    uncorrected = [s.uncorrected for s in slots if s.uncorrected is not None]
    return Outcome(
        histogram=merge(s.histogram for s in slots),
        errors=sum(s.errors for s in slots),
        first_error=first_error,
        elapsed_s=elapsed_s,
        started_at=started_at,
        uncorrected=merge(uncorrected) if uncorrected else None,
    )


def _run_slot_threads(
    target: Callable[[int, _Slot, _Budget], None], calls: int, plan: Plan, progress: Progress
) -> Outcome:
    slots = [_Slot() for _ in range(calls)]
    progress.attach(slots)
    started_at = time.time()
    started_ns = time.perf_counter_ns()
    budget = _Budget(plan)
    crashed: list[BaseException] = []

    def guarded(index: int, slot: _Slot) -> None:
        try:
            target(index, slot, budget)
        except BaseException as exc:
            # Not a failed request but a bug: end the run and re-raise it below.
            crashed.append(exc)
            budget.stop()

    threads = [
        threading.Thread(target=guarded, args=(i, slot), name=f"load-{i}", daemon=True)
        for i, slot in enumerate(slots)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if crashed:
        raise crashed[0]
    return _collect(slots, started_ns, started_at)


def run_threads(
    calls: Sequence[Call],
    plan: Plan,
    failures: tuple[type[BaseException], ...],
    progress: Progress | None = None,
) -> Outcome:
    """Closed loop: one thread per call (one call per slot)."""

    def loop(index: int, slot: _Slot, budget: _Budget) -> None:
        call = calls[index]
        clock = time.perf_counter_ns
        histogram = slot.histogram
        while budget.take():
            sent = clock()
            try:
                call()
            except failures as exc:
                slot.fail(str(exc))
                continue
            record_ns(histogram, clock() - sent)

    return _run_slot_threads(loop, len(calls), plan, progress or Progress())


def run_open_loop(
    calls: Sequence[Call],
    plan: Plan,
    failures: tuple[type[BaseException], ...],
    progress: Progress | None = None,
) -> Outcome:
    """Constant rate plan.rate over all slots, latency from the intended send time."""
    if plan.rate is None or plan.rate <= 0:
        raise ValueError("open loop needs a positive rate")
    slots_n = len(calls)
    gap_ns = 1e9 / plan.rate
    first_ns = time.perf_counter_ns()

    def loop(index: int, slot: _Slot, budget: _Budget) -> None:
        call = calls[index]
        clock = time.perf_counter_ns
        slot.uncorrected = new_histogram()
        step = 0
        while budget.take():
            intended = first_ns + int((index + step * slots_n) * gap_ns)
            step += 1
            wait_ns = intended - clock()
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
            sent = clock()
            try:
                call()
            except failures as exc:
                slot.fail(str(exc))
                continue
            answered = clock()
            record_ns(slot.histogram, answered - intended)
            record_ns(slot.uncorrected, answered - sent)

    return _run_slot_threads(loop, slots_n, plan, progress or Progress())


class Outstanding:
    """Closed loop of N outstanding asynchronous requests driven by one client thread.

    The transport's completion callback only time-stamps the answer and
    queues the slot; the client thread records it and sends the slot's next
    request. Sending from the transport's own polling thread instead stalls
    gRPC's older I/O path (measured: half the throughput, 100 ms tails).
    """

    def __init__(
        self, plan: Plan, bind: Callable[[Done], Submit], progress: Progress | None = None
    ) -> None:
        self._plan = plan
        self._submit = bind(self.done)
        self._progress = progress or Progress()
        self._slot = _Slot()
        self._sent_ns = [0] * plan.concurrency
        self._answers: queue.SimpleQueue[tuple[int, int, str | None]] = queue.SimpleQueue()

    def done(self, slot: int, error: str | None) -> None:
        self._answers.put((slot, time.perf_counter_ns(), error))

    def run(self) -> Outcome:
        self._progress.attach([self._slot])
        started_at = time.time()
        started_ns = time.perf_counter_ns()
        budget = _Budget(self._plan)
        histogram = self._slot.histogram
        sent_ns = self._sent_ns
        clock = time.perf_counter_ns
        in_flight = 0
        for slot in range(self._plan.concurrency):
            if budget.take():
                sent_ns[slot] = clock()
                self._submit(slot)
                in_flight += 1
        get = self._answers.get
        while in_flight:
            slot, answered, error = get()
            in_flight -= 1
            if error is None:
                record_ns(histogram, answered - sent_ns[slot])
            else:
                self._slot.fail(error)
            if budget.take():
                sent_ns[slot] = clock()
                self._submit(slot)
                in_flight += 1
        return _collect([self._slot], started_ns, started_at)
