"""Fixtures shared by the reference service's tests."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SERVE = [str(Path(sys.executable).with_name("lowlatency-service")), "serve", "--port", "0"]


@pytest.fixture
def start_cli() -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """Start ``lowlatency-service serve --port 0 ARGS...``; returns (process, address).

    The address is read from serve's "listening on" line. Whatever is still
    running at the end of the test is killed.
    """
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [*SERVE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (\S+:\d+)", line)
        if match is None:
            process.kill()
            pytest.fail(f"serve did not start: {line!r} {process.communicate()[1]}")
        return process, match.group(1)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()
