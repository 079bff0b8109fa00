"""compare --allocator: the library lookup, the preload, the maps check, the plan, a real run."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from lowlatency_service import allocator, compare
from lowlatency_service.cli import build_parser
from lowlatency_service.histogram import Summary


def test_library_found_by_soname_in_the_given_dirs(tmp_path: Path) -> None:
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    dirs = [str(tmp_path / "missing"), str(tmp_path)]
    assert allocator.library("jemalloc", dirs) == str(tmp_path / "libjemalloc.so.2")
    assert allocator.library("system", dirs) is None
    assert allocator.absent_reason("jemalloc", dirs) is None
    reason = str(allocator.absent_reason("mimalloc", dirs))
    assert "libmimalloc.so.2 not found" in reason and "libmimalloc2.0" in reason
    assert allocator.absent_reason("system", []) is None


def test_preload_goes_first_and_system_leaves_the_environment() -> None:
    env = allocator.environment("/lib/libjemalloc.so.2", {"LD_PRELOAD": "/x.so", "A": "1"})
    assert env == {"LD_PRELOAD": "/lib/libjemalloc.so.2 /x.so", "A": "1"}
    assert allocator.environment("/l.so", {})["LD_PRELOAD"] == "/l.so"
    assert allocator.environment(None, {"A": "1"}) == {"A": "1"}


def test_maps_check_reads_the_mapped_files(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "maps").write_text(
        "7f00-7f10 r--p 00000000 08:01 12 /usr/lib/libjemalloc.so.2\n"
        "7f10-7f20 rw-p 00000000 00:00 0 \n"
        "7f20-7f30 r-xp 00000000 08:01 13 /usr/lib/my lib.so\n"
    )
    assert allocator.mapped(7, "/usr/lib/libjemalloc.so.2", str(tmp_path))
    assert allocator.mapped(7, "/usr/lib/my lib.so", str(tmp_path))
    assert not allocator.mapped(7, "/usr/lib/libmimalloc.so.2", str(tmp_path))


@pytest.mark.parametrize("name", ["jemalloc", "mimalloc"])
def test_a_preloaded_allocator_is_in_the_real_maps(name: str) -> None:
    path = allocator.library(name)
    if path is None:
        pytest.skip(str(allocator.absent_reason(name)))
    env = allocator.environment(path, os.environ)
    with (
        subprocess.Popen(["sleep", "5"], env=env) as preloaded,
        subprocess.Popen(["sleep", "5"]) as plain,
    ):
        try:
            # Popen returns once the child has exec'd; the dynamic loader maps the
            # preloaded library a moment later, before sleep's main runs.
            deadline = time.monotonic() + 5
            while not allocator.mapped(preloaded.pid, path) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert allocator.mapped(preloaded.pid, path)
            assert not allocator.mapped(plain.pid, path)
        finally:
            preloaded.kill()
            plain.kill()


def test_cases_and_ratios_against_system() -> None:
    cases = compare.allocator_cases([1, 16], "0", "1")
    assert [c.name for c in cases] == [
        "tuned c1 system",
        "tuned c1 jemalloc",
        "tuned c1 mimalloc",
        "tuned c16 system",
        "tuned c16 jemalloc",
        "tuned c16 mimalloc",
    ]
    # One server per allocator and pinning, never shared between allocators.
    assert len({c.server_key for c in cases}) == 6
    medians = {
        "tuned c1 system": Summary(200, 200, 400, 500, 600, 10, 0, 4000),
        "tuned c1 jemalloc": Summary(180, 180, 300, 400, 600, 10, 0, 5000),
    }
    found = compare.allocator_ratios(medians, [1, 16])
    assert found == {
        "c1": {"jemalloc/system": {"p50": 0.9, "p99": 0.75, "p99.9": 0.8, "throughput": 1.25}}
    }


def test_payload_default_depends_on_allocator() -> None:
    args = build_parser().parse_args(["compare", "--allocator"])
    cases, dma, _ = compare._plan(args, "0", "1")
    assert (args.payload_bytes, dma, len(cases)) == (1024, False, 6)
    args = build_parser().parse_args(["compare", "--no-cpu-dma-latency"])
    compare._plan(args, "0", "1")
    assert args.payload_bytes == 64
    args = build_parser().parse_args(["compare", "--allocator", "--payload-bytes", "8"])
    compare._plan(args, "0", "1")
    assert args.payload_bytes == 8


def test_a_real_run_measures_each_installed_allocator(tmp_path: Path) -> None:
    out = tmp_path / "alloc.json"
    args = build_parser().parse_args(
        [
            *("compare", "--allocator", "--concurrency-list", "1", "--runs", "1"),
            *("--requests", "200", "--warmup", "50", "--json", str(out)),
        ]
    )
    assert compare.run(args) == 0
    report = json.loads(out.read_text())
    assert report["payload_bytes"] == 1024
    for name in allocator.ALLOCATORS:
        case = report["cases"][f"tuned c1 {name}"]
        assert case["allocator"] == name
        assert case["allocator_library"] == allocator.library(name)
        if allocator.absent_reason(name):
            assert case["skipped"] == allocator.absent_reason(name)
            assert case["median"] is None
        else:
            assert case["skipped"] is None
            assert case["median"]["requests"] == 200 and case["failures"] == []
