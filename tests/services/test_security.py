"""TLS/mTLS on every hop and the gateway's bearer token, switched on: a client with the CA, its own certificate
and the token gets a whole answer (so the gateway's mTLS channels to the three stages work); anything less is
refused with a precise status."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.candidate.servicer import CandidateApp
from services.candidate.settings import CandidateSettings
from services.common.security import TlsSettings
from services.common.server import start_and_load
from services.common.settings import CommonSettings
from services.gateway.servicer import GatewayApp
from services.gateway.settings import GatewaySettings
from services.ranking.servicer import RankingApp
from services.ranking.settings import RankingSettings
from services.rerank.servicer import RerankApp
from services.rerank.settings import RerankSettings

TOKEN = "s3cret-token"


def _cert(name: str, issuer_key, issuer_name, key, ca: bool = False) -> x509.Certificate:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path.with_suffix(".crt"), path.with_suffix(".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("recsys-test-ca", ca_key, None, ca_key, ca=True)
    ca_crt, _ = _write(tmp / "ca", ca, ca_key)
    out = {"ca": ca_crt}
    for name in ("service", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        out[f"{name}_crt"], out[f"{name}_key"] = _write(tmp / name, _cert(name, ca_key, ca.subject, key), key)
    return out


async def test_mtls_everywhere_and_bearer_token(
    pki: dict[str, Path], common_settings: CommonSettings, tmp_path
) -> None:
    tls = TlsSettings(cert_file=pki["service_crt"], key_file=pki["service_key"], ca_file=pki["ca"],
                      require_client_cert=True)  # fmt: skip
    common = common_settings.model_copy(update={"tls": tls})
    stages = {
        "candidate": await start_and_load(CandidateApp(CandidateSettings(port=0), common)),
        "ranking": await start_and_load(RankingApp(RankingSettings(port=0), common)),
        "rerank": await start_and_load(RerankApp(RerankSettings(port=0), common)),
    }
    settings = GatewaySettings(
        port=0, event_log_path=tmp_path / "events.db", push_features=False, auth_token=TOKEN,
        **{f"{name}_address": f"localhost:{server.port}" for name, server in stages.items()},
    )  # fmt: skip
    gateway = await start_and_load(GatewayApp(settings, common))
    address = f"localhost:{gateway.port}"
    client_creds = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(), pki["client_key"].read_bytes(), pki["client_crt"].read_bytes()
    )
    request = gateway_pb2.RecommendRequest(user_id="196", count=5)
    try:
        async with grpc.aio.secure_channel(address, client_creds) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            reply = await stub.Recommend(request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
            assert len(reply.items) == 5 and not reply.degraded_stages  # every hop spoke mTLS
            for metadata in ([], [("authorization", "Bearer wrong")], [("authorization", TOKEN)]):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Recommend(request, metadata=metadata, timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in info.value.details()
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes need no token

        no_client_cert = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        for channel in (grpc.aio.secure_channel(address, no_client_cert), grpc.aio.insecure_channel(address)):
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await gateway_pb2_grpc.GatewayServiceStub(channel).Recommend(
                        request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=5
                    )
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        for server in (gateway, *stages.values()):
            await server.stop(0)


def test_tls_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="set together"):
        TlsSettings(cert_file=Path("a.crt"))
    with pytest.raises(ValueError, match="require_client_cert needs"):
        TlsSettings(require_client_cert=True)
