"""direct start --env: the variables reach the process and count in what a start compares."""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

DIRECT = [str(Path(sys.executable).with_name("lowlatency-service")), "direct"]


def direct(*args: str) -> dict:
    done = subprocess.run([*DIRECT, *args], capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="direct start drops to --user: needs root")
def test_env_reaches_the_process_and_a_changed_env_restarts_it(tmp_path: Path) -> None:
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    pidfile = str(tmp_path / "sleep.pid")
    start = [
        *("start", "--pidfile", pidfile, "--log", str(tmp_path / "log")),
        *("--user", user, "--group", group, "--settle", "0.2"),
    ]
    command = ["--", "/bin/sleep", "30"]
    try:
        first = direct(*start, "--env", "LOWLATENCY_TEST=one", *command)
        assert first["changed"] is True
        environ = Path(f"/proc/{first['pid']}/environ").read_bytes().split(b"\0")
        assert b"LOWLATENCY_TEST=one" in environ
        same = direct(*start, "--env", "LOWLATENCY_TEST=one", *command)
        assert (same["changed"], same["pid"]) == (False, first["pid"])
        other = direct(*start, "--env", "LOWLATENCY_TEST=two", *command)
        assert other["changed"] is True and other["pid"] != first["pid"]
        without = direct(*start, *command)
        assert without["changed"] is True
        assert direct(*start, *command)["changed"] is False
    finally:
        direct("stop", "--pidfile", pidfile, "--timeout", "2")


def test_env_must_be_name_equals_value() -> None:
    done = subprocess.run(
        [
            *DIRECT,
            "start",
            "--pidfile",
            "/x",
            "--log",
            "/x",
            "--user",
            "u",
            "--group",
            "g",
            *("--env", "NOEQUALS", "--", "/bin/true"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "must be NAME=VALUE, not 'NOEQUALS'" in done.stderr
