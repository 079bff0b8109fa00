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

A failed request is handed over as a ``Failure`` (status code, one line,
whether the connection failed). The successful path only times and records:
failures are counted under one lock, where the target's loss is told from
ordinary errors (see ``_Watch``).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hdrh.histogram import HdrHistogram

from lowlatency_service.histogram import merge, new_histogram, record_ns

if TYPE_CHECKING:
    from lowlatency_service.soak import WindowRecorder, WindowSet

# A blocking request: returns when answered, raises one of the failure types otherwise.
Call = Callable[[], None]
# Starts a request of a slot asynchronously; the transport then calls done.
Submit = Callable[[int], None]

# A target without a successful reply for this long after a connection failure is lost.
LOST_AFTER_S = 1.0


@dataclass(frozen=True)
class Failure:
    """One failed request: a status code, one line for people, and whether the connection failed.

    ``connection`` marks failures that may mean the target itself is gone
    (gRPC UNAVAILABLE or CANCELLED, a reset TCP connection); only these
    start the loss watch.
    """

    code: str
    line: str
    connection: bool = False


# Completion of a slot's request: done(slot, None when answered, else the failure).
Done = Callable[[int, "Failure | None"], None]
# Turns an exception a Call raised into a Failure.
Classify = Callable[[BaseException], Failure]


def plain_failure(exc: BaseException) -> Failure:
    """Failure of a transport without status codes: the exception's class names it."""
    return Failure(type(exc).__name__, " ".join(str(exc).split()), isinstance(exc, ConnectionError))


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


@dataclass(frozen=True)
class Lost:
    """How the target was lost: when, what the requests then in flight ended with, refusals."""

    after_s: float  # seconds into the run of the first connection failure
    at: float  # the same instant, seconds since the epoch
    in_flight_by_code: dict[str, int]  # sent before it, failed at or after it
    refused: int  # sent after it and failed: the channel refused them unsent
    refused_by_code: dict[str, int]


@dataclass
class Outcome:
    """What one run measured; ``uncorrected`` only in open-loop mode.

    ``errors_by_code`` counts requests that were sent and failed, including
    those in flight when the target was lost; ``lost`` is None unless the
    target was lost and did not come back.
    """

    histogram: HdrHistogram
    errors_by_code: dict[str, int]
    first_error: str | None
    elapsed_s: float
    started_at: float
    uncorrected: HdrHistogram | None = None
    lost: Lost | None = None

    @property
    def errors(self) -> int:
        return sum(self.errors_by_code.values())

    @property
    def up_s(self) -> float:
        """The time the target was up: the whole run, or until it was lost."""
        return self.lost.after_s if self.lost is not None else self.elapsed_s


