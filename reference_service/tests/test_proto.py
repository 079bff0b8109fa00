"""The committed generated code: current, importable, and the staleness check bites."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from lowlatency_service._proto.lowlatency.v1 import latency_pb2, latency_pb2_grpc

SERVICE_ROOT = Path(__file__).resolve().parent.parent
GENERATOR = SERVICE_ROOT / "tools" / "gen_proto.py"
GENERATED = Path("src") / "lowlatency_service" / "_proto"

pytest.importorskip("grpc_tools", reason="the codegen extra (grpcio-tools) is not installed")


def run_generator(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "tools" / "gen_proto.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def service_copy(tmp_path: Path) -> Path:
    """What the generator reads and writes, copied, so the tests never touch the tree."""
    root = tmp_path / "reference_service"
    shutil.copytree(SERVICE_ROOT / "tools", root / "tools")
    shutil.copytree(SERVICE_ROOT / "proto", root / "proto")
    shutil.copytree(
        SERVICE_ROOT / GENERATED, root / GENERATED, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(SERVICE_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_committed_code_is_current() -> None:
    result = run_generator(SERVICE_ROOT, "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_when_a_generated_file_is_altered(service_copy: Path) -> None:
    module = service_copy / GENERATED / "lowlatency" / "v1" / "latency_pb2.py"
    module.write_text(module.read_text() + "# edited by hand\n")
    result = run_generator(service_copy, "--check")
    assert result.returncode == 1
    assert "stale" in result.stderr and "lowlatency/v1/latency_pb2.py" in result.stderr
    assert "+# edited by hand" not in result.stdout and "-# edited by hand" in result.stdout


def test_check_fails_when_the_proto_changed(service_copy: Path) -> None:
    proto = service_copy / "proto" / "lowlatency" / "v1" / "latency.proto"
    text = proto.read_text().replace(
        "bytes payload = 5;", "bytes payload = 5;\n  fixed32 extra = 6;"
    )
    proto.write_text(text)
    result = run_generator(service_copy, "--check")
    assert result.returncode == 1
    assert "make proto" in result.stderr


def test_check_fails_on_a_missing_or_extra_file(service_copy: Path) -> None:
    (service_copy / GENERATED / "lowlatency" / "v1" / "latency_pb2.pyi").unlink()
    (service_copy / GENERATED / "stray.py").write_text("")
    result = run_generator(service_copy, "--check")
    assert result.returncode == 1
    assert "latency_pb2.pyi" in result.stderr and "stray.py" in result.stderr


def test_regeneration_restores_the_committed_code(service_copy: Path) -> None:
    shutil.rmtree(service_copy / GENERATED)
    assert run_generator(service_copy).returncode == 0
    assert run_generator(service_copy, "--check").returncode == 0
    for committed in (SERVICE_ROOT / GENERATED).rglob("*.py*"):
        if "__pycache__" not in committed.parts:
            fresh = service_copy / GENERATED / committed.relative_to(SERVICE_ROOT / GENERATED)
            assert fresh.read_text() == committed.read_text()


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_refuses_another_grpcio_tools(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    generator = load_generator()
    pinned = generator.pinned_tools_version()
    monkeypatch.setattr(generator.metadata, "version", lambda _: "0.0.1")
    assert generator.main(["--check"]) == 1
    assert f"grpcio-tools 0.0.1 is installed but {pinned} is pinned" in capsys.readouterr().err


def test_generated_code_imports_inside_the_package() -> None:
    # The canonical .proto name keeps reflection and other languages' stubs in step.
    assert latency_pb2.DESCRIPTOR.name == "lowlatency/v1/latency.proto"
    service = latency_pb2.DESCRIPTOR.services_by_name["LatencyService"]
    assert service.full_name == "lowlatency.v1.LatencyService"
    assert [method.name for method in service.methods] == ["Echo"]
    # The gRPC module's rewritten import reaches this very module, not a second
    # copy under a top-level `lowlatency` package.
    assert latency_pb2_grpc.lowlatency_dot_v1_dot_latency__pb2 is latency_pb2
    assert "lowlatency" not in sys.modules
