"""``lowlatency-service compare``: default vs tuned vs the raw TCP floor, side by side.

Each server and each client runs in its own process with its own pinning,
as in production. The servers stay up for the whole comparison; every run
goes through all cases once, in an order rotated by one from the previous
run, so drift on a noisy machine (other VMs, frequency changes) hits every
case alike. Figures are medians over runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from hdrh.histogram import HdrHistogram

from lowlatency_service import allocator, cpu_dma_latency, runtime
from lowlatency_service.errors import UsageError
from lowlatency_service.histogram import SCHEMA_KEYS, Summary, merge, read_log
from lowlatency_service.procstats import read_proc
from lowlatency_service.report import table

SERVER_START_TIMEOUT_S = 60.0
_LISTENING = re.compile(r"listening on (\S+)")
DMA_SUFFIX = " dma0"
# Extra keys of bench's JSON kept per run (see bench.client_cost).
CLIENT_COST_KEYS = ("client_cpu_us_per_request", "client_context_switches_per_request")
# Added per run by compare itself, from the server process's CPU time.
SERVER_COST_KEY = "server_cpu_us_per_request"
DEFAULT_PAYLOAD_BYTES = 64
# --allocator: a payload the service copies into new objects on every request.
ALLOCATOR_PAYLOAD_BYTES = 1024


@dataclass(frozen=True)
class Pinning:
    server: str | None
    client: str | None


@dataclass(frozen=True)
class Case:
    """One benchmarked configuration."""

    kind: str  # "raw tcp", "default" or "tuned"
    concurrency: int
    pinning: Pinning
    dma_zero: bool = False
    allocator: str | None = None  # --allocator: system, jemalloc or mimalloc

    @property
    def name(self) -> str:
        return (
            f"{self.kind} c{self.concurrency}"
            + (DMA_SUFFIX if self.dma_zero else "")
            + (f" {self.allocator}" if self.allocator else "")
        )

    @property
    def server_key(self) -> tuple[str, str | None, str | None]:
        return self.kind, self.pinning.server, self.allocator


@dataclass
class CaseResult:
    runs: list[dict] = field(default_factory=list)
    histograms: list[HdrHistogram] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the case did not run (an absent allocator)

    def client_cost(self) -> dict[str, float]:
        """Median client CPU and context switches per request (gRPC clients only).

        Unlike latency, these barely move with other load on the host.
        """
        return self._cost(CLIENT_COST_KEYS)

    def server_cost(self) -> dict[str, float]:
        """Median server CPU per request (every case: compare reads it from /proc)."""
        return self._cost((SERVER_COST_KEY,))

    def _cost(self, keys: Sequence[str]) -> dict[str, float]:
        return {
            key: round(statistics.median(run[key] for run in self.runs), 2)
            for key in keys
            if self.runs and all(key in run for run in self.runs)
        }

    def median(self) -> Summary:
        def med(key: str) -> float:
            return round(statistics.median(float(run[key]) for run in self.runs), 1)

        return Summary(
            p50_us=med("p50_us"),
            p90_us=med("p90_us"),
            p99_us=med("p99_us"),
            p999_us=med("p999_us"),
            max_us=med("max_us"),
            requests=int(statistics.median(run["requests"] for run in self.runs)),
            errors=sum(int(run["errors"]) for run in self.runs),
            throughput_rps=med("throughput_rps"),
        )


def pinning_for(
    kind: str, concurrency: int, server_cpus: str, client_cpus: str, dma_zero: bool = False
) -> Pinning:
    """Where each side runs.

    default is grpcio as shipped, so it is left where the scheduler puts it.
    At concurrency 1, tuned and the raw floor share the server's core while
    idle states are left as they are: a wake-up on a core that is already
    awake costs nothing, where every cross-core wake-up of an idle vCPU
    costs tens of µs. With the idle-state latency held at 0 (dma0) that cost
    is gone and the two sides run in parallel on different cores. Under load
    the server gets the client's cores too (one worker thread per core):
    placement then barely matters, and sharing every CPU between both sides
    gives less (docs/reference-service-performance.md, "Pinning in compare").
    """
    if kind == "default":
        return Pinning(None, None)
    if concurrency == 1:
        return Pinning(server_cpus, client_cpus if dma_zero else server_cpus)
    both = runtime.parse_cpulist(server_cpus) + runtime.parse_cpulist(client_cpus)
    return Pinning(runtime.format_cpulist(sorted(set(both))), client_cpus)


def build_cases(
    concurrency_list: Sequence[int], server_cpus: str, client_cpus: str, dma_zero_too: bool
) -> list[Case]:
    cases = []
    for dma_zero in (False, True) if dma_zero_too else (False,):
        for concurrency in concurrency_list:
            for kind in ("raw tcp", "default", "tuned"):
                pinning = pinning_for(kind, concurrency, server_cpus, client_cpus, dma_zero)
                cases.append(Case(kind, concurrency, pinning, dma_zero))
    return cases


def allocator_cases(
    concurrency_list: Sequence[int], server_cpus: str, client_cpus: str
) -> list[Case]:
    """The tuned service under each allocator, at each concurrency (compare --allocator)."""
    return [
        Case(
            "tuned",
            concurrency,
            pinning_for("tuned", concurrency, server_cpus, client_cpus),
            False,
            name,
        )
        for concurrency in concurrency_list
        for name in allocator.ALLOCATORS
    ]


def allocator_ratios(medians: dict[str, Summary], concurrency_list: Sequence[int]) -> dict:
    """jemalloc and mimalloc over system malloc, per concurrency."""
    found: dict[str, dict] = {}
    for concurrency in concurrency_list:
        base = medians.get(f"tuned c{concurrency} system")
        for name in allocator.ALLOCATORS[1:]:
            other = medians.get(f"tuned c{concurrency} {name}")
            if base is None or other is None:
                continue
            found.setdefault(f"c{concurrency}", {})[f"{name}/system"] = {
                "p50": _ratio(other.p50_us, base.p50_us),
                "p99": _ratio(other.p99_us, base.p99_us),
                "p99.9": _ratio(other.p999_us, base.p999_us),
                "throughput": _ratio(other.throughput_rps, base.throughput_rps),
            }
    return found


def run_order(cases: Sequence[Case], run: int) -> list[Case]:
    """The cases of one run: the previous run's order rotated by one."""
    shift = run % len(cases)
    return list(cases[shift:]) + list(cases[:shift])


