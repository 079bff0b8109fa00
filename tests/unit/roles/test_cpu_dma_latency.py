# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel role's script that holds /dev/cpu_dma_latency, run against a plain file."""

import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "kernel" / "files" / "cpu_dma_latency.py"


def start(args, env=None):
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stderr=subprocess.PIPE,
        env=env,
    )


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_writes_binary_int32_keeps_running_and_stops_on_sigterm(tmp_path):
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    proc = start(["7", str(device)])
    try:
        assert wait_for(lambda: device.stat().st_size == 4)
        assert struct.unpack("=i", device.read_bytes()) == (7,)
        time.sleep(0.2)
        assert proc.poll() is None, "the script must keep the file open"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_tells_systemd_when_the_value_is_held(tmp_path):
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(10)
        proc = start(["0", str(device)], env={"NOTIFY_SOCKET": address})
        try:
            assert sock.recv(64) == b"READY=1"
            assert struct.unpack("=i", device.read_bytes()) == (0,)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


@pytest.mark.parametrize("args", [[], ["-1"], ["abc"], ["1", "2", "3"]])
def test_refuses_bad_arguments(tmp_path, args):
    proc = start(args)
    err = proc.communicate(timeout=10)[1]
    assert proc.returncode == 2
    assert b"usage" in err
