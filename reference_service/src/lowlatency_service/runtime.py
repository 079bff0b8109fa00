"""Runtime profiles shared by the server (``serve``) and the client (``bench``).

Two profiles:

``default``
    grpcio as shipped: no affinity, gRPC's own defaults, Python's GC as is.
``tuned``
    every measure below that the measurements on the development machine
    (``MEASUREMENTS.md``, ``README.md``) showed to help, or that protects the
    service without costing latency. ``describe(profile)`` lists them by name.

Process-level measures must be in place before ``import grpc`` (the threads
gRPC core starts inherit the affinity and read ``GRPC_EXPERIMENTS`` once), so
``cli.main`` calls :func:`apply_process_profile` before it imports a
subcommand. This module therefore never imports grpc at module level.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import importlib.util
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from lowlatency_service.errors import UsageError

PROFILES = ("default", "tuned")

# gRPC's newer EventEngine I/O path costs the client 3 extra context switches per
# request at concurrency 1; the older iomgr path is still built in and is
# selected with these experiment names (not a stable API: see
# engine_experiments_status()).
ENGINE_OFF_EXPERIMENTS = (
    "-event_engine_client",
    "-event_engine_listener",
    "-event_engine_for_all_other_endpoints",
)

# Largest EchoRequest/EchoReply: 1 KiB payload plus a few fixed fields.
MESSAGE_LIMIT_BYTES = 4096

# mlockall(2) flags from <sys/mman.h>
_MCL_CURRENT = 1
_MCL_FUTURE = 2
_CAP_IPC_LOCK = 14

# Outcome of the process-level measures, filled in by apply_process_profile().
_process_status: dict[str, str] = {}


@dataclass(frozen=True)
class Measure:
    """One named runtime measure of a profile, as reported in logs and JSON."""

    name: str
    summary: str
    status: str = "applied"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def parse_cpulist(text: str, limit: int | None = None) -> list[int]:
    """Parse a Linux cpulist such as "0-2,5" into sorted CPU ids (ValueError when malformed).

    With ``limit``, ids from ``limit`` up are refused before any range is built,
    so "0-2000000000" costs nothing.
    """
    cpus: set[int] = set()
    if not text or not text.strip():
        raise ValueError("empty CPU list")
    for part in text.strip().split(","):
        first, sep, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if sep else low
        except ValueError:
            raise ValueError(f"bad CPU list item {part!r} in {text!r}") from None
        if low < 0 or high < low:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        if limit is not None and high >= limit:
            raise ValueError(f"CPU {high} in {text!r} beyond this host's CPUs 0-{limit - 1}")
        cpus.update(range(low, high + 1))
    return sorted(cpus)


def format_cpulist(cpus: list[int]) -> str:
    """Inverse of parse_cpulist: [0, 1, 2, 5] -> "0-2,5"."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def resolve_cpus(text: str | None) -> list[int] | None:
    """Validate a --cpus value against the CPUs this process may run on."""
    if text is None:
        return None
    try:
        # Configured CPUs, offline ones included (SMT siblings taken offline keep their ids).
        cpus = parse_cpulist(text, limit=os.sysconf("SC_NPROCESSORS_CONF"))
    except ValueError as exc:
        raise UsageError(f"--cpus: {exc}") from None
    allowed = allowed_cpus()
    outside = sorted(set(cpus) - set(allowed))
    if outside:
        raise UsageError(
            f"--cpus {text}: CPU(s) {format_cpulist(outside)} not available to this process "
            f"(allowed: {format_cpulist(allowed)})"
        )
    return cpus


def merged_experiments(user_value: str | None) -> str:
    """The user's GRPC_EXPERIMENTS plus the engine-off names the user did not mention."""
    user = [item.strip() for item in (user_value or "").split(",") if item.strip()]
    mentioned = {item.lstrip("-") for item in user}
    ours = [item for item in ENGINE_OFF_EXPERIMENTS if item.lstrip("-") not in mentioned]
    return ",".join(user + ours)


def _has_cap_ipc_lock() -> bool:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_IPC_LOCK & 1)
    return False