def _python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


_CLI = _python_module("lowlatency_service.cli")


def server_command(case: Case) -> list[str]:
    if case.kind == "raw tcp":
        command = [*_python_module("lowlatency_service.rawtcp"), "serve", "--port", "0"]
    else:
        command = [
            *_CLI,
            "serve",
            "--port",
            "0",
            "--profile",
            case.kind,
            "--grace",
            "1",
        ]
    if case.pinning.server is not None:
        command += ["--cpus", case.pinning.server]
    return command


def client_command(
    case: Case, args: argparse.Namespace, target: str, json_path: Path, log_path: Path
) -> list[str]:
    if case.kind == "raw tcp":
        command = [*_python_module("lowlatency_service.rawtcp"), "bench"]
    else:
        command = [*_CLI, "bench", "--profile", case.kind]
    command += [
        "--target",
        target,
        "--concurrency",
        str(case.concurrency),
        "--requests",
        str(args.requests),
        "--warmup",
        str(args.warmup),
        "--payload-bytes",
        str(args.payload_bytes),
        "--json",
        str(json_path),
        "--hdr-log",
        str(log_path),
    ]
    if case.pinning.client is not None:
        command += ["--cpus", case.pinning.client]
    return command


@dataclass(frozen=True)
class Server:
    address: str
    pid: int


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a whole process (all its threads) so far.

    From /proc/PID/stat, in clock ticks (10 ms at the usual 100 Hz): whole
    runs of thousands of requests, not single requests.
    """
    return read_proc(pid).cpu_s


@contextmanager
def running_server(
    command: list[str], workdir: Path, label: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start a server process, yield its address as printed and its pid, stop it with SIGTERM."""
    out_path = workdir / f"{label}.out"
    err_path = workdir / f"{label}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            match = _LISTENING.search(out_path.read_text(encoding="utf-8", errors="replace"))
            if match:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                detail = err_path.read_text(encoding="utf-8", errors="replace").strip()[-2000:]
                raise RuntimeError(f"{label} server did not start: {shlex.join(command)}\n{detail}")
            time.sleep(0.05)
        yield Server(match.group(1), process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _client_timeout(args: argparse.Namespace) -> float:
    # Generous: 5 ms per request is ten times the slowest figures seen here.
    return 120.0 + (args.requests + args.warmup) * 0.005


class CaseFailed(Exception):
    """A bench client exited with an error; the message has its command and output."""


def run_case(
    case: Case, args: argparse.Namespace, server: Server, workdir: Path, run: int
) -> tuple[dict, HdrHistogram]:
    """One bench client run: its JSON (with the server's CPU per request) and its histogram."""
    stem = f"{case.name.replace(' ', '-')}-run{run}"
    json_path, log_path = workdir / f"{stem}.json", workdir / f"{stem}.hlog"
    command = client_command(case, args, server.address, json_path, log_path)
    hold = cpu_dma_latency.held_at_zero() if case.dma_zero else nullcontext()
    with hold:
        server_cpu_before = process_cpu_seconds(server.pid)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_client_timeout(args), check=False
        )
        server_cpu_s = process_cpu_seconds(server.pid) - server_cpu_before
    if done.returncode != 0 or not json_path.exists():
        detail = (done.stderr.strip() or done.stdout.strip())[-1000:]
        raise CaseFailed(f"exit {done.returncode}: {shlex.join(command)}\n{detail}")
    with open(json_path, encoding="utf-8") as handle:
        result = json.load(handle)
    # The server also served the client's warm-up and channel set-up; spread
    # over every request it answered (the client counts after warm-up only).
    answered = max(int(result["requests"]) + int(result["errors"]) + args.warmup, 1)
    result[SERVER_COST_KEY] = round(server_cpu_s * 1e6 / answered, 1)
    return result, read_log(str(log_path))


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def ratios(medians: dict[str, Summary], concurrency: int, suffix: str) -> dict[str, dict]:
    """tuned over default, and each gRPC case over the raw floor, at one concurrency."""
    found: dict[str, dict] = {}
    names = {kind: f"{kind} c{concurrency}{suffix}" for kind in ("raw tcp", "default", "tuned")}
    pairs = (("tuned", "default"), ("tuned", "raw tcp"), ("default", "raw tcp"))
    for top, bottom in pairs:
        a, b = medians.get(names[top]), medians.get(names[bottom])
        if a is None or b is None:
            continue
        found[f"{top}/{bottom}"] = {
            "p50": _ratio(a.p50_us, b.p50_us),
            "p99": _ratio(a.p99_us, b.p99_us),
            "p99.9": _ratio(a.p999_us, b.p999_us),
            "throughput": _ratio(a.throughput_rps, b.throughput_rps),
        }
    return found


