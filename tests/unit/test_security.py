"""Kafka security settings reach every client; secrets never show up in output or logs."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import typing
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from pydantic import BaseModel, SecretStr

from kernel.errors import SecurityError
from kernel.settings import KafkaSettings, Settings
from streams import admin, config, consumer, producer, security
from streams.gateway import create_app

SECRETS = {
    "AITL_KAFKA_SASL_PASSWORD": "kafka-pw-7f3a",
    "AITL_KAFKA_SSL_KEY_PASSWORD": "key-pw-91c2",
    "AITL_API_TOKENS": "tok-alpha-5d1e,tok-beta-8b44",
    "AITL_LLM_JUDGE_API_KEY": "judge-key-2e6f",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a client certificate whose key is encrypted with the key password."""
    out = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: Any) -> bytes:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=subject == issuer, path_length=None), True)
        )
        return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    (out / "ca.pem").write_bytes(cert("aitl-test-ca", ca_key, "aitl-test-ca", ca_key))
    (out / "client.pem").write_bytes(cert("aitl-client", client_key, "aitl-test-ca", ca_key))
    (out / "client.key").write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(SECRETS["AITL_KAFKA_SSL_KEY_PASSWORD"].encode()),
        )
    )
    return {"ca": out / "ca.pem", "cert": out / "client.pem", "key": out / "client.key"}


@pytest.fixture
def sasl_ssl_env(monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]) -> Settings:
    """Settings read from the environment as a cluster deployment sets it."""
    env = SECRETS | {
        "AITL_KAFKA_BOOTSTRAP": "kafka-0.example:9093,kafka-1.example:9093",
        "AITL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AITL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AITL_KAFKA_SASL_USERNAME": "aitl-processors",
        "AITL_KAFKA_SSL_CA_LOCATION": str(pki["ca"]),
        "AITL_KAFKA_SSL_CERTIFICATE_LOCATION": str(pki["cert"]),
        "AITL_KAFKA_SSL_KEY_LOCATION": str(pki["key"]),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


class _Recorder:
    """Stands in for a confluent-kafka client class and keeps the config it was built with."""

    kind = ""
    built: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, conf: dict[str, Any], *_: Any, **__: Any) -> None:
        self.built.append((self.kind, dict(conf)))

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


EXPECTED_LIBRDKAFKA = {
    "bootstrap.servers": "kafka-0.example:9093,kafka-1.example:9093",
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "aitl-processors",
    "sasl.password": SECRETS["AITL_KAFKA_SASL_PASSWORD"],
    "ssl.key.password": SECRETS["AITL_KAFKA_SSL_KEY_PASSWORD"],
}


def test_producer_consumer_and_admin_are_built_with_sasl_ssl(
    sasl_ssl_env: Settings, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, dict[str, Any]]] = []
    for module, kind in (
        (producer, "Producer"),
        (consumer, "Consumer"),
        (consumer, "Producer"),  # the consumer's dead-letter producer
        (admin, "AdminClient"),
    ):
        monkeypatch.setattr(module, kind, type(kind, (_Recorder,), {"kind": kind, "built": built}))

    kafka = sasl_ssl_env.kafka
    producer.Publisher(kafka)
    consumer.EventConsumer(kafka, "g-1", ["aitl.interactions"])
    admin.admin_client(kafka)

    tls = {
        "ssl.ca.location": str(pki["ca"]),
        "ssl.certificate.location": str(pki["cert"]),
        "ssl.key.location": str(pki["key"]),
    }
    # Publisher, then EventConsumer (its consumer, then its DLQ producer), then admin
    assert [kind for kind, _ in built] == ["Producer", "Consumer", "Producer", "AdminClient"]
    for _, conf in built:
        assert conf.items() >= (EXPECTED_LIBRDKAFKA | tls).items()
    assert built[0][1]["acks"] == "all" and built[0][1]["enable.idempotence"] is True
    assert built[1][1]["group.id"] == "g-1"


async def test_aiokafka_clients_get_sasl_over_verified_tls(
    sasl_ssl_env: Settings, pki: dict[str, Path]
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    cfg = security.aiokafka_security(sasl_ssl_env.kafka)
    context = cfg["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "aitl-test-ca"),),)]

    bootstrap = sasl_ssl_env.kafka.bootstrap
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, **cfg)
    cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, **cfg)
    adm = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **cfg)
    try:
        for client in (prod.client, cons._client, adm._client):
            assert client._security_protocol == "SASL_SSL"
            assert client._sasl_mechanism == "SCRAM-SHA-512"
            assert client._sasl_plain_username == "aitl-processors"
            assert client._sasl_plain_password == SECRETS["AITL_KAFKA_SASL_PASSWORD"]
            assert client._ssl_context is context
    finally:
        await prod.stop()
        await cons.stop()
        await adm.close()


def _processor_credentials(kafka: KafkaSettings) -> Any:
    from processors.app import faust_credentials

    return faust_credentials(kafka)


@pytest.mark.parametrize(
    "make",
    [security.faust_credentials, _processor_credentials],
    ids=["streams.security", "processors"],
)
def test_faust_app_gets_sasl_ssl_credentials(sasl_ssl_env: Settings, make: Any) -> None:
    """Both the shared helper and the one the processor worker uses."""
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    creds = make(sasl_ssl_env.kafka)
    app = faust.App(
        "aitl-test",
        broker=f"kafka://{sasl_ssl_env.kafka.bootstrap}",
        broker_credentials=creds,
    )
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "aitl-processors"
    assert auth["sasl_plain_password"] == SECRETS["AITL_KAFKA_SASL_PASSWORD"]
    assert auth["ssl_context"].verify_mode is ssl.CERT_REQUIRED
    assert SECRETS["AITL_KAFKA_SASL_PASSWORD"] not in repr(creds)


