"""Runtime profiles: cpulists, process measures (in subprocesses), options, gc, memory lock."""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

import pytest
from lowlatency_service import runtime
from lowlatency_service._proto.lowlatency.v1 import latency_pb2
from lowlatency_service.cli import UsageError
from lowlatency_service.serve import MAX_PAYLOAD_BYTES


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0", [0]),
        ("0-2,5", [0, 1, 2, 5]),
        (" 3,1,1 ", [1, 3]),
        ("2-2", [2]),
        ("0-1,1-3", [0, 1, 2, 3]),
    ],
)
def test_parse_cpulist(text: str, cpus: list[int]) -> None:
    assert runtime.parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["", " ", "a", "1-", "-1", "3-1", "0,,1", "1.5", "0-x"])
def test_parse_cpulist_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="CPU"):
        runtime.parse_cpulist(text)


@pytest.mark.parametrize(
    ("cpus", "text"), [([0], "0"), ([0, 1, 2, 5], "0-2,5"), ([3, 1, 7, 8, 9], "1,3,7-9")]
)
def test_format_cpulist(cpus: list[int], text: str) -> None:
    assert runtime.format_cpulist(cpus) == text
    assert runtime.parse_cpulist(text) == sorted(cpus)


def test_resolve_cpus() -> None:
    allowed = runtime.allowed_cpus()
    assert runtime.resolve_cpus(None) is None
    assert runtime.resolve_cpus(str(allowed[0])) == [allowed[0]]
    # Beyond the host's CPUs when this process may use them all.
    with pytest.raises(UsageError, match=r"not available to this process|beyond this host's CPUs"):
        runtime.resolve_cpus(str(max(allowed) + 1))
    with pytest.raises(UsageError, match="CPU 2000000000 in '0-2000000000' beyond this host's"):
        runtime.resolve_cpus("0-2000000000")
    with pytest.raises(UsageError, match="--cpus: bad CPU"):
        runtime.resolve_cpus("zero")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, ",".join(runtime.ENGINE_OFF_EXPERIMENTS)),
        ("", ",".join(runtime.ENGINE_OFF_EXPERIMENTS)),
        ("foo", "foo," + ",".join(runtime.ENGINE_OFF_EXPERIMENTS)),
        # The user's own choice about one of ours wins.
        (
            "event_engine_client",
            "event_engine_client,-event_engine_listener,-event_engine_for_all_other_endpoints",
        ),
    ],
)
def test_merged_experiments(user: str | None, expected: str) -> None:
    assert runtime.merged_experiments(user) == expected


PROBE = """
import argparse, json, os, sys
from lowlatency_service import runtime
args = argparse.Namespace(**json.loads(sys.argv[1]))
runtime.apply_process_profile(args)
print(json.dumps({
    "affinity": sorted(os.sched_getaffinity(0)),
    "experiments": os.environ.get("GRPC_EXPERIMENTS"),
    "grpc_imported": "grpc" in sys.modules,
    "measures": {m.name: m.status for m in runtime.describe(getattr(args, "profile", None))},
}))
"""


def apply_in_subprocess(env: dict[str, str] | None = None, **namespace: object) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(namespace)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_tuned_profile_pins_and_turns_the_engine_off() -> None:
    cpu = runtime.allowed_cpus()[-1]
    state = apply_in_subprocess(profile="tuned", cpus=str(cpu))
    assert state["affinity"] == [cpu]
    assert state["experiments"] == ",".join(runtime.ENGINE_OFF_EXPERIMENTS)
    assert not state["grpc_imported"]
    assert state["measures"]["cpu-affinity"] == f"applied: {cpu}"
    assert state["measures"]["grpc-engine-off"].startswith("applied")
    # Root here, so permitted; elsewhere it must report, not fail.
    assert state["measures"]["memory-lock"].startswith(("applied", "skipped", "not permitted"))


def test_tuned_profile_keeps_the_users_experiments() -> None:
    state = apply_in_subprocess(
        env={"GRPC_EXPERIMENTS": "event_engine_listener"}, profile="tuned", cpus=None
    )
    assert state["experiments"] == (
        "event_engine_listener,-event_engine_client,-event_engine_for_all_other_endpoints"
    )
    assert "merged" in state["measures"]["grpc-engine-off"]