@dataclass
class _Slot:
    """Per-slot histograms, so slots on different threads never share one."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    uncorrected: HdrHistogram | None = None
    windows: WindowRecorder | None = None  # soak only: the slot's histogram of its window


class _Watch:
    """Counts failures and tells a lost target from failed requests (failure path only).

    The first connection failure after the last successful reply marks the
    target as lost at that instant: requests sent before it and failing are
    "in flight", those sent after it and failing were refused unsent. A
    successful reply after it means the target came back: the counts go
    back to plain errors. Once LOST_AFTER_S has passed without one, the next
    failure stops the load.
    """

    def __init__(
        self,
        slots: Sequence[_Slot],
        budget: _Budget,
        started_ns: int,
        windows: WindowSet | None = None,
    ) -> None:
        self._slots = slots
        self._budget = budget
        self._started_ns = started_ns
        self._windows = windows
        self._lock = threading.Lock()
        self.errors: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.first_error: str | None = None
        self.lost_ns: int | None = None
        self._answered_at_loss = 0

    def _answered(self) -> int:
        return sum(slot.histogram.get_total_count() for slot in self._slots)

    def failed(self, failure: Failure, sent_ns: int) -> None:
        now = time.perf_counter_ns()
        with self._lock:
            if self._windows is not None:
                self._windows.failed(now)
            if self.first_error is None:
                self.first_error = failure.line
            if self.lost_ns is not None and self._answered() > self._answered_at_loss:
                self._back()
            if self.lost_ns is None:
                if not failure.connection:
                    self.errors[failure.code] += 1
                    return
                self.lost_ns = now
                self._answered_at_loss = self._answered()
            if sent_ns < self.lost_ns:
                self.in_flight[failure.code] += 1
            else:
                self.refused[failure.code] += 1
            if now - self.lost_ns >= LOST_AFTER_S * 1e9:
                self._budget.stop()

    def _back(self) -> None:
        self.errors.update(self.in_flight)
        self.errors.update(self.refused)
        self.in_flight.clear()
        self.refused.clear()
        self.lost_ns = None

    def failed_count(self) -> int:
        return sum(self.errors.values()) + sum(self.in_flight.values()) + sum(self.refused.values())

    def collect(self, started_at: float) -> tuple[dict[str, int], Lost | None]:
        with self._lock:
            if self.lost_ns is not None and self._answered() > self._answered_at_loss:
                self._back()
            if self.lost_ns is None:
                return dict(self.errors), None
            after_s = (self.lost_ns - self._started_ns) / 1e9
            lost = Lost(
                after_s=round(after_s, 3),
                at=started_at + after_s,
                in_flight_by_code=dict(self.in_flight),
                refused=sum(self.refused.values()),
                refused_by_code=dict(self.refused),
            )
            return dict(self.errors + self.in_flight), lost


class Progress:
    """Completed-request count of a running load, for a progress line.

    ``windows`` (a soak) also splits the run into windows: the load starts
    them with the run and records every answer into its window too.
    """

    def __init__(self, windows: WindowSet | None = None) -> None:
        self.windows = windows
        self._slots: Sequence[_Slot] = ()
        self._watch: _Watch | None = None

    def attach(self, slots: Sequence[_Slot], watch: _Watch) -> None:
        self._slots = slots
        self._watch = watch

    def completed(self) -> tuple[int, int]:
        """(answered, failed) so far; read without locks, so approximate while running."""
        slots = list(self._slots)
        failed = self._watch.failed_count() if self._watch is not None else 0
        return sum(s.histogram.get_total_count() for s in slots), failed


def _collect(slots: Sequence[_Slot], watch: _Watch, started_ns: int, started_at: float) -> Outcome:
    elapsed_s = (time.perf_counter_ns() - started_ns) / 1e9
    errors_by_code, lost = watch.collect(started_at)
    uncorrected = [s.uncorrected for s in slots if s.uncorrected is not None]
    return Outcome(
        histogram=merge(s.histogram for s in slots),
        errors_by_code=errors_by_code,
        first_error=watch.first_error,
        elapsed_s=elapsed_s,
        started_at=started_at,
        uncorrected=merge(uncorrected) if uncorrected else None,
        lost=lost,
    )


def _run_slot_threads(
    target: Callable[[int, _Slot, _Budget, _Watch], None],
    calls: int,
    plan: Plan,
    progress: Progress,
) -> Outcome:
    windows = progress.windows
    slots = [_Slot(windows=windows.recorder() if windows else None) for _ in range(calls)]
    started_at = time.time()
    started_ns = time.perf_counter_ns()
    budget = _Budget(plan)
    watch = _Watch(slots, budget, started_ns, windows)
    if windows is not None:
        windows.start(started_ns, started_at)
    progress.attach(slots, watch)
    crashed: list[BaseException] = []

    def guarded(index: int, slot: _Slot) -> None:
        try:
            target(index, slot, budget, watch)
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
    return _collect(slots, watch, started_ns, started_at)


def run_threads(
    calls: Sequence[Call],
    plan: Plan,
    failures: tuple[type[BaseException], ...],
    progress: Progress | None = None,
    classify: Classify = plain_failure,
) -> Outcome:
    """Closed loop: one thread per call (one call per slot)."""

    def loop(index: int, slot: _Slot, budget: _Budget, watch: _Watch) -> None:
        call = calls[index]
        clock = time.perf_counter_ns
        histogram = slot.histogram
        windows = slot.windows
        while budget.take():
            sent = clock()
            try:
                call()
            except failures as exc:
                watch.failed(classify(exc), sent)
                continue
            answered = clock()
            record_ns(histogram, answered - sent)
            if windows is not None:
                windows.record(answered, answered - sent)

    return _run_slot_threads(loop, len(calls), plan, progress or Progress())


def run_open_loop(
    calls: Sequence[Call],
    plan: Plan,
    failures: tuple[type[BaseException], ...],
    progress: Progress | None = None,
    classify: Classify = plain_failure,
) -> Outcome:
    """Constant rate plan.rate over all slots, latency from the intended send time."""
    if plan.rate is None or plan.rate <= 0:
        raise ValueError("open loop needs a positive rate")
    slots_n = len(calls)
    gap_ns = 1e9 / plan.rate
    first_ns = time.perf_counter_ns()

    def loop(index: int, slot: _Slot, budget: _Budget, watch: _Watch) -> None:
        call = calls[index]
        clock = time.perf_counter_ns
        slot.uncorrected = new_histogram()
        windows = slot.windows
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
                watch.failed(classify(exc), sent)
                continue
            answered = clock()
            record_ns(slot.histogram, answered - intended)
            record_ns(slot.uncorrected, answered - sent)
            if windows is not None:
                windows.record(answered, answered - intended)

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
        windows = self._progress.windows
        self._slot = _Slot(windows=windows.recorder() if windows else None)
        self._sent_ns = [0] * plan.concurrency
        self._answers: queue.SimpleQueue[tuple[int, int, Failure | None]] = queue.SimpleQueue()

    def done(self, slot: int, failure: Failure | None) -> None:
        self._answers.put((slot, time.perf_counter_ns(), failure))

    def run(self) -> Outcome:
        started_at = time.time()
        started_ns = time.perf_counter_ns()
        budget = _Budget(self._plan)
        window_set = self._progress.windows
        watch = _Watch([self._slot], budget, started_ns, window_set)
        if window_set is not None:
            window_set.start(started_ns, started_at)
        self._progress.attach([self._slot], watch)
        histogram = self._slot.histogram
        windows = self._slot.windows
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
            slot, answered, failure = get()
            in_flight -= 1
            if failure is None:
                record_ns(histogram, answered - sent_ns[slot])
                if windows is not None:
                    windows.record(answered, answered - sent_ns[slot])
            else:
                watch.failed(failure, sent_ns[slot])
            if budget.take():
                sent_ns[slot] = clock()
                self._submit(slot)
                in_flight += 1
        return _collect([self._slot], watch, started_ns, started_at)
