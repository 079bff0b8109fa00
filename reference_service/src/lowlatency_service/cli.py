"""Command line of the reference service: ``lowlatency-service serve|bench|compare|probe|direct``.

The subcommand modules import grpc; they are imported only after the runtime
profile (CPU affinity, gRPC experiments) has been applied, because threads
that gRPC starts inherit the affinity the process has at ``import grpc``.
Their arguments live in a module that does not import grpc.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lowlatency_service import runtime
from lowlatency_service.errors import UsageError

# subcommand -> (module with add_arguments(parser), module with run(args) -> int)
SUBCOMMANDS = {
    "serve": ("lowlatency_service.serve_args", "lowlatency_service.serve"),
    "bench": ("lowlatency_service.bench_args", "lowlatency_service.bench"),
    "compare": ("lowlatency_service.compare_args", "lowlatency_service.compare"),
    "probe": ("lowlatency_service.probe", "lowlatency_service.probe"),
    "direct": ("lowlatency_service.direct", "lowlatency_service.direct"),
}

HELP = {
    "serve": "run the reference gRPC service",
    "bench": "load a running service and gate on latency percentiles",
    "compare": "benchmark default vs tuned vs raw TCP side by side on this machine",
    "probe": "wait until a service's gRPC health check reports SERVING; print JSON",
    "direct": "start, stop or read a service run as a background process without systemd",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowlatency-service", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (args_module, _) in SUBCOMMANDS.items():
        module = importlib.import_module(args_module)
        module.add_arguments(sub.add_parser(name, help=HELP[name], description=HELP[name]))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        runtime.apply_process_profile(args)
        module = importlib.import_module(SUBCOMMANDS[args.command][1])
        return int(module.run(args))
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
