"""bench's client CPU per request: the Echo path against the same request through --call.

Starts the reference service on loopback, then runs bench alternately with
its own Echo and with ``--call lowlatency.v1.LatencyService/Echo`` and the
same request as JSON, three times per client profile, and prints each run's
client_cpu_us_per_request and the medians (docs/bench-generic-call.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "lowlatency_service.cli"]
ECHO = "lowlatency.v1.LatencyService/Echo"
# bench's own Echo request: request_id 1, 64 bytes of 0x5a, no work.
DATA = json.dumps({"requestId": "1", "payload": base64.b64encode(b"\x5a" * 64).decode()})


def bench(port: int, profile: str, requests: int, out: Path, call: bool) -> dict:
    argv = [*CLI, "bench", "--target", f"127.0.0.1:{port}", "--profile", profile]
    argv += ["--requests", str(requests), "--warmup", "500", "--json", str(out)]
    if call:
        argv += ["--call", ECHO, "--data", DATA]
    subprocess.run(argv, check=True, capture_output=True)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50871)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen([*CLI, "serve", "--port", str(args.port)])
    try:
        time.sleep(3)
        with tempfile.TemporaryDirectory() as scratch:
            for profile in ("tuned", "default"):
                cpu: dict[str, list[float]] = {"echo": [], "call": []}
                for run in range(args.runs):
                    for path in ("echo", "call"):
                        out = Path(scratch) / f"{profile}-{path}-{run}.json"
                        result = bench(args.port, profile, args.requests, out, path == "call")
                        cpu[path].append(result["client_cpu_us_per_request"])
                for path, values in cpu.items():
                    median = statistics.median(values)
                    print(f"{profile:8} {path:5} cpu us/request {values} median {median}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