def lock_memory() -> str:
    """mlockall(MCL_CURRENT|MCL_FUTURE) where permitted; returns what happened, never raises.

    Locked pages cannot be swapped out or reclaimed, so no request ever waits
    on a major page fault. Without CAP_IPC_LOCK and with a finite
    RLIMIT_MEMLOCK it is skipped: MCL_FUTURE would make every later
    allocation beyond the limit fail, which is worse than a page fault.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and not _has_cap_ipc_lock():
        return (
            f"skipped: RLIMIT_MEMLOCK is {soft} bytes and no CAP_IPC_LOCK "
            "(give the service LimitMEMLOCK=infinity)"
        )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        return f"not permitted: mlockall: {os.strerror(ctypes.get_errno())}"
    return "applied"


def apply_process_profile(args: argparse.Namespace) -> None:
    """Apply the process-level measures of args.profile; call before importing grpc.

    Commands without a profile (compare) are left alone. ``--cpus`` is honoured
    with either profile because the user asked for it explicitly.
    """
    profile = getattr(args, "profile", None)
    if profile is None:
        return
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    if "grpc" in sys.modules:
        raise RuntimeError("apply_process_profile() must run before grpc is imported")
    _process_status.clear()
    cpus = resolve_cpus(getattr(args, "cpus", None))
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
        _process_status["cpu-affinity"] = f"applied: {format_cpulist(cpus)}"
    if profile != "tuned":
        return
    user_value = os.environ.get("GRPC_EXPERIMENTS")
    os.environ["GRPC_EXPERIMENTS"] = merged_experiments(user_value)
    _process_status["grpc-engine-off"] = (
        f"applied: GRPC_EXPERIMENTS={os.environ['GRPC_EXPERIMENTS']}"
        + (" (merged with the user's value)" if user_value else "")
    )
    _process_status["memory-lock"] = lock_memory()


def channel_options(profile: str) -> list[tuple[str, int]]:
    """Client channel arguments of a profile (grpc.insecure_channel(options=...))."""
    if profile != "tuned":
        return []
    return [
        # Long-lived channels: ping an idle connection so a dead peer or a
        # dropped NAT entry is found before a request waits on it.
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # A failed call must show up as an error in the histogram, not as a
        # silently retried, doubled latency; also saves the retry buffering.
        ("grpc.enable_retries", 0),
        # Messages are < 4 KiB and the default 64 KiB windows never fill, so
        # BDP probing only adds PING frames (and peer wake-ups) to the path.
        ("grpc.http2.bdp_probe", 0),
        ("grpc.max_receive_message_length", MESSAGE_LIMIT_BYTES),
        ("grpc.max_send_message_length", MESSAGE_LIMIT_BYTES),
    ]


# Connections that have not completed the HTTP/2 preface and SETTINGS within
# this are closed (gRPC's default is 120 s): an honest client needs one round
# trip.
HANDSHAKE_TIMEOUT_MS = 5_000


# How long an Echo call may go without its request message, counted from its
# arrival (the wait for a handler thread included), before the server cancels
# it. grpcio gives a call a handler thread when its HEADERS arrive, and the
# thread waits there for the message; without a bound, as many peers as there
# are threads, sending HEADERS and nothing else, stall the service. An honest
# client sends the message with the HEADERS and never comes near this.
READ_TIMEOUT_S = {"default": 5.0, "tuned": 1.0}


def read_timeout(profile: str) -> float:
    """Seconds an Echo call may wait for its request message (see READ_TIMEOUT_S)."""
    return READ_TIMEOUT_S[profile]


def server_options(profile: str) -> list[tuple[str, int]]:
    """Server arguments of a profile (grpc.server(options=...))."""
    common = [
        # grpcio sets SO_REUSEPORT by default, so a second instance on the same
        # port starts "fine" and silently takes part of the connections.
        ("grpc.so_reuseport", 0),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
    ]
    if profile != "tuned":
        return common
    return [
        *common,
        # Accept the clients' keepalive pings on idle connections (else the
        # server answers GOAWAY "too_many_pings") and find dead clients.
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.http2.bdp_probe", 0),
        # Reject oversized messages in gRPC core before they are parsed.
        ("grpc.max_receive_message_length", MESSAGE_LIMIT_BYTES),
        ("grpc.max_send_message_length", MESSAGE_LIMIT_BYTES),
    ]


def worker_threads(profile: str, cpus: list[int] | None, blocking_calls: bool = False) -> int:
    """Handler threads of the sync server.

    default: 10, what grpcio's own examples use. tuned: one per CPU the
    process owns, because the handler is CPU-bound and more threads only
    contend for the GIL; in chain mode (blocking_calls) a handler mostly waits
    on the downstream round trip, so 8 per CPU keep requests in flight.
    """
    if profile != "tuned":
        return 10
    owned = len(cpus) if cpus else len(allowed_cpus())
    return owned * 8 if blocking_calls else owned


def after_warmup(profile: str) -> None:
    """Call once the process is warm (channels connected, code paths run).

    tuned: collect, then move every surviving object into the permanent
    generation, so later collections do not traverse the long-lived heap
    and their pauses stay short.
    """
    if profile != "tuned":
        return
    gc.collect()
    gc.freeze()


_PROBE = (
    "import grpc\n"
    "channel = grpc.insecure_channel('127.0.0.1:9')\n"
    "try:\n"
    "    grpc.channel_ready_future(channel).result(timeout=0.1)\n"
    "except grpc.FutureTimeoutError:\n"
    "    pass\n"
    "channel.close()\n"
)


@functools.lru_cache(maxsize=1)
def engine_experiments_status(experiments: tuple[str, ...] = ENGINE_OFF_EXPERIMENTS) -> str:
    """Whether the installed grpcio honours these experiment names (the engine-off ones).

    Starts gRPC core in a subprocess with those names set: core logs
    "Unknown experiment: NAME" for a name it does not know (renamed or
    retired in a later release), and the names must be present in the
    extension module. Returns "honoured" or a reason it is not.
    """
    # Located, not imported: this may run before apply_process_profile().
    spec = importlib.util.find_spec("grpc")
    if spec is None or spec.origin is None:
        return "unknown: grpcio is not installed"
    extensions = sorted(Path(spec.origin).parent.glob("_cython/cygrpc*.so"))
    if not extensions:
        return "unknown: grpcio's extension module not found"
    binary = extensions[0].read_bytes()
    names = [item.lstrip("-") for item in experiments]
    missing = [name for name in names if name.encode() not in binary]
    env = dict(os.environ, GRPC_EXPERIMENTS=",".join(experiments), GRPC_VERBOSITY="info")
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown: probe failed ({exc})"
    unknown = [line for line in probe.stderr.splitlines() if "Unknown experiment" in line]
    if probe.returncode != 0:
        return f"unknown: probe exited {probe.returncode}: {probe.stderr.strip()[-200:]}"
    if unknown or missing:
        detail = "; ".join(unknown) or f"not in grpcio: {', '.join(missing)}"
        return f"not honoured by this grpcio ({detail}): the newer engine stays on"
    return "honoured"


_SHARED_MEASURES = (
    Measure(
        "worker-threads",
        "server handler threads = CPUs owned (x8 in chain mode): a CPU-bound handler "
        "gains nothing from more threads contending for the GIL",
    ),
    Measure(
        "keepalive",
        "keepalive pings on idle long-lived connections (20 s, 5 s timeout), accepted "
        "by the server: dead peers are found before a request waits on them",
    ),
    Measure("retries-off", "grpc.enable_retries=0: failures are counted, never hidden as latency"),
    Measure(
        "bdp-probe-off",
        "grpc.http2.bdp_probe=0: messages never fill the 64 KiB HTTP/2 windows, so BDP "
        "pings only add frames and wake-ups",
    ),
    Measure(
        "message-limits",
        f"max send/receive message {MESSAGE_LIMIT_BYTES} bytes: oversized messages are "
        "refused by gRPC core (RESOURCE_EXHAUSTED) before parsing",
    ),
    Measure(
        "no-reuseport",
        "grpc.so_reuseport=0 on the server (both profiles): a second instance on the "
        "same port fails instead of taking part of the connections",
    ),
    Measure(
        "gc-freeze",
        "after warm-up gc.collect() then gc.freeze(): later collections skip the "
        "long-lived heap, so GC pauses stay short",
    ),
)


def describe(profile: str) -> list[Measure]:
    """The named measures a profile applies, with the outcome where it can vary."""
    if profile != "tuned":
        return []
    measures = [
        Measure(
            "cpu-affinity",
            "process pinned with sched_setaffinity to --cpus before grpc starts its threads",
            _process_status.get("cpu-affinity", "not requested (no --cpus)"),
        ),
        Measure(
            "grpc-engine-off",
            "GRPC_EXPERIMENTS=" + ",".join(ENGINE_OFF_EXPERIMENTS) + ": gRPC's older I/O "
            "path, 3 fewer context switches per request; installed grpcio: "
            + engine_experiments_status(),
            _process_status.get("grpc-engine-off", "not applied (apply_process_profile not run)"),
        ),
        Measure(
            "memory-lock",
            "mlockall(MCL_CURRENT|MCL_FUTURE): no major page faults on the request path",
            _process_status.get("memory-lock", "not applied (apply_process_profile not run)"),
        ),
    ]
    measures.extend(_SHARED_MEASURES)
    return measures
