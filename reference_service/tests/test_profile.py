"""bench --profile-on-failure: finding the service, the profilers' refusals, folding, the SVG,
and a real py-spy profile of a deliberately slowed handler."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from lowlatency_service import bench, flamegraph, profiling, service_process
from lowlatency_service.cli import build_parser
from lowlatency_service.errors import UsageError

SVG = "{http://www.w3.org/2000/svg}"
ROOT_UID = 0


def refusal(profiler: str = "py-spy", caps: int = 0, **given: object) -> str | None:
    settings: dict = {
        "executable": "/usr/bin/x",
        "ptrace_scope": 0,
        "perf_paranoid": 1,
        "owner_uid": 1000,
        "uid": 1000,
    }
    settings.update(given)
    return profiling.refusal(profiler, 4242, caps, **settings)


def test_refusals_name_the_setting_and_its_value() -> None:
    assert refusal() is None
    assert "py-spy not found" in str(refusal(executable=None))
    assert "linux-perf" in str(refusal("perf", executable=None))
    assert "ptrace_scope is 1" in str(refusal(ptrace_scope=1))
    assert refusal(ptrace_scope=1, caps=1 << profiling.CAP_SYS_PTRACE) is None
    # Scope 3 forbids every attach, whatever the capabilities.
    assert "ptrace_scope is 3" in str(refusal(ptrace_scope=3, caps=~0))
    assert "perf_event_paranoid is 2" in str(refusal("perf", perf_paranoid=2))
    assert refusal("perf", perf_paranoid=2, caps=1 << profiling.CAP_PERFMON) is None
    assert refusal("perf", perf_paranoid=3, caps=1 << profiling.CAP_SYS_ADMIN) is None
    assert "uid 0" in str(refusal(owner_uid=0))
    assert refusal(owner_uid=0, caps=1 << profiling.CAP_SYS_PTRACE) is None


def test_effective_caps_read_from_status(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapPrm:\t0000000000000000\nCapEff:\t0000004000080000\n")
    caps = profiling.effective_caps(str(status))
    assert caps >> profiling.CAP_SYS_PTRACE & 1
    assert caps >> profiling.CAP_PERFMON & 1
    assert not caps >> profiling.CAP_SYS_ADMIN & 1


def test_output_paths_beside_the_json() -> None:
    assert profiling.output_paths("/r/run.json", "py-spy") == (
        "/r/run.profile.svg",
        "/r/run.profile.folded",
        "/r/run.profile.folded",
    )
    assert profiling.output_paths("/r/run", "perf")[1] == "/r/run.perf.data"


PERF_SCRIPT = """\
my server 311
\t    7f01 leaf_fn (/usr/lib/libx.so)
\t    7f02 caller_fn (/usr/bin/server)
\t    7f03 [unknown] (/usr/lib/libc.so.6)

my server 311
\t    7f01 leaf_fn (/usr/lib/libx.so)
\t    7f02 caller_fn (/usr/bin/server)
\t    7f03 [unknown] (/usr/lib/libc.so.6)