@dataclass(frozen=True)
class Target:
    """One performance target of the project, checked against the medians."""

    description: str
    value: float
    limit: float
    met: bool

    def line(self) -> str:
        verdict = "met" if self.met else "NOT MET"
        return f"{verdict:>7}  {self.description}: {self.value:.2f} (limit {self.limit:.2f})"


def targets(medians: dict[str, Summary]) -> list[Target]:
    """The targets of the foundation issue, for the cases this comparison ran."""
    found = []
    default1, tuned1 = medians.get("default c1"), medians.get("tuned c1")
    if default1 and tuned1:
        ratio = tuned1.p50_us / default1.p50_us
        found.append(Target("c1 tuned p50 / default p50", ratio, 0.6, ratio <= 0.6))
        found.append(Target("c1 tuned p50 us", tuned1.p50_us, 350.0, tuned1.p50_us < 350.0))
    if tuned1:
        found.append(Target("c1 tuned p99.9 / p50", tuned1.tail_ratio, 2.0, tuned1.tail_ratio <= 2))
    default16, tuned16 = medians.get("default c16"), medians.get("tuned c16")
    if default16 and tuned16:
        ratio = tuned16.throughput_rps / default16.throughput_rps
        found.append(Target("c16 tuned / default throughput", ratio, 2.0, ratio >= 2.0))
    dma1 = medians.get("tuned c1" + DMA_SUFFIX)
    if dma1:
        found.append(Target("c1 tuned p50 us, dma0", dma1.p50_us, 200.0, dma1.p50_us < 200.0))
        found.append(
            Target("c1 tuned p99.9 / p50, dma0", dma1.tail_ratio, 2.0, dma1.tail_ratio <= 2)
        )
    return found


