"""bench's ``--call``: any unary method of any service, described at run time.

The request type comes from the server's reflection service, a
FileDescriptorSet (``--protoset``) or .proto files compiled in process
(``--proto``, needs grpcio-tools). The JSON requests are converted once with
json_format and kept as bytes, so each request then costs the client what
the tuned Echo path costs: bytes out, reply bytes not parsed, the status
checked by the call itself (a non-OK reply raises). Everything that can be
wrong with the call, the descriptors or the data is a UsageError raised
before any load is sent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor

from lowlatency_service.errors import UsageError


@dataclass(frozen=True)
class RawCall:
    """A unary method called with preserialized requests, sent in turn by every slot."""

    method: str  # "/package.Service/Method"
    requests: Sequence[bytes]
    metadata: tuple[tuple[str, str], ...] | None = None


def _file_set(path: str) -> descriptor_pb2.FileDescriptorSet:
    try:
        with open(path, "rb") as handle:
            return descriptor_pb2.FileDescriptorSet.FromString(handle.read())
    except OSError as exc:
        raise UsageError(f"--protoset {path}: {exc.strerror}") from None
    except Exception as exc:  # protobuf's DecodeError differs between backends
        raise UsageError(f"--protoset {path}: not a FileDescriptorSet ({exc})") from None


def _compile(
    protos: Sequence[str], import_paths: Sequence[str]
) -> descriptor_pb2.FileDescriptorSet:
    """The .proto files as protoc --include_imports --descriptor_set_out would write them."""
    if importlib.util.find_spec("grpc_tools") is None:
        raise UsageError("--proto needs grpcio-tools: pip install 'lowlatency-service[codegen]'")
    from grpc_tools import protoc  # noqa: PLC0415  # optional dependency

    # The import paths first: a file found under one keeps the name its importers use.
    include = [*import_paths, *(os.path.dirname(os.path.abspath(p)) for p in protos)]
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "set.pb")
        argv = ["protoc", "--include_imports", f"--descriptor_set_out={out}"]
        argv += [f"-I{path}" for path in [*include, well_known]]
        argv += [os.path.abspath(p) for p in protos]
        if protoc.main(argv) != 0:
            raise UsageError(f"--proto {' '.join(protos)}: protoc failed (its error is above)")
        return _file_set(out)


def _pool_from(
    file_set: descriptor_pb2.FileDescriptorSet, flag: str
) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file_proto in file_set.file:
        try:
            pool.Add(file_proto)
        except Exception as exc:  # conflicting or incomplete files
            raise UsageError(f"{flag}: {file_proto.name}: {exc}") from None
    return pool


def local_pool(args: argparse.Namespace) -> descriptor_pool.DescriptorPool | None:
    """Descriptors from --protoset or --proto, or None for reflection (before connecting)."""
    if args.protoset:
        return _pool_from(_file_set(args.protoset), f"--protoset {args.protoset}")
    if args.proto:
        compiled = _compile(args.proto, args.import_path or [])
        return _pool_from(compiled, f"--proto {' '.join(args.proto)}")
    return None


def _reflection_pool(channel: grpc.Channel, service: str) -> descriptor_pool.DescriptorPool:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: PLC0415
        ProtoReflectionDescriptorDatabase,
    )

    database = ProtoReflectionDescriptorDatabase(channel)
    try:
        database.FindFileContainingSymbol(service)
    except KeyError:
        raise UsageError(f"--call: the server's reflection knows no service {service}") from None
    except grpc.RpcError as exc:
        code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
        raise UsageError(
            f"--call: no descriptors: the server's reflection answered {code}; "
            "give --protoset FILE or --proto FILE"
        ) from None
    return descriptor_pool.DescriptorPool(database)


def _method(pool: descriptor_pool.DescriptorPool, call: str, source: str) -> MethodDescriptor:
    service_name, method_name = call.split("/")
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        raise UsageError(f"--call {call}: no service {service_name} in {source}") from None
    method = service.methods_by_name.get(method_name)
    if method is None:
        known = ", ".join(sorted(service.methods_by_name)) or "none"
        raise UsageError(f"--call {call}: {service_name} has no method {method_name} ({known})")
    if method.client_streaming or method.server_streaming:
        raise UsageError(f"--call {call}: a streaming method; bench calls unary methods only")
    return method


def data_lines(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(where, JSON text) of every request: --data, each line of --data-file, or {}."""
    if args.data is not None:
        return [("--data", args.data)]
    if args.data_file is None:
        return [("default", "{}")]
    try:
        with open(args.data_file, encoding="utf-8") as handle:
            lines = [
                (f"--data-file {args.data_file} line {number}", line)
                for number, line in enumerate(handle, 1)
                if line.strip()
            ]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--data-file {args.data_file}: {exc}") from None
    if not lines:
        raise UsageError(f"--data-file {args.data_file}: no JSON lines")
    return lines


def _serialize(method: MethodDescriptor, lines: Sequence[tuple[str, str]]) -> list[bytes]:
    message_class = message_factory.GetMessageClass(method.input_type)
    requests = []
    for where, text in lines:
        try:
            json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{where}: not JSON: {exc}") from None
        try:
            message = json_format.Parse(text, message_class())
        except json_format.ParseError as exc:
            text_line = " ".join(str(exc).split())
            raise UsageError(
                f"{where}: does not fit {method.input_type.full_name}: {text_line}"
            ) from None
        requests.append(message.SerializeToString())
    return requests


def resolve(
    channel: grpc.Channel,
    args: argparse.Namespace,
    pool: descriptor_pool.DescriptorPool | None,
) -> RawCall:
    """The call bench sends: method found, every request converted (UsageError otherwise)."""
    service_name = args.call.split("/")[0]
    if pool is None:
        pool, source = _reflection_pool(channel, service_name), "the server's reflection"
    else:
        source = f"--protoset {args.protoset}" if args.protoset else "--proto"
    method = _method(pool, args.call, source)
    requests = _serialize(method, data_lines(args))
    metadata = tuple(args.metadata) if args.metadata else None
    return RawCall(f"/{args.call}", requests, metadata)


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror}") from None


def credentials_wanted(args: argparse.Namespace) -> bool:
    return bool(args.tls or args.tls_ca or args.tls_cert or args.tls_server_name)


def credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials of --tls and the --tls-* files, or None for plaintext."""
    if not credentials_wanted(args):
        return None
    root = _read(args.tls_ca, "--tls-ca") if args.tls_ca else None
    key = _read(args.tls_key, "--tls-key") if args.tls_key else None
    chain = _read(args.tls_cert, "--tls-cert") if args.tls_cert else None
    return grpc.ssl_channel_credentials(root, key, chain)


def tls_options(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The name the server's certificate must carry when it is not the target's host."""
    if args.tls_server_name:
        return [("grpc.ssl_target_name_override", args.tls_server_name)]
    return []
