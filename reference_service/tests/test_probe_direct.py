"""``lowlatency-service probe`` and ``direct``: the role's health check and starter."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lowlatency_service import probe, serve

CLI = [sys.executable, "-m", "lowlatency_service.cli"]
ENV = {**os.environ, "PYTHONPATH": str(Path(probe.__file__).resolve().parents[1])}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, check=False, env=ENV
    )


@pytest.mark.parametrize(
    ("address", "family", "expected"),
    [
        ("0100007F:C35B", socket.AF_INET, "127.0.0.1:50011"),
        ("00000000:0050", socket.AF_INET, "0.0.0.0:80"),
        ("00000000000000000000000000000000:0050", socket.AF_INET6, "[::]:80"),
        ("00000000000000000000000001000000:0050", socket.AF_INET6, "[::1]:80"),
        # A dual-stack socket bound to 127.0.0.1 shows it IPv4-mapped.
        ("0000000000000000FFFF00000100007F:C35B", socket.AF_INET6, "127.0.0.1:50011"),
    ],
)
def test_decode_proc_net_addresses(address, family, expected):
    assert probe.decode(address, family) == expected


def test_listening_sees_only_this_process_sockets():
    mine = socket.socket()
    mine.bind(("127.0.0.1", 0))
    mine.listen()
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
            " time.sleep(30)",
        ]
    )
    try:
        port = mine.getsockname()[1]
        assert probe.listening(os.getpid()) == [f"127.0.0.1:{port}"]
    finally:
        other.kill()
        other.wait()
        mine.close()


def test_probe_reports_serving_from_a_real_server():
    server = serve.start_server("127.0.0.1", 0, "default")
    try:
        result = cli(
            "probe",
            "--target",
            f"127.0.0.1:{server.port}",
            "--timeout",
            "20",
            "--pid",
            str(os.getpid()),
        )
    finally:
        server.stop(0)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["status"] == "SERVING"
    assert f"127.0.0.1:{server.port}" in reply["listening"]


def test_probe_gives_up_on_a_closed_port():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    result = cli("probe", "--target", f"127.0.0.1:{port}", "--timeout", "1")
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"].startswith("UNAVAILABLE")


def start_options(tmp_path: Path) -> tuple[str, list[str]]:
    """The pidfile and the options every direct start of these tests gives."""
    pidfile = str(tmp_path / "svc.pid")
    log = str(tmp_path / "svc.log")
    return pidfile, ["--pidfile", pidfile, "--log", log, "--user", "nobody", "--group", "nogroup"]


@pytest.mark.skipif(os.geteuid() != 0, reason="starting as another user needs root")
def test_direct_start_is_idempotent_replaces_on_new_arguments_and_stops(tmp_path):
    pidfile, options = start_options(tmp_path)
    base = [*options, "--settle", "0.3"]
    first = cli("direct", "start", *base, "--", "/bin/sleep", "60")
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    assert started["changed"] is True
    status = Path(f"/proc/{started['pid']}/status").read_text()
    assert "Uid:\t65534\t" in status
    again = json.loads(cli("direct", "start", *base, "--", "/bin/sleep", "60").stdout)
    assert (again["changed"], again["pid"]) == (False, started["pid"])
    other = json.loads(cli("direct", "start", *base, "--", "/bin/sleep", "61").stdout)
    assert other["changed"] is True and other["pid"] != started["pid"]
    assert json.loads(cli("direct", "status", "--pidfile", pidfile).stdout)["state"] == "running"
    stopped = json.loads(cli("direct", "stop", "--pidfile", pidfile).stdout)
    assert stopped["changed"] is True
    assert not Path(pidfile).exists()
    assert json.loads(cli("direct", "stop", "--pidfile", pidfile).stdout)["changed"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="starting as another user needs root")
def test_direct_start_reports_a_process_that_exits_at_once(tmp_path):
    pidfile, options = start_options(tmp_path)
    # Options of the command after "--" belong to it, not to direct.
    result = cli(
        "direct", "start", *options, "--", "/bin/sh", "-c", "echo refused on purpose --port; exit 3"
    )
    assert result.returncode == 1
    reply = json.loads(result.stdout)
    assert reply["failed"] is True
    assert "refused on purpose --port" in reply["msg"]
    assert not Path(pidfile).exists()


def test_direct_start_needs_a_command():
    result = cli(
        "direct",
        "start",
        "--pidfile",
        "/nonexistent/x.pid",
        "--log",
        "l",
        "--user",
        "u",
        "--group",
        "g",
    )
    assert result.returncode == 2
    assert "needs the command after --" in result.stderr