def case_cpu_count(case: Case) -> int:
    """How many CPUs server and client of a case may use together (unpinned: all allowed)."""
    allowed = runtime.allowed_cpus()
    used: set[int] = set()
    for cpus in (case.pinning.server, case.pinning.client):
        used.update(allowed if cpus is None else runtime.parse_cpulist(cpus))
    return len(used)


def cpu_per_request(result: CaseResult) -> float | None:
    """Client plus server CPU per request, median over runs (gRPC cases only)."""
    client, server = result.client_cost(), result.server_cost()
    if "client_cpu_us_per_request" not in client or SERVER_COST_KEY not in server:
        return None
    return client["client_cpu_us_per_request"] + server[SERVER_COST_KEY]


def cpu_ceiling(
    cases: Sequence[Case], results: dict[str, CaseResult], medians: dict[str, Summary]
) -> dict[str, dict]:
    """Above concurrency 1: how far tuned's throughput could go on its CPUs, against default.

    With every CPU busy, throughput is at most CPUs x 1 s / (CPU per request
    of client and server together). Tuned's ceiling over default's measured
    throughput bounds the throughput ratio that these per-request costs
    allow; `needed_us` is the CPU per request at which tuned's ceiling would
    reach the target's 2 x default.
    """
    found: dict[str, dict] = {}
    for case in cases:
        if case.kind != "tuned" or case.concurrency == 1:
            continue
        default_name = case.name.replace("tuned", "default", 1)
        tuned_us = cpu_per_request(results[case.name])
        default_us = cpu_per_request(results[default_name])
        default = medians.get(default_name)
        if tuned_us is None or default_us is None or default is None or not default.throughput_rps:
            continue
        cpus = case_cpu_count(case)
        ceiling = cpus * 1e6 / tuned_us
        found[case.name] = {
            "cpus": cpus,
            "tuned_cpu_us_per_request": round(tuned_us, 1),
            "default_cpu_us_per_request": round(default_us, 1),
            "ceiling_rps": round(ceiling),
            "ceiling_over_default": _ratio(ceiling, default.throughput_rps),
            "needed_us": round(cpus * 1e6 / (2 * default.throughput_rps), 1),
        }
    return found


def _default_cpus() -> tuple[str, str]:
    allowed = runtime.allowed_cpus()
    return str(allowed[0]), str(allowed[1] if len(allowed) > 1 else allowed[0])


def _cpus(flag: str, text: str) -> str:
    """A validated cpulist; the message of a bad one names compare's own flag."""
    try:
        return runtime.format_cpulist(runtime.resolve_cpus(text) or [])
    except UsageError as exc:
        raise UsageError(str(exc).replace("--cpus", flag, 1)) from None


