"""bench --call against a service this project did not write (inventory_service.py).

Types through reflection, a protoset and .proto files; plaintext, TLS and
mutual TLS with a CA made here; metadata seen by the server; non-OK replies
counted by code and failing the gate; usage errors refused before any load.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from inventory_service import FIXTURES, PROTO, REFUSE, RESERVE, Running, compile_protoset, start
from lowlatency_service import bench
from lowlatency_service.cli import build_parser
from lowlatency_service.errors import UsageError

REQUESTS = ("--requests", "200", "--warmup", "20")
ITEM = '{"item": {"sku": "A-1", "quantity": 3}}'


@pytest.fixture(scope="module")
def protoset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_protoset(tmp_path_factory.mktemp("protoset") / "inventory.protoset")


@pytest.fixture(scope="module")
def plain(protoset: Path) -> Iterator[Running]:
    running = start(protoset)
    yield running
    running.server.stop(grace=None)


@pytest.fixture(scope="module")
def no_reflection(protoset: Path) -> Iterator[Running]:
    running = start(protoset, with_reflection=False)
    yield running
    running.server.stop(grace=None)


def run_bench(target: str, *extra: str) -> int:
    args = build_parser().parse_args(["bench", "--target", target, *extra])
    return bench.run(args)


def measured(tmp_path: Path, target: str, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "bench.json"
    status = run_bench(target, *REQUESTS, "--json", str(out), *extra)
    return status, json.loads(out.read_text())


@pytest.mark.parametrize("source", ["reflection", "protoset", "proto"])
def test_call_passes_with_each_descriptor_source(
    source: str, plain: Running, no_reflection: Running, protoset: Path, tmp_path: Path
) -> None:
    # protoset and proto against the server without reflection: the types can
    # only have come from the flag.
    target, flags = {
        "reflection": (plain, []),
        "protoset": (no_reflection, ["--protoset", str(protoset)]),
        "proto": (no_reflection, ["--proto", str(PROTO), "--import-path", str(FIXTURES)]),
    }[source]
    status, result = measured(
        tmp_path, target.address, "--call", RESERVE, "--data", ITEM, "--concurrency", "2", *flags
    )
    assert status == 0, result["verdict"]
    assert result["requests"] == 200
    assert result["errors"] == 0
    assert result["call"] == RESERVE
    assert result["descriptors"] == source
    assert result["tls"] == "plaintext"
    assert result["payload_bytes"] is None


def test_tuned_futures_model_runs_the_call(plain: Running, tmp_path: Path) -> None:
    status, result = measured(
        tmp_path,
        plain.address,
        *("--call", RESERVE, "--data", ITEM, "--profile", "tuned", "--concurrency", "4"),
    )
    assert status == 0, result["verdict"]
    assert result["client_model"] == "futures"
    assert result["requests"] == 200


def test_metadata_reaches_the_server_and_data_lines_are_sent_in_turn(
    plain: Running, tmp_path: Path
) -> None:
    lines = tmp_path / "items.jsonl"
    lines.write_text('{"item": {"sku": "A"}}\n\n{"item": {"sku": "B", "quantity": 2}}\n')
    before = plain.tenants["blue"]
    status, result = measured(
        tmp_path,
        plain.address,
        *("--call", RESERVE, "--data-file", str(lines), "--metadata", "x-tenant=blue"),
    )
    assert status == 0, result["verdict"]
    assert plain.tenants["blue"] - before == 220  # warm-up and measured requests
    assert result["request_messages"] == 2
    assert result["metadata_keys"] == ["x-tenant"]


def test_non_ok_replies_are_counted_by_code_and_fail_the_gate(
    plain: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, result = measured(
        tmp_path, plain.address, "--call", REFUSE, "--data", '{"code": 8}', "--warmup", "0"
    )
    assert status == 1
    assert result["errors"] == 200
    assert result["requests"] == 0
    verdict = result["verdict"]
    assert verdict["outcome"] == "breached"
    assert verdict["errors_by_code"] == {"RESOURCE_EXHAUSTED": 200}
    assert {"figure": "errors", "value": 200, "limit": 0} in verdict["breaches"]
    assert "errors by code: RESOURCE_EXHAUSTED 200" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--call", "inventory.v1.Inventory/Lose"], "has no method Lose"),
        (["--call", "inventory.v1.Nothing/Reserve"], "knows no service inventory.v1.Nothing"),
        (["--call", RESERVE, "--data", "{item"], "--data: not JSON"),
        (
            ["--call", RESERVE, "--data", '{"item": {"colour": "red"}}'],
            "--data: does not fit inventory.v1.ReserveRequest",
        ),
        (["--data", ITEM], "--data need --call"),
        (["--call", RESERVE, "--tls-cert", str(PROTO)], "needs both --tls-cert and --tls-key"),
    ],
)
def test_usage_errors_name_the_problem_before_any_load(
    plain: Running, extra: list[str], message: str
) -> None:
    before = sum(plain.tenants.values())
    with pytest.raises(UsageError, match=message):
        run_bench(plain.address, *REQUESTS, *extra)
    assert sum(plain.tenants.values()) == before


def test_no_reflection_and_no_descriptors_is_a_usage_error(no_reflection: Running) -> None:
    with pytest.raises(UsageError, match="reflection answered UNIMPLEMENTED; give --protoset"):
        run_bench(no_reflection.address, *REQUESTS, "--call", RESERVE)


def test_usage_error_exits_2_with_one_line(plain: Running) -> None:
    argv = [sys.executable, "-m", "lowlatency_service.cli", "bench", "--target", plain.address]
    done = subprocess.run(
        [*argv, *REQUESTS, "--call", f"{RESERVE}x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith(
        "--call inventory.v1.Inventory/Reservex: inventory.v1.Inventory has no method Reservex "
        "(Refuse, Reserve)"
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(item: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for inventory.test only, a client certificate."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("test CA", ca_key, None)
    server = _certificate(
        "inventory.test",
        server_key,
        ("test CA", ca_key),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[x509.DNSName("inventory.test")],
    )
    client = _certificate(
        "bench client", client_key, ("test CA", ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    files = {
        "ca": ca,
        "server": server,
        "server_key": server_key,
        "client": client,
        "client_key": client_key,
    }
    paths = {}
    for name, item in files.items():
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(_pem(item))
    return paths


def _server_credentials(pki: dict[str, Path], *, mutual: bool) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(pki["server_key"].read_bytes(), pki["server"].read_bytes())],
        root_certificates=pki["ca"].read_bytes() if mutual else None,
        require_client_auth=mutual,
    )


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual_tls"])
def test_tls_and_mutual_tls(
    mutual: bool, protoset: Path, pki: dict[str, Path], tmp_path: Path
) -> None:
    running = start(protoset, credentials=_server_credentials(pki, mutual=mutual))
    try:
        tls = ["--tls-ca", str(pki["ca"]), "--tls-server-name", "inventory.test"]
        client = ["--tls-cert", str(pki["client"]), "--tls-key", str(pki["client_key"])]
        call = ["--call", RESERVE, "--data", ITEM, "--timeout", "1"]
        status, result = measured(tmp_path, running.address, *call, *tls, *client[: 4 * mutual])
        assert status == 0, result["verdict"]
        assert result["requests"] == 200
        assert result["tls"] == ("mutual_tls" if mutual else "tls")
        if mutual:
            # Without a client certificate the handshake fails: nothing connects.
            status, result = measured(tmp_path, running.address, *call, *tls)
            assert status == 3
            assert result["verdict"]["outcome"] == "unreachable"
        # The certificate names inventory.test, not the address connected to.
        status, result = measured(tmp_path, running.address, *call, *tls[:2], *client)
        assert status == 3
        assert result["verdict"]["outcome"] == "unreachable"
    finally:
        running.server.stop(grace=None)
