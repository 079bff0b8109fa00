"""playbooks/gate.yml gates a gRPC service this project did not write, from this machine.

The service is reference_service/tests/inventory_service.py (its own proto,
reflection on), started here on loopback. One run passes with the request
types compiled from its .proto files on the load host, the requests sent in
turn and a header sent with each; one with a p50 limit below what any gRPC
call takes fails, naming the figure, its value and its limit; one without
a target is refused before any load.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from localhost_helpers import REPO, playbook_runner, recap, tail

INVENTORY = pathlib.Path(__file__).resolve().parent / "gate-inventory.yml"
SERVICE = REPO / "reference_service" / "tests" / "inventory_service.py"
FIXTURES = SERVICE.parent / "fixtures"
RESERVE = "inventory.v1.Inventory/Reserve"
GATE = re.compile(r"p50 = ([0-9.]+) us > limit ([0-9.]+) us")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port_file = tmp_path_factory.mktemp("inventory") / "port"
    server = subprocess.Popen([sys.executable, str(SERVICE), "--port-file", str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert server.poll() is None, "the inventory service exited"
            assert time.monotonic() < deadline, "the inventory service wrote no port"
            time.sleep(0.1)
        yield f"127.0.0.1:{port_file.read_text()}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def gate(tmp_path):
    run = playbook_runner(tmp_path, INVENTORY)

    def gate_run(*extra: str) -> subprocess.CompletedProcess:
        return run("gate", "-e", f"benchmark_venv={sys.prefix}", *extra)

    return gate_run


def bench_json(tmp_path: pathlib.Path) -> dict:
    (found,) = (tmp_path / "artifacts" / "localhost").glob("*/bench.json")
    return json.loads(found.read_text())


def test_gate_passes_with_proto_files_data_lines_and_metadata(gate, target, tmp_path):
    settings = {
        "benchmark_target": target,
        "benchmark_call": RESERVE,
        "benchmark_proto": [str(FIXTURES / "inventory" / "v1" / "inventory.proto")],
        "benchmark_proto_import_paths": [str(FIXTURES)],
        "benchmark_data": [{"item": {"sku": "A-1"}}, {"item": {"sku": "B-2", "quantity": 2}}],
        "benchmark_metadata": {"x-tenant": "blue"},
        "benchmark_max_p50_us": 50000,
    }
    passed = gate("-e", json.dumps(settings))
    assert passed.returncode == 0, tail(passed)
    assert recap(passed)["localhost"][1] == 0, tail(passed)
    result = bench_json(tmp_path)
    assert result["verdict"]["passed"] is True
    assert result["requests"] == 300
    assert result["call"] == RESERVE
    assert result["descriptors"] == "proto"
    assert result["request_messages"] == 2
    assert result["metadata_keys"] == ["x-tenant"]


def test_gate_fails_with_figure_value_and_limit(gate, target, tmp_path):
    limit = 1.0  # far below any gRPC round trip (MEASUREMENTS.md: the raw TCP floor is ~18 us)
    failed = gate(
        *("-e", f"benchmark_target={target}", "-e", f"benchmark_call={RESERVE}"),
        *("-e", f"benchmark_max_p50_us={limit}"),
    )
    assert failed.returncode != 0, tail(failed)
    breach = GATE.search(failed.stdout)
    assert breach, tail(failed)
    assert float(breach.group(1)) > float(breach.group(2)) == limit
    verdict = bench_json(tmp_path)["verdict"]
    assert verdict["breaches"] == [
        {"figure": "p50_us", "value": float(breach.group(1)), "limit": limit}
    ]
    assert bench_json(tmp_path)["descriptors"] == "reflection"


def test_gate_without_target_or_with_a_bad_call_is_refused(gate, target):
    refused = gate("-e", f"benchmark_call={RESERVE}")
    assert refused.returncode != 0
    assert "benchmark_target must be the service's HOST:PORT" in refused.stdout, tail(refused)
    refused = gate("-e", f"benchmark_target={target}", "-e", "benchmark_call=Reserve")
    assert refused.returncode != 0
    wanted = "benchmark_call must be package.Service/Method, or empty for the reference service's"
    assert f'{wanted} Echo (got "Reserve")' in refused.stdout, tail(refused)