def test_faust_credentials_for_the_other_protocols(pki: dict[str, Path]) -> None:
    from faust.auth import SASLCredentials, SSLCredentials

    assert security.faust_credentials(KafkaSettings()) is None
    tls = security.faust_credentials(
        KafkaSettings(security_protocol="SSL", ssl_ca_location=str(pki["ca"]))
    )
    assert isinstance(tls, SSLCredentials) and tls.protocol.value == "SSL"
    plain = security.faust_credentials(
        KafkaSettings(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username="alice",
            sasl_password=SecretStr("pw"),
        )
    )
    assert isinstance(plain, SASLCredentials)
    assert plain.protocol.value == "SASL_PLAINTEXT" and plain.ssl_context is None


def test_wrong_key_password_fails_when_the_client_is_built(pki: dict[str, Path]) -> None:
    settings = KafkaSettings(
        security_protocol="SSL",
        ssl_ca_location=str(pki["ca"]),
        ssl_certificate_location=str(pki["cert"]),
        ssl_key_location=str(pki["key"]),
        ssl_key_password=SecretStr("not-the-password"),
    )
    with pytest.raises(ssl.SSLError):
        security.ssl_context(settings)


@pytest.mark.parametrize(
    ("settings", "needs"),
    [
        (
            KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN"),
            "AITL_KAFKA_SASL_USERNAME, AITL_KAFKA_SASL_PASSWORD",
        ),
        (
            KafkaSettings(security_protocol="SSL", ssl_certificate_location="/c.pem"),
            "AITL_KAFKA_SSL_KEY_LOCATION",
        ),
    ],
)
def test_incomplete_security_settings_name_what_is_missing(
    settings: KafkaSettings, needs: str
) -> None:
    with pytest.raises(SecurityError, match=needs):
        security.aiokafka_security(settings)


def test_a_refused_login_raises_from_the_error_callback() -> None:
    from confluent_kafka import KafkaError

    refused = KafkaError(KafkaError._AUTHENTICATION, "Authentication failed: Invalid username")
    with pytest.raises(SecurityError, match="Invalid username"):
        security.raise_on_auth_failure(refused)
    security.raise_on_auth_failure(KafkaError(KafkaError._TRANSPORT, "broker down"))  # retried


def test_plaintext_needs_no_tls() -> None:
    assert security.aiokafka_security(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}
    assert security.ssl_context(KafkaSettings()) is None


def _secret_fields(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Fields whose name says they hold a secret, in this model and its nested models."""
    found: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(model).items():
        if name not in model.model_fields:
            continue
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            found |= _secret_fields(hint, f"{prefix}{name}.")
        elif security._SECRET_KEY.search(name):
            found[prefix + name] = hint
    return found


def test_every_secret_setting_is_a_secretstr() -> None:
    fields = _secret_fields(Settings)
    expected = {"api_tokens", "llm_judge_api_key", "kafka.sasl_password", "kafka.ssl_key_password"}
    assert expected <= fields.keys()
    for name, hint in fields.items():
        if name.endswith("_file"):  # where secrets are (a path), not a secret
            continue
        assert hint is SecretStr or SecretStr in typing.get_args(hint), f"{name} is {hint}"


def test_settings_never_reveal_secrets(
    sasl_ssl_env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("aitl.test")
    with caplog.at_level(logging.DEBUG):
        log.info("settings: %s", sasl_ssl_env)
        log.info("settings: %r", sasl_ssl_env)
        log.info("kafka: %s", sasl_ssl_env.kafka)
        log.info("dump: %s", sasl_ssl_env.model_dump())
        log.info("client: %s", security.redact(config.producer_config(sasl_ssl_env.kafka)))
        log.info("aiokafka: %s", security.redact(security.aiokafka_security(sasl_ssl_env.kafka)))
    shown = "\n".join(
        [
            repr(sasl_ssl_env),
            str(sasl_ssl_env),
            sasl_ssl_env.model_dump_json(),
            caplog.text,
        ]
    )
    for secret in SECRETS.values():
        for part in secret.split(","):
            assert part not in shown
    assert "aitl-processors" in caplog.text  # the log still says who connects
    assert sasl_ssl_env.token_set() == {"tok-alpha-5d1e", "tok-beta-8b44"}


def test_redact_masks_secret_keys_only() -> None:
    cfg = {
        "sasl.password": "x",
        "ssl.key.password": "y",
        "sasl.jaas.config": "z",
        "api_key": "k",
        "sasl.username": "alice",
        "bootstrap.servers": "b:9092",
        "nested": {"client_secret": "s", "acks": "all"},
        "empty_password": "",
    }
    assert security.redact(cfg) == {
        "sasl.password": security.MASK,
        "ssl.key.password": security.MASK,
        "sasl.jaas.config": security.MASK,
        "api_key": security.MASK,
        "sasl.username": "alice",
        "bootstrap.servers": "b:9092",
        "nested": {"client_secret": security.MASK, "acks": "all"},
        "empty_password": "",
    }


def test_gateway_events_need_a_token_but_probes_and_metrics_do_not() -> None:
    """Prometheus and kubelet probes scrape without a token; events never do."""
    settings = Settings(api_tokens=SecretStr("tok-1"), kafka=KafkaSettings(bootstrap="127.0.0.1:1"))
    with TestClient(create_app(settings, ack_timeout_s=0.5)) as client:
        assert client.post("/v1/events/interaction", json={}).status_code == 401
        wrong = {"Authorization": "Bearer tok-2"}
        assert client.post("/v1/events/interaction", json={}, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer tok-1"}
        assert client.post("/v1/events/interaction", json={}, headers=right).status_code == 400
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
