"""A gRPC service that is not the reference service, for bench's --call tests.

Its types come from fixtures/inventory/v1/*.proto, compiled when the tests
run (nothing generated is committed). Reserve answers with the item it was
sent and the "x-tenant" header it saw, and counts the headers; Refuse
answers with the status code it is asked for. Run as a script it serves on
127.0.0.1 and writes its port to a file, for the playbook tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection
from grpc_tools import protoc

FIXTURES = Path(__file__).parent / "fixtures"
PROTO = FIXTURES / "inventory" / "v1" / "inventory.proto"
SERVICE = "inventory.v1.Inventory"
RESERVE = f"{SERVICE}/Reserve"
REFUSE = f"{SERVICE}/Refuse"


def compile_protoset(out: Path) -> Path:
    """protoc --include_imports --descriptor_set_out=out, as a user would run it."""
    argv = [
        "protoc",
        "--include_imports",
        f"--descriptor_set_out={out}",
        f"-I{FIXTURES}",
        str(PROTO.relative_to(FIXTURES)),
    ]
    if protoc.main(argv) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    return out


@dataclass
class Running:
    server: grpc.Server
    port: int
    tenants: Counter[str] = field(default_factory=Counter)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start(
    protoset: Path,
    *,
    with_reflection: bool = True,
    credentials: grpc.ServerCredentials | None = None,
) -> Running:
    """The Inventory service on 127.0.0.1, port 0."""
    pool = descriptor_pool.DescriptorPool()
    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(protoset.read_bytes()).file:
        pool.Add(file_proto)
    service = pool.FindServiceByName(SERVICE)
    types = {
        name: (
            message_factory.GetMessageClass(service.methods_by_name[name].input_type),
            message_factory.GetMessageClass(service.methods_by_name[name].output_type),
        )
        for name in ("Reserve", "Refuse")
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    running = Running(server, 0)
    lock = threading.Lock()

    def reserve(request: object, context: grpc.ServicerContext) -> object:
        tenant = dict(context.invocation_metadata()).get("x-tenant", "")
        with lock:
            running.tenants[tenant] += 1
        return types["Reserve"][1](item=request.item, tenant=tenant)

    def refuse(request: object, context: grpc.ServicerContext) -> object:
        context.abort(_status(request.code), f"refused with {request.code}")

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=types[name][0].FromString,
            response_serializer=types[name][1].SerializeToString,
        )
        for name, handler in (("Reserve", reserve), ("Refuse", refuse))
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if with_reflection:
        reflection.enable_server_reflection((SERVICE, reflection.SERVICE_NAME), server, pool)
    if credentials is None:
        running.port = server.add_insecure_port("127.0.0.1:0")
    else:
        running.port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return running


def _status(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    raise ValueError(f"no status code {number}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        running = start(compile_protoset(Path(scratch) / "inventory.protoset"))
        partial = args.port_file.with_suffix(".partial")
        partial.write_text(str(running.port))
        os.replace(partial, args.port_file)
        running.server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