def _write(path: str, write: Callable[[str], None]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write(path)


def busy_warning(load_1min: float, cpus: int) -> str | None:
    """A warning when other work was running at the start: pinned cases suffer most.

    A process pinned to a core that a neighbour keeps busy waits for its
    time slice (milliseconds); an unpinned one moves. On such a host the
    tuned figures say more about the neighbours than about the tuning.
    """
    if load_1min < 1.0:
        return None
    return (
        f"warning: load average {load_1min:.1f} on {cpus} CPUs before the runs; other work "
        "competes with the pinned cases, so compare ratios within this run only"
    )


def _dma_cases(args: argparse.Namespace) -> tuple[bool, str]:
    """Whether to add the idle-latency-0 cases, and the line that says so (or why not)."""
    if args.no_cpu_dma_latency:
        return False, "left out (--no-cpu-dma-latency)"
    reason = cpu_dma_latency.unavailable_reason()
    if reason is not None:
        return False, f"cases with {cpu_dma_latency.DEVICE} held at 0 left out: {reason}"
    return True, f"cases ending in '{DMA_SUFFIX.strip()}' hold {cpu_dma_latency.DEVICE} at 0"


def _start(case: Case, workdir: Path, label: str, stack: ExitStack) -> Server | str:
    """The case's server, or why it is skipped (its allocator absent, or not in its maps)."""
    if case.allocator is None:
        return stack.enter_context(running_server(server_command(case), workdir, label))
    reason = allocator.absent_reason(case.allocator)
    if reason is not None:
        return reason
    path = allocator.library(case.allocator)
    env = allocator.environment(path, os.environ)
    server = stack.enter_context(running_server(server_command(case), workdir, label, env))
    if path is not None and not allocator.mapped(server.pid, path):
        return f"LD_PRELOAD={path} set, but it is not in /proc/{server.pid}/maps"
    return server


def measure(cases: Sequence[Case], args: argparse.Namespace) -> dict[str, CaseResult]:
    """Start every server once, then run all cases args.runs times in rotating order."""
    results = {case.name: CaseResult() for case in cases}
    tty = sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="lowlatency-compare-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        servers: dict[tuple, Server | str] = {}
        for case in cases:
            if case.server_key not in servers:
                label = f"{case.kind.replace(' ', '-')}-server-{len(servers)}"
                servers[case.server_key] = _start(case, workdir, label, stack)
            started = servers[case.server_key]
            if isinstance(started, str):
                results[case.name].skipped = started
        cases = [case for case in cases if results[case.name].skipped is None]
        for run_index in range(args.runs):
            for position, case in enumerate(run_order(cases, run_index), 1):
                if tty:
                    sys.stderr.write(
                        f"\r\033[Krun {run_index + 1}/{args.runs}, "
                        f"case {position}/{len(cases)}: {case.name}"
                    )
                    sys.stderr.flush()
                result = results[case.name]
                try:
                    server = servers[case.server_key]
                    assert isinstance(server, Server)
                    outcome, histogram = run_case(case, args, server, workdir, run_index)
                except CaseFailed as exc:
                    result.failures.append(str(exc))
                    continue
                result.runs.append(outcome)
                result.histograms.append(histogram)
        if tty:
            sys.stderr.write("\r\033[K")
    return results


def _allocator_keys(case: Case, result: CaseResult) -> dict[str, object]:
    """compare --allocator's keys of a case (none without it)."""
    if case.allocator is None:
        return {}
    return {
        "allocator": case.allocator,
        "allocator_library": allocator.library(case.allocator),
        "skipped": result.skipped,
    }


def _json_report(
    args: argparse.Namespace,
    cases: Sequence[Case],
    results: dict[str, CaseResult],
    extra: dict[str, object],
) -> dict[str, object]:
    medians = {name: r.median() for name, r in results.items() if r.runs}
    report: dict[str, object] = {
        "command": shlex.join(["lowlatency-service", *sys.argv[1:]]),
        "grpc_version": grpc.__version__,
        "engine_experiments": runtime.engine_experiments_status(),
        "runs": args.runs,
        "requests": args.requests,
        "warmup": args.warmup,
        "payload_bytes": args.payload_bytes,
    }
    report.update(extra)
    report["cases"] = {
        case.name: {
            "kind": case.kind,
            "concurrency": case.concurrency,
            "cpus_server": case.pinning.server,
            "cpus_client": case.pinning.client,
            "cpu_dma_latency_zero": case.dma_zero,
            **_allocator_keys(case, results[case.name]),
            "median": medians[case.name].to_dict() if case.name in medians else None,
            "runs": [
                {
                    key: run[key]
                    for key in (*SCHEMA_KEYS, *CLIENT_COST_KEYS, SERVER_COST_KEY)
                    if key in run
                }
                for run in results[case.name].runs
            ],
            "client_cost_median": results[case.name].client_cost(),
            "server_cost_median": results[case.name].server_cost(),
            "failures": results[case.name].failures,
        }
        for case in cases
    }
    return report


def _plan(
    args: argparse.Namespace, server_cpus: str, client_cpus: str
) -> tuple[list[Case], bool, str]:
    """The cases, whether dma0 cases are among them and why; settles the payload size."""
    if args.payload_bytes is None:
        args.payload_bytes = ALLOCATOR_PAYLOAD_BYTES if args.allocator else DEFAULT_PAYLOAD_BYTES
    if args.allocator:
        cases = allocator_cases(args.concurrency_list, server_cpus, client_cpus)
        return cases, False, "left out (--allocator)"
    dma_zero_too, dma_note = _dma_cases(args)
    cases = build_cases(args.concurrency_list, server_cpus, client_cpus, dma_zero_too)
    return cases, dma_zero_too, dma_note


def _print_ratios(key: str, pairs: dict[str, dict]) -> None:
    for pair, values in pairs.items():
        shown = "  ".join(f"{k} {v:.2f}" for k, v in values.items() if v is not None)
        print(f"{key:>9}  {pair:<16} {shown}")


def _allocator_lines(
    args: argparse.Namespace, results: dict[str, CaseResult], medians: dict[str, Summary]
) -> dict[str, dict]:
    """Print the skipped cases and each allocator against system malloc; return the ratios."""
    for name, result in results.items():
        if result.skipped:
            print(f"{name:>18}  skipped: {result.skipped}")
    if not args.allocator:
        return {}
    found = allocator_ratios(medians, args.concurrency_list)
    for key, pairs in found.items():
        _print_ratios(key, pairs)
    return found


def run(args: argparse.Namespace) -> int:
    default_server, default_client = _default_cpus()
    server_cpus = _cpus("--cpus-server", args.cpus_server or default_server)
    client_cpus = _cpus("--cpus-client", args.cpus_client or default_client)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'lowlatency-service[plot]'")
    cases, dma_zero_too, dma_note = _plan(args, server_cpus, client_cpus)
    print(f"cpu_dma_latency: {dma_note}", file=sys.stderr)

    load_before = os.getloadavg()
    results = measure(cases, args)
    load_after = os.getloadavg()
    busy = busy_warning(load_before[0], len(runtime.allowed_cpus()))
    if busy:
        print(busy, file=sys.stderr)

    medians = {name: r.median() for name, r in results.items() if r.runs}
    print(
        f"{args.runs} alternating runs of {args.requests} requests per case, medians; "
        f"tuned and raw tcp pinned: server {server_cpus}, client {client_cpus} "
        f"(at c1 without dma0 the client shares the server's CPUs; above c1 the server "
        f"gets both)"
    )
    print(table(list(medians.items())))
    for name, result in results.items():
        cost, server = result.client_cost(), result.server_cost()
        if cost and server:
            print(
                f"{name:>18}  client {cost['client_cpu_us_per_request']:.0f} us CPU, "
                f"{cost['client_context_switches_per_request']:.2f} context switches; "
                f"server {server[SERVER_COST_KEY]:.0f} us CPU per request"
            )
    by_allocator = _allocator_lines(args, results, medians)
    ceilings = {} if args.allocator else cpu_ceiling(cases, results, medians)
    for name, bound in ceilings.items():
        print(
            f"{name:>18}  CPU ceiling {bound['cpus']} CPUs / "
            f"{bound['tuned_cpu_us_per_request']:.0f} us per request = {bound['ceiling_rps']} "
            f"req/s, {bound['ceiling_over_default']:.2f} x "
            f"default's throughput (2 x needs {bound['needed_us']:.0f} us per request; default "
            f"uses {bound['default_cpu_us_per_request']:.0f})"
        )
    all_ratios = {}
    for suffix in ("", DMA_SUFFIX) if dma_zero_too else ("",):
        for concurrency in args.concurrency_list:
            key = f"c{concurrency}{suffix}"
            all_ratios[key] = ratios(medians, concurrency, suffix)
            _print_ratios(key, all_ratios[key])
    checked = targets(medians)
    for target in checked:
        print(target.line())
    failures = [f"{name}: {f}" for name, r in results.items() for f in r.failures]
    for failure in failures:
        print(f"case failed: {failure}", file=sys.stderr)

    if args.json:
        extra = {
            "cpus": {"server": server_cpus, "client": client_cpus},
            "cpu_dma_latency": dma_note,
            "load_average": {"before": load_before, "after": load_after},
            "busy_warning": busy,
            "ratios": all_ratios,
            "cpu_ceilings": ceilings,
            **({"allocator_ratios": by_allocator} if args.allocator else {}),
            "targets": [vars(t) for t in checked],
        }
        report = _json_report(args, cases, results, extra)

        def dump(path: str) -> None:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=2)
                handle.write("\n")

        _write(args.json, dump)
    if args.plot:
        from lowlatency_service.plot import plot_percentiles  # noqa: PLC0415  # needs matplotlib

        curves = {name: merge(r.histograms) for name, r in results.items() if r.histograms}
        title = f"lowlatency-service compare, {args.runs} runs x {args.requests} requests per case"
        _write(args.plot, lambda path: plot_percentiles(curves, path, title))
    return 1 if failures else 0
