# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reference_service role's helper scripts: the health probe and the direct starter."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[3] / "roles/reference_service/files"


def load(name):
    spec = importlib.util.spec_from_file_location(name, FILES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = load("service_probe")


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
    serve = pytest.importorskip("lowlatency_service.serve")
    server = serve.start_server("127.0.0.1", 0, "default")
    try:
        result = subprocess.run(
            [
                sys.executable,
                str(FILES / "service_probe.py"),
                "--target",
                f"127.0.0.1:{server.port}",
                "--timeout",
                "20",
                "--pid",
                str(os.getpid()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
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
    result = subprocess.run(
        [
            sys.executable,
            str(FILES / "service_probe.py"),
            "--target",
            f"127.0.0.1:{port}",
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"].startswith("UNAVAILABLE")


def direct(*args):
    result = subprocess.run(
        [sys.executable, str(FILES / "direct_service.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result


def start_args(tmp_path):
    """The pidfile and the options every direct start of these tests gives."""
    pidfile = str(tmp_path / "svc.pid")
    log = str(tmp_path / "svc.log")
    return pidfile, ["--pidfile", pidfile, "--log", log, "--user", "nobody", "--group", "nogroup"]


@pytest.mark.skipif(os.geteuid() != 0, reason="starting as another user needs root")
def test_direct_start_is_idempotent_replaces_on_new_arguments_and_stops(tmp_path):
    pidfile, options = start_args(tmp_path)
    base = [*options, "--settle", "0.3"]
    first = direct("start", *base, "--", "/bin/sleep", "60")
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)
    assert started["changed"] is True
    status = Path(f"/proc/{started['pid']}/status").read_text()
    assert f"Uid:\t{65534}\t" in status
    again = json.loads(direct("start", *base, "--", "/bin/sleep", "60").stdout)
    assert (again["changed"], again["pid"]) == (False, started["pid"])
    other = json.loads(direct("start", *base, "--", "/bin/sleep", "61").stdout)
    assert other["changed"] is True and other["pid"] != started["pid"]
    assert json.loads(direct("status", "--pidfile", pidfile).stdout)["state"] == "running"
    stopped = json.loads(direct("stop", "--pidfile", pidfile).stdout)
    assert stopped["changed"] is True
    assert not Path(pidfile).exists()
    assert json.loads(direct("stop", "--pidfile", pidfile).stdout)["changed"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="starting as another user needs root")
def test_direct_start_reports_a_process_that_exits_at_once(tmp_path):
    pidfile, options = start_args(tmp_path)
    result = direct(
        "start",
        *options,
        "--",
        "/bin/sh",
        "-c",
        "echo refused on purpose; exit 3",
    )
    assert result.returncode == 1
    assert "refused on purpose" in json.loads(result.stderr)["msg"]
    assert not Path(pidfile).exists()


def test_direct_start_needs_a_command():
    result = direct("start", "--pidfile", "/nonexistent/x.pid")
    assert result.returncode == 2
    assert "needs --log, --user, --group and the command" in result.stderr
