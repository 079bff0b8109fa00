"""Bad arguments of bench and compare exit with status 2, before any connection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lowlatency_service.cli import build_parser

CLI = [str(Path(sys.executable).with_name("lowlatency-service"))]
# Port 9 (discard) on loopback: nothing listens, so reaching it would fail differently.
GOOD = ["bench", "--target", "127.0.0.1:9", "--requests", "10"]


def parse(argv: list[str]) -> object:
    return build_parser().parse_args(argv)


def test_good_arguments_parse_with_defaults() -> None:
    args = parse(GOOD)
    assert args.target == "127.0.0.1:9"
    assert args.profile == "default"
    assert args.concurrency == 1
    assert args.requests == 10
    assert args.duration is None
    assert args.warmup == 1000
    assert args.rate is None
    assert args.client_model == "auto"
    assert (args.max_p50_us, args.max_p99_us, args.max_p999_us, args.max_tail_ratio) == (
        None,
        None,
        None,
        None,
    )


def test_duration_instead_of_requests() -> None:
    args = parse(["bench", "--target", "[::1]:50051", "--duration", "2.5"])
    assert args.duration == 2.5
    assert args.requests is None


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--requests", "10"],
        ["bench", "--target", "127.0.0.1:9"],
        [*GOOD, "--duration", "1"],
        ["bench", "--target", "localhost", "--requests", "10"],
        ["bench", "--target", "localhost:http", "--requests", "10"],
        ["bench", "--target", ":50051", "--requests", "10"],
        ["bench", "--target", "localhost:0", "--requests", "10"],
        ["bench", "--target", "localhost:65536", "--requests", "10"],
        ["bench", "--target", "127.0.0.1:9", "--requests", "0"],
        ["bench", "--target", "127.0.0.1:9", "--duration", "0"],
        ["bench", "--target", "127.0.0.1:9", "--duration", "-1"],
        [*GOOD, "--concurrency", "0"],
        [*GOOD, "--concurrency", "-4"],
        [*GOOD, "--concurrency", "two"],
        [*GOOD, "--warmup", "-1"],
        [*GOOD, "--rate", "0"],
        [*GOOD, "--rate", "nan"],
        [*GOOD, "--rate", "inf"],
        [*GOOD, "--rate", "1e-9"],
        [*GOOD, "--rate", "1e9"],
        [*GOOD, "--concurrency", "100000"],
        ["bench", "--target", "127.0.0.1:9", "--duration", "nan"],
        ["bench", "--target", "127.0.0.1:9", "--duration", "1e12"],
        [*GOOD, "--timeout", "inf"],
        [*GOOD, "--timeout", "61"],
        [*GOOD, "--payload-bytes", "1025"],
        [*GOOD, "--payload-bytes", "-1"],
        [*GOOD, "--work-iterations", "-1"],
        [*GOOD, "--timeout", "0"],
        [*GOOD, "--max-p50-us", "0"],
        [*GOOD, "--max-p99-us", "-5"],
        [*GOOD, "--max-p999-us", "x"],
        [*GOOD, "--max-tail-ratio", "0"],
        [*GOOD, "--profile", "fast"],
        [*GOOD, "--client-model", "processes"],
        ["compare", "--requests", "0"],
        ["compare", "--runs", "0"],
        ["compare", "--concurrency-list", "1,0"],
        ["compare", "--concurrency-list", "a,b"],
        ["compare", "--concurrency-list", ","],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*GOOD, "--concurrency", "0"], "--concurrency: must be at least 1, not 0"),
        ([*GOOD, "--cpus", "0-x"], "--cpus: bad CPU list item"),
        ([*GOOD, "--cpus", "4095"], "beyond this host's CPUs"),
        (["compare", "--cpus-server", "4095", "--runs", "1"], "--cpus-server: CPU 4095 in"),
        (["compare", "--cpus-client", "0-2000000000"], "--cpus-client: CPU 2000000000 in"),
        ([*GOOD, "--rate", "100", "--client-model", "futures"], "closed loop only"),
        ([*GOOD, "--rate", "1e-9"], "--rate: must be a number from 1 to 1e+06, not 1e-9"),
        ([*GOOD, "--cpus", "0-2000000000"], "CPU 2000000000 in '0-2000000000' beyond this host's"),
        ([*GOOD, "--json", "/proc/version/x.json"], "--json: /proc/version/x.json: /proc/version"),
        ([*GOOD, "--hdr-log", "/"], "--hdr-log: / is a directory"),
        ([*GOOD, "--plot", "/proc/1/x.png"], "--plot: /proc/1/x.png: directory /proc/1 is not"),
        (["compare", "--json", "/proc/version/c.json"], "--json: /proc/version/c.json: "),
        (["compare", "--plot", "/"], "--plot: / is a directory"),
    ],
)
def test_console_script_exits_2_with_the_reason(argv: list[str], message: str) -> None:
    done = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    # argparse's usage line, then one line naming the value.
    assert len(done.stderr.strip().splitlines()[-1:]) == 1
    assert "error:" in done.stderr.strip().splitlines()[-1]


def test_help_lists_exit_codes_and_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["bench", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for line in ("0  passed", "1  breached", "2  usage error", "3  unreachable"):
        assert line in text
    for key in ("errors_by_code", "target_lost", "verdict", "up_s", "p999_us"):
        assert key in text
