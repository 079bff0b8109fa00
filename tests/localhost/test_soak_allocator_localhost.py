"""reference_service_allocator on this machine: preloaded, read back in the maps, removed.

The reference_service role deploys the service as a background process (no
systemd here) with jemalloc preloaded: the report says applied and the
running process maps the library. Back to system malloc the process is
replaced and maps no jemalloc; state absent removes the service. Skipped
where jemalloc is not installed (the role would install it on this host).
"""

from __future__ import annotations

import json
import pathlib

import pytest
from localhost_helpers import LOCALHOST_ONLY, playbook_runner, tail
from lowlatency_service import allocator

HERE = pathlib.Path(__file__).resolve().parent
PIDFILE = pathlib.Path("/run/alloctest-service/alloctest-service.pid")
ROW = "alloctest-service.service:allocator"

pytestmark = [
    *LOCALHOST_ONLY,
    pytest.mark.skipif(
        allocator.library("jemalloc") is None, reason="libjemalloc2 is not installed here"
    ),
]


def maps_of_service() -> str:
    pid = json.loads(PIDFILE.read_text())["pid"]
    return pathlib.Path(f"/proc/{pid}/maps").read_text()


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