my server 312
\t    7f09 [unknown] ([unknown])
"""


def test_perf_script_folds_root_first() -> None:
    stacks = flamegraph.fold_perf_script(PERF_SCRIPT)
    assert stacks == Counter(
        {
            ("my server", "[libc.so.6]", "caller_fn", "leaf_fn"): 2,
            ("my server", "[unknown]"): 1,
        }
    )
    assert flamegraph.parse_folded(flamegraph.format_folded(stacks)) == stacks


def test_folded_lines_keep_spaces_in_frame_names() -> None:
    text = "main (a.py:1);work (b.py:7) 3\nmain (a.py:1) 1\nnot a line\n"
    stacks = flamegraph.parse_folded(text)
    assert stacks[("main (a.py:1)", "work (b.py:7)")] == 3
    top = flamegraph.top_frames(stacks)
    assert top[0] == {"frame": "work (b.py:7)", "samples": 3, "share": 0.75}


def test_svg_widths_follow_the_samples() -> None:
    stacks = Counter({("main", "hot"): 3, ("main", "cold<&>"): 1})
    root = ET.fromstring(flamegraph.render_svg(stacks, "t"))
    widths = {
        group.find(f"{SVG}title").text.split(" (")[0]: float(group.find(f"{SVG}rect").get("width"))
        for group in root.iter(f"{SVG}g")
    }
    assert widths["all"] == widths["main"] == flamegraph.WIDTH_PX
    assert widths["hot"] == pytest.approx(0.75 * flamegraph.WIDTH_PX, abs=0.1)
    assert widths["cold<&>"] == pytest.approx(0.25 * flamegraph.WIDTH_PX, abs=0.1)


def test_the_listener_of_a_port_is_this_process() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        found = service_process.find(f"127.0.0.1:{port}", None)
        assert (found.pid, found.how) == (os.getpid(), "listener")
        assert service_process.find(f"localhost:{port}", None).pid == os.getpid()
    assert "no local socket listens" in str(service_process.find(f"127.0.0.1:{port}", None).reason)
    # 192.0.2.0/24 is TEST-NET-1, never an address of this host.
    assert "not an address of this host" in str(service_process.find("192.0.2.1:80", None).reason)
    assert service_process.find("192.0.2.1:80", os.getpid()).pid == os.getpid()


def test_proc_net_addresses_are_little_endian_words() -> None:
    assert str(service_process._address("0100007F")) == "127.0.0.1"
    assert str(service_process._address("00000000000000000000000001000000")) == "::1"


def test_profile_on_failure_needs_json() -> None:
    args = build_parser().parse_args(
        ["bench", "--target", "127.0.0.1:1", "--requests", "1", "--profile-on-failure"]
    )
    with pytest.raises(UsageError, match="give --json"):  # cli turns it into exit 2
        bench.run(args)


def test_service_pid_must_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["bench", "--target", "h:1", "--requests", "1", "--service-pid", "999999999"]
        )
    assert "no process 999999999" in capsys.readouterr().err


def py_spy_refusal() -> str | None:
    """Why py-spy cannot record a child of this process here (None: it can)."""
    with subprocess.Popen(["sleep", "5"]) as child:
        try:
            return profiling.host_refusal("py-spy", child.pid)
        finally:
            child.kill()


def test_flame_graph_of_a_slowed_handler_shows_the_handler_on_top(
    start_cli: Callable[..., tuple[subprocess.Popen[str], str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reason = py_spy_refusal()
    if reason is not None:
        pytest.skip(f"py-spy cannot record here: {reason}")
    process, address = start_cli()
    out = tmp_path / "gate" / "run.json"
    args = build_parser().parse_args(
        [
            *("bench", "--target", address, "--requests", "50", "--warmup", "5"),
            # About 10 ms of handler per request: far over the limit.
            *("--work-iterations", "50000", "--max-p50-us", "100"),
            *("--profile-on-failure", "--profile-seconds", "2", "--json", str(out)),
        ]
    )
    assert bench.run(args) == 1  # the gate's exit status, profile or not
    profile = json.loads(out.read_text())["profiling"]
    assert profile["status"] == "recorded", profile["reason"]
    assert (profile["profiler"], profile["pid"]) == ("py-spy", process.pid)
    svg = Path(profile["svg"])
    assert svg.parent == out.parent and svg.read_text().startswith("<svg")
    assert profile["load"]["requests"] > 0
    # The handler is what runs: its work loop is among the heaviest leaves,
    # called from the servicer's Echo.
    stacks = flamegraph.parse_folded(Path(profile["raw"]).read_text())
    top = [frame["frame"] for frame in flamegraph.top_frames(stacks, 3)]
    handler = [frame for frame in top if frame.startswith("work (lowlatency_service/serve.py")]
    assert handler, top
    assert any(
        stack[-1] == handler[0] and any(f.startswith("LatencyServicer.Echo ") for f in stack)
        for stack in stacks
    )
    assert "work (lowlatency_service/serve.py" in svg.read_text()
    assert "profile: py-spy recorded" in capsys.readouterr().err


def test_a_passing_gate_records_no_profile(
    start_cli: Callable[..., tuple[subprocess.Popen[str], str]], tmp_path: Path
) -> None:
    _, address = start_cli()
    out = tmp_path / "run.json"
    args = build_parser().parse_args(
        [
            *("bench", "--target", address, "--requests", "20", "--warmup", "0"),
            *("--profile-on-failure", "--json", str(out)),
        ]
    )
    assert bench.run(args) == 0
    profile = json.loads(out.read_text())["profiling"]
    assert profile["status"] == "skipped" and "passed" in profile["reason"]
    assert not list(tmp_path.glob("*.svg"))


def test_perf_records_a_native_process(tmp_path: Path) -> None:
    with subprocess.Popen(["python3", "-c", "while True: pass"]) as spinner:
        try:
            reason = profiling.host_refusal("perf", spinner.pid)
            if reason is not None:
                pytest.skip(f"perf cannot record here: {reason}")
            found = service_process.Found(spinner.pid, how="--service-pid")
            profile = profiling.capture(
                found, "perf", 1, str(tmp_path / "run.json"), lambda _: {"requests": 0}
            )
        finally:
            spinner.kill()
    assert profile.status == "recorded", profile.reason
    assert Path(profile.raw).name == "run.perf.data" and Path(profile.svg).is_file()
    stacks = flamegraph.parse_folded(Path(profile.folded).read_text())
    assert sum(stacks.values()) == profile.samples > 0
    # Each stack starts with the command name (samples from before exec may name the parent).
    assert "python3" in {stack[0] for stack in stacks}
