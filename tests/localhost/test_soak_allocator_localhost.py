"""reference_service_allocator on this machine: preloaded, read back in the maps, removed.

The reference_service role deploys the service as a background process (no
systemd here) with jemalloc preloaded: the report says applied and the
running process maps the library. Back to system malloc the process is
replaced and maps no jemalloc; state absent removes the service. Skipped
where jemalloc is not installed (the role would install it on this host).
service_pinning's allocator steps run alone against processes started here,
preloaded and not: the library found in the loader's cache and read back in
the maps.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
from collections.abc import Iterator

import pytest
from localhost_helpers import LOCALHOST_ONLY, playbook_runner, tail
from lowlatency_service import allocator

HERE = pathlib.Path(__file__).resolve().parent
PIDFILE = pathlib.Path("/run/alloctest-service/alloctest-service.pid")
ROW = "alloctest-service.service:allocator"

WITH_JEMALLOC = pytest.mark.skipif(
    allocator.library("jemalloc") is None, reason="libjemalloc2 is not installed here"
)
pytestmark = WITH_JEMALLOC


def maps_of_service() -> str:
    pid = json.loads(PIDFILE.read_text())["pid"]
    return pathlib.Path(f"/proc/{pid}/maps").read_text()


def localhost_only(test):
    """Root, no systemd, no boot loader: the role deploys the service on this machine."""
    for mark in LOCALHOST_ONLY:
        test = mark(test)
    return test


@localhost_only
def test_jemalloc_preloaded_read_back_and_removed(tmp_path):
    run = playbook_runner(tmp_path, HERE / "allocator-inventory.yml")
    deploy = str(HERE / "allocator-deploy.yml")

    def rows() -> dict[str, dict]:
        report = json.loads((tmp_path / "report.json").read_text())
        return {row["setting"]: row for row in report}

    try:
        preloaded = run(deploy, "-e", "reference_service_allocator=jemalloc")
        assert preloaded.returncode == 0, tail(preloaded)
        row = rows()[ROW]
        assert row["status"] == "applied", row
        library = allocator.library("jemalloc")
        assert row["actual"] == library
        assert library in maps_of_service()

        plain = run(deploy, "-e", "reference_service_allocator=system")
        assert plain.returncode == 0, tail(plain)
        assert ROW not in rows()
        assert "libjemalloc" not in maps_of_service()

        refused = run(deploy, "-e", "reference_service_allocator=tcmalloc")
        assert refused.returncode != 0
        assert "reference_service_allocator" in refused.stdout and "tcmalloc" in refused.stdout
    finally:
        removed = run(deploy, "-e", "reference_service_state=absent")
    assert removed.returncode == 0, tail(removed)
    assert not PIDFILE.exists()
    assert not pathlib.Path("/opt/alloctest-service").exists()


@pytest.fixture
def sleepers() -> Iterator[tuple[int, int]]:
    """Two processes: one with jemalloc preloaded (mapped once yielded), one without."""
    library = str(allocator.library("jemalloc"))
    started = [
        subprocess.Popen(["sleep", "60"], env=allocator.environment(library, os.environ)),
        subprocess.Popen(["sleep", "60"]),
    ]
    # The loader maps the preload a moment after exec (test_allocator.py).
    deadline = time.monotonic() + 5
    while not allocator.mapped(started[0].pid, library) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield started[0].pid, started[1].pid
    for process in started:
        process.kill()
        process.wait()


def test_service_pinning_preloads_from_the_loader_cache_and_reads_the_maps(tmp_path, sleepers):
    """The drop-in's library and the read-back (systemd itself is molecule's)."""
    run = playbook_runner(tmp_path, HERE / "gate-inventory.yml")
    library = allocator.library("jemalloc")
    preloaded, plain = sleepers
    settings = {
        "pinning_units": [
            {"name": "fast.service", "allocator": "jemalloc"},
            {"name": "slow.service", "allocator": "jemalloc"},
            {"name": "stopped.service", "allocator": "jemalloc"},
            {"name": "plain.service", "allocator": "system"},
        ],
        "pinning_seen": {
            "units": {
                "fast.service": {"pids": [preloaded]},
                "slow.service": {"pids": [plain]},
                "stopped.service": {"pids": []},
                "plain.service": {"pids": [plain]},
            }
        },
    }
    done = run(str(HERE / "pinning-allocator.yml"), "-e", json.dumps(settings))
    assert done.returncode == 0, tail(done)
    result = json.loads((tmp_path / "pinning.json").read_text())
    plan = {unit["name"]: unit for unit in result["plan"]}
    assert os.path.realpath(plan["fast.service"]["preload"]) == os.path.realpath(library)
    assert plan["plain.service"]["preload"] == ""
    rows = {row["setting"]: row for row in result["rows"]}
    assert set(rows) == {
        "fast.service:allocator",
        "slow.service:allocator",
        "stopped.service:allocator",
    }
    assert rows["fast.service:allocator"]["status"] == "applied"
    assert f"/proc/{preloaded}/maps" in rows["fast.service:allocator"]["reason"]
    assert (rows["slow.service:allocator"]["status"], rows["slow.service:allocator"]["actual"]) == (
        "drifted",
        "not mapped",
    )
    assert rows["stopped.service:allocator"]["status"] == "skipped"