def test_default_profile_changes_nothing_but_explicit_cpus() -> None:
    cpu = runtime.allowed_cpus()[0]
    state = apply_in_subprocess(profile="default", cpus=str(cpu))
    assert state["affinity"] == [cpu]
    assert state["experiments"] is None
    assert state["measures"] == {}
    untouched = apply_in_subprocess(profile="default", cpus=None)
    assert untouched["affinity"] == runtime.allowed_cpus()


def test_no_profile_does_nothing() -> None:
    state = apply_in_subprocess(cpus="0")  # e.g. compare: no profile attribute
    assert state["affinity"] == runtime.allowed_cpus()
    assert state["experiments"] is None


def test_apply_refuses_after_grpc_import_and_bad_input() -> None:
    import grpc  # noqa: F401, PLC0415  # the point: grpc is already loaded

    with pytest.raises(RuntimeError, match="before grpc is imported"):
        runtime.apply_process_profile(argparse.Namespace(profile="tuned", cpus=None))
    with pytest.raises(UsageError, match="unknown profile"):
        runtime.apply_process_profile(argparse.Namespace(profile="fast", cpus=None))


def test_engine_experiments_status_detects_unknown_names() -> None:
    # The pinned grpcio knows the names; if an upgrade retires them, this says so.
    assert runtime.engine_experiments_status() == "honoured"
    verdict = runtime.engine_experiments_status(("-no_such_experiment_xyz",))
    assert verdict.startswith("not honoured")
    assert "no_such_experiment_xyz" in verdict


def largest_message() -> int:
    top64, top32 = (1 << 64) - 1, (1 << 32) - 1
    payload = b"x" * MAX_PAYLOAD_BYTES
    request = latency_pb2.EchoRequest(
        request_id=top64, client_send_ns=top64, work_iterations=top32, payload=payload
    )
    reply = latency_pb2.EchoReply(
        request_id=top64, client_send_ns=top64, work_result=top64, hops=top32, payload=payload
    )
    return max(request.ByteSize(), reply.ByteSize())


def test_options() -> None:
    assert runtime.channel_options("default") == []
    channel = dict(runtime.channel_options("tuned"))
    server = dict(runtime.server_options("tuned"))
    assert channel["grpc.enable_retries"] == 0
    # Both profiles: one server per port.
    assert dict(runtime.server_options("default"))["grpc.so_reuseport"] == 0
    assert server["grpc.so_reuseport"] == 0
    # The limits protect without refusing any valid message.
    for options in (channel, server):
        limit = options["grpc.max_receive_message_length"]
        assert largest_message() < limit <= 4096
    # Client keepalive pings must be allowed by the server's ping policy.
    assert (
        channel["grpc.keepalive_time_ms"]
        >= server["grpc.http2.min_recv_ping_interval_without_data_ms"]
    )
    assert server["grpc.keepalive_permit_without_calls"] == 1


def test_worker_threads() -> None:
    assert runtime.worker_threads("default", [0, 1]) == 10
    assert runtime.worker_threads("tuned", [1]) == 1
    assert runtime.worker_threads("tuned", [0, 1]) == 2
    assert runtime.worker_threads("tuned", [0, 1], blocking_calls=True) == 16
    assert runtime.worker_threads("tuned", None) == len(runtime.allowed_cpus())


def test_after_warmup_freezes_only_when_tuned() -> None:
    gc.unfreeze()
    runtime.after_warmup("default")
    assert gc.get_freeze_count() == 0
    try:
        runtime.after_warmup("tuned")
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_memory_lock_is_skipped_when_the_limit_would_break_allocations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime.resource, "getrlimit", lambda _: (65536, 65536))
    monkeypatch.setattr(runtime, "_has_cap_ipc_lock", lambda: False)
    assert runtime.lock_memory().startswith("skipped: RLIMIT_MEMLOCK is 65536 bytes")


def test_describe() -> None:
    assert runtime.describe("default") == []
    names = [measure.name for measure in runtime.describe("tuned")]
    assert len(names) == len(set(names))
    assert {"cpu-affinity", "grpc-engine-off", "memory-lock", "gc-freeze", "worker-threads"} <= set(
        names
    )
    assert all(set(m.as_dict()) == {"name", "summary", "status"} for m in runtime.describe("tuned"))
