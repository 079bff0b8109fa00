"""``bench --profile-on-failure``: record the service with a sampling profiler after a breach.

A failed gate gives percentiles, not the reason. On a breach bench repeats
the same load for ``--profile-seconds`` while a profiler samples the service
process: py-spy for a Python service (its own frames, by function and line),
``perf record -g`` for any other (native frames; the call chains need frame
pointers). Both end as folded stacks, the raw profile and a flame graph SVG
next to the ``--json`` file, and their paths in the JSON under "profiling".

Where the profiler is missing or the kernel forbids it, the profile is
skipped and the reason printed and written: py-spy reads another process's
memory, which needs ptrace access (kernel.yama.ptrace_scope, CAP_SYS_PTRACE);
perf needs kernel.perf_event_paranoid <= 1 or CAP_PERFMON. A profiler that
starts and then fails is "failed", with its last line of output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lowlatency_service import flamegraph
from lowlatency_service.service_process import Found

CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
PY_SPY_RATE_HZ = 250
PERF_FREQUENCY_HZ = 499
# The profiler attaches before the load starts, and the load outlasts it.
ATTACH_S = 0.3
LOAD_MARGIN_S = 0.5
# After its duration a profiler still writes (perf script may take seconds).
FINISH_TIMEOUT_S = 120.0

# The profiled load: seconds -> what it did (requests, errors, duration_s, error).
Load = Callable[[float], dict[str, object]]


@dataclass
class Profile:
    status: str  # recorded, skipped or failed
    reason: str | None = None
    profiler: str | None = None
    pid: int | None = None
    seconds: float | None = None
    samples: int = 0
    svg: str | None = None
    raw: str | None = None
    folded: str | None = None
    top_frames: list[dict[str, object]] = field(default_factory=list)
    load: dict[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> str:
        if self.status != "recorded":
            return f"profile {self.status}: {self.reason}"
        top = ", ".join(f"{f['frame']} {100 * float(f['share']):.0f}%" for f in self.top_frames[:3])
        return (
            f"profile: {self.profiler} recorded {self.samples} samples of pid {self.pid} over "
            f"{self.seconds:g} s of load: {self.svg} (raw {self.raw}); top frames: {top}"
        )


def effective_caps(status: str = "/proc/self/status") -> int:
    """This process's effective capability set, as a bit mask."""
    with open(status, encoding="ascii") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def is_python(pid: int, proc: str = "/proc") -> bool:
    """Whether the process runs a Python interpreter (its executable, or libpython mapped)."""
    try:
        if os.path.basename(os.readlink(f"{proc}/{pid}/exe")).startswith("python"):
            return True
        with open(f"{proc}/{pid}/maps", encoding="utf-8", errors="replace") as handle:
            return any("libpython" in line for line in handle)
    except OSError:
        return False


def choose(wanted: str, pid: int) -> str:
    if wanted != "auto":
        return wanted
    return "py-spy" if is_python(pid) else "perf"


def py_spy_path() -> str | None:
    """py-spy of this environment (the extra ``profile``), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def refusal(
    profiler: str,
    pid: int,
    caps: int,
    *,
    executable: str | None,
    ptrace_scope: int | None,
    perf_paranoid: int | None,
    owner_uid: int,
    uid: int,
) -> str | None:
    """Why ``profiler`` cannot record ``pid`` here, or None when nothing forbids it."""
    if executable is None:
        fix = "pip install 'lowlatency-service[profile]'" if profiler == "py-spy" else "linux-perf"
        return f"{profiler} not found (install {fix})"
    ptrace = bool(caps >> CAP_SYS_PTRACE & 1)
    if profiler == "py-spy" and ptrace_scope == 3:
        return "kernel.yama.ptrace_scope is 3: no process may read another's memory"
    if profiler == "py-spy" and not ptrace and ptrace_scope is not None and ptrace_scope >= 1:
        return (
            f"kernel.yama.ptrace_scope is {ptrace_scope} and bench lacks CAP_SYS_PTRACE: "
            f"py-spy may not read pid {pid}"
        )
    perf_allowed = caps >> CAP_PERFMON & 1 or caps >> CAP_SYS_ADMIN & 1
    if profiler == "perf" and not perf_allowed and perf_paranoid is not None and perf_paranoid > 1:
        return (
            f"kernel.perf_event_paranoid is {perf_paranoid} (more than 1) and bench lacks "
            "CAP_PERFMON: perf may not record another process"
        )
    if owner_uid != uid and not ptrace:
        return f"pid {pid} belongs to uid {owner_uid}, bench runs as {uid} without CAP_SYS_PTRACE"
    return None


def host_refusal(profiler: str, pid: int) -> str | None:
    """refusal() with this host's profiler, kernel settings and capabilities."""
    try:
        owner_uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return f"pid {pid} is gone"
    return refusal(
        profiler,
        pid,
        effective_caps(),
        executable=py_spy_path() if profiler == "py-spy" else shutil.which("perf"),
        ptrace_scope=_read_int("/proc/sys/kernel/yama/ptrace_scope"),
        perf_paranoid=_read_int("/proc/sys/kernel/perf_event_paranoid"),
        owner_uid=owner_uid,
        uid=os.geteuid(),
    )


