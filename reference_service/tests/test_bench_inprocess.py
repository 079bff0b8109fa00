"""bench against the service started in process on port 0: counts, schema, logs, gate, open loop."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lowlatency_service import bench
from lowlatency_service.cli import build_parser
from lowlatency_service.histogram import SCHEMA_KEYS, read_log
from lowlatency_service.serve import MAX_WORK_ITERATIONS, RunningServer, start_server

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server("127.0.0.1", 0, "default")
    yield running
    running.stop(grace=None)


def run_bench(server: RunningServer, *extra: str) -> int:
    # bench.run directly: cli.main would refuse to apply a profile once the
    # test process has imported grpc.
    args = build_parser().parse_args(["bench", "--target", server.address, *extra])
    return bench.run(args)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_closed_loop_counts_schema_log_and_plot(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    log = tmp_path / "run.hlog"
    png = tmp_path / "run.png"
    status = run_bench(
        server,
        *("--requests", "300", "--warmup", "30", "--concurrency", "3"),
        *("--json", str(out), "--hdr-log", str(log), "--plot", str(png)),
    )
    assert status == 0
    result = load(out)
    for key in SCHEMA_KEYS:
        assert key in result
    for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "throughput_rps"):
        assert isinstance(result[key], float)
    assert isinstance(result["requests"], int)
    assert isinstance(result["errors"], int)
    assert result["requests"] == 300
    assert result["errors"] == 0
    assert 0 < result["p50_us"] <= result["p90_us"] <= result["p99_us"] <= result["p999_us"]
    assert result["p999_us"] <= result["max_us"]
    assert result["throughput_rps"] > 0
    assert result["mode"] == "closed"
    assert result["client_model"] == "threads"
    assert result["profile"] == "default"
    assert result["target_lost"] is None
    assert result["up_s"] == result["duration_s"]
    assert result["verdict"] == {
        "passed": True,
        "exit_code": 0,
        "outcome": "passed",
        "breaches": [],
        "errors_by_code": {},
        "message": "gate passed: 300 requests, 0 errors",
    }

    histogram = read_log(str(log))
    assert histogram.get_total_count() == 300
    assert png.read_bytes()[:8] == PNG_MAGIC

    stdout = capsys.readouterr().out
    assert "p99.9" in stdout
    assert "default c3" in stdout


def test_tuned_client_with_chained_futures(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "tuned.json"
    status = run_bench(
        server,
        *("--profile", "tuned", "--concurrency", "4", "--requests", "200", "--warmup", "20"),
        *("--json", str(out)),
    )
    assert status == 0
    result = load(out)
    assert result["client_model"] == "futures"
    assert (result["requests"], result["errors"]) == (200, 0)
    assert {m["name"] for m in result["measures"]} >= {"grpc-engine-off", "gc-freeze"}


@pytest.mark.parametrize("model", ["threads", "futures"])
def test_tuned_client_at_concurrency_one(server: RunningServer, tmp_path: Path, model: str) -> None:
    out = tmp_path / "c1.json"
    status = run_bench(
        server,
        *("--profile", "tuned", "--client-model", model, "--requests", "100", "--warmup", "10"),
        *("--payload-bytes", "1024", "--work-iterations", "50", "--json", str(out)),
    )
    assert status == 0
    assert (load(out)["requests"], load(out)["errors"]) == (100, 0)


def test_duration_mode(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "duration.json"
    assert run_bench(server, "--duration", "0.3", "--warmup", "10", "--json", str(out)) == 0
    result = load(out)
    assert result["requests"] > 0
    assert result["duration_s"] >= 0.3


def test_gate_fails_below_the_measured_values(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "breach.json"
    status = run_bench(
        server,
        *("--requests", "50", "--warmup", "5", "--max-p50-us", "1", "--max-p999-us", "2"),
        *("--json", str(out)),
    )
    assert status == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gate")]
    assert len(lines) == 1
    assert re.fullmatch(
        r"gate failed: p50 = \d+\.\d us > limit 1\.0 us; p99\.9 = \d+\.\d us > limit 2\.0 us",
        lines[0],
    )
    result = load(out)
    verdict = result["verdict"]
    assert (verdict["passed"], verdict["exit_code"], verdict["outcome"]) == (False, 1, "breached")
    assert verdict["breaches"] == [
        {"figure": "p50_us", "value": result["p50_us"], "limit": 1.0},
        {"figure": "p999_us", "value": result["p999_us"], "limit": 2.0},
    ]
    assert verdict["message"] == lines[0]


def test_gate_passes_generous_limits(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_bench(
        server,
        *("--requests", "50", "--warmup", "5", "--max-p50-us", "5000000"),
        *("--max-p99-us", "5000000", "--max-p999-us", "5000000", "--max-tail-ratio", "100000"),
    )
    assert status == 0
    assert "gate failed" not in capsys.readouterr().err


def test_request_errors_fail_the_gate(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "errors.json"
    # The service refuses this much work with INVALID_ARGUMENT.
    status = run_bench(
        server,
        *("--requests", "20", "--warmup", "0", "--json", str(out)),
        *("--work-iterations", str(MAX_WORK_ITERATIONS + 1)),
    )
    assert status == 1
    result = load(out)
    assert (result["requests"], result["errors"]) == (0, 20)
    assert result["first_error"].startswith("INVALID_ARGUMENT: ")
    assert result["first_error"].endswith(f"(peer {server.address})")
    assert result["verdict"]["errors_by_code"] == {"INVALID_ARGUMENT": 20}
    assert result["verdict"]["breaches"] == [{"figure": "errors", "value": 20, "limit": 0}]
    captured = capsys.readouterr()
    assert "gate failed: 20 errors (INVALID_ARGUMENT 20)" in captured.err
    assert "errors by code: INVALID_ARGUMENT 20" in captured.out


def test_open_loop_latency_from_intended_send_time(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "open.json"
    rate = 400.0
    status = run_bench(
        server,
        *("--rate", str(rate), "--requests", "200", "--concurrency", "2", "--warmup", "10"),
        *("--json", str(out)),
    )
    assert status == 0
    result = load(out)
    assert result["mode"] == "open"
    assert result["rate"] == rate
    assert (result["requests"], result["errors"]) == (200, 0)
    # Sends never precede their schedule, so the run cannot beat the rate.
    assert result["throughput_rps"] <= rate * 1.05
    uncorrected = result["uncorrected"]
    assert uncorrected["requests"] == 200
    for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
        assert result[key] >= uncorrected[key]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_target_exits_3_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{closed_port()}"
    out = tmp_path / "unreachable.json"
    args = build_parser().parse_args(
        ["bench", "--target", target, "--requests", "1", "--timeout", "0.3", "--json", str(out)]
    )
    assert bench.run(args) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    message = f"target {target} unreachable: Connection refused (no connection within 0.3 s)"
    assert captured.err == f"bench: {message}\n"
    assert load(out)["verdict"] == {
        "passed": False,
        "exit_code": 3,
        "outcome": "unreachable",
        "breaches": [],
        "errors_by_code": {},
        "message": message,
    }


def test_console_script_closed_port_one_line_exit_3() -> None:
    target = f"127.0.0.1:{closed_port()}"
    cli = str(Path(sys.executable).with_name("lowlatency-service"))
    argv = [cli, "bench", "--target", target, "--requests", "5", "--timeout", "0.3"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"bench: target {target} unreachable: ")


@pytest.mark.parametrize("profile", ["default", "tuned"])
def test_server_stopped_mid_run_is_a_lost_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str
) -> None:
    running = start_server("127.0.0.1", 0, "default")
    out = tmp_path / "lost.json"
    stopper = threading.Timer(0.5, running.stop, kwargs={"grace": None})
    stopper.start()
    try:
        status = run_bench(
            running,
            *("--profile", profile, "--concurrency", "4", "--duration", "30", "--warmup", "10"),
            *("--json", str(out)),
        )
    finally:
        stopper.join()
        running.stop(grace=None)
    assert status == 3
    result = load(out)
    lost = result["target_lost"]
    assert lost["phase"] == "measured"
    # Stopped after 0.5 s, so the load ends about 1 s later, not after 30.
    assert 0 < lost["after_s"] == result["up_s"] < result["duration_s"] < 10
    assert result["requests"] > 0
    assert result["throughput_rps"] == pytest.approx(result["requests"] / result["up_s"], rel=0.01)
    assert lost["refused"] == sum(lost["refused_by_code"].values()) > 0
    assert lost["in_flight"] == sum(lost["in_flight_by_code"].values()) <= 4
    assert result["errors"] == sum(result["verdict"]["errors_by_code"].values())
    verdict = result["verdict"]
    assert (verdict["passed"], verdict["exit_code"], verdict["outcome"]) == (
        False,
        3,
        "target_lost",
    )
    assert verdict["message"].startswith("target lost ")
    captured = capsys.readouterr()
    assert "refused before sending: " in captured.out
    assert "Traceback" not in captured.err
    first = [line for line in captured.err.splitlines() if line.startswith("first error:")]
    assert len(first) == 1
    # In flight: cancelled by the stopping server, or failed with the connection.
    assert re.match(
        r"first error: (CANCELLED|UNAVAILABLE): .* \(peer 127\.0\.0\.1:\d+\)$", first[0]
    )
    assert set(lost["in_flight_by_code"]) <= {"CANCELLED", "UNAVAILABLE"}