def output_paths(json_path: str, profiler: str) -> tuple[str, str, str]:
    """svg, raw and folded paths beside the JSON file (py-spy's raw output is folded)."""
    base = json_path[: -len(".json")] if json_path.endswith(".json") else json_path
    folded = f"{base}.profile.folded"
    raw = f"{base}.perf.data" if profiler == "perf" else folded
    return f"{base}.profile.svg", raw, folded


def _command(profiler: str, pid: int, seconds: int, raw: str) -> list[str]:
    if profiler == "py-spy":
        return [
            str(py_spy_path()),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            str(PY_SPY_RATE_HZ),
            "--format",
            "raw",
            "--output",
            raw,
        ]
    # cpu-clock, a software event, exists in every VM; hardware cycles may not.
    return [
        *("perf", "record", "-e", "cpu-clock", "-F", str(PERF_FREQUENCY_HZ), "-g"),
        *("-p", str(pid), "-o", raw, "--", "sleep", str(seconds)),
    ]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _stacks(profiler: str, raw: str) -> flamegraph.Stacks:
    if profiler == "py-spy":
        return flamegraph.parse_folded(Path(raw).read_text(encoding="utf-8"))
    script = subprocess.run(
        ["perf", "script", "-i", raw, "-F", "comm,pid,ip,sym,dso"],
        capture_output=True,
        text=True,
        timeout=FINISH_TIMEOUT_S,
        check=True,
    )
    return flamegraph.fold_perf_script(script.stdout)


def capture(found: Found, wanted: str, seconds: int, json_path: str, load: Load) -> Profile:
    """Run ``load`` for about ``seconds`` while the chosen profiler records the service."""
    if found.pid is None:
        return Profile("skipped", found.reason)
    pid = found.pid
    profiler = choose(wanted, pid)
    reason = host_refusal(profiler, pid)
    if reason is not None:
        return Profile("skipped", reason, profiler, pid)
    svg, raw, folded = output_paths(json_path, profiler)
    Path(svg).parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        _command(profiler, pid, seconds, raw),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(ATTACH_S)
    done = load(seconds + LOAD_MARGIN_S) if process.poll() is None else None
    try:
        output, _ = process.communicate(timeout=FINISH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    profile = Profile("failed", None, profiler, pid, float(seconds), load=done)
    if process.returncode != 0 or not os.path.exists(raw):
        profile.reason = f"{profiler} exited {process.returncode}: {_last_line(output)}"
        return profile
    try:
        stacks = _stacks(profiler, raw)
    except (OSError, subprocess.SubprocessError) as exc:
        profile.reason = f"reading {raw}: {_last_line(str(exc))}"
        return profile
    if not stacks:
        profile.reason = f"{profiler} recorded no samples of pid {pid}"
        return profile
    if profiler == "perf":
        Path(folded).write_text(flamegraph.format_folded(stacks), encoding="utf-8")
    title = f"{profiler}, pid {pid}, {seconds} s of load"
    Path(svg).write_text(flamegraph.render_svg(stacks, title), encoding="utf-8")
    profile.status, profile.samples = "recorded", sum(stacks.values())
    profile.svg, profile.raw, profile.folded = svg, raw, folded
    profile.top_frames = flamegraph.top_frames(stacks)
    return profile
