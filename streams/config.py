"""Client configuration for every Kafka client aitl builds, from one KafkaSettings."""

from __future__ import annotations

import logging
from typing import Any

from kernel.settings import KafkaSettings
from streams.security import check, raise_on_auth_failure

# librdkafka's own log lines, through Python logging (WARNING and up print by default)
LIBRDKAFKA_LOG = logging.getLogger("aitl.librdkafka")
# expected while a broker starts, stops or moves a coordinator; kept at DEBUG
_TRANSIENT = (
    "Connection refused",
    "Coordinator load in progress",
    "brokers are down",
    "Broker transport failure",
    "Disconnected",
)


class _TransientToDebug(logging.Filter):
    """Demote librdkafka's expected start-up and shutdown noise to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and any(t in record.getMessage() for t in _TRANSIENT):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


LIBRDKAFKA_LOG.addFilter(_TransientToDebug())


def bootstrap(settings: KafkaSettings) -> str:
    """The configured cluster, or the local broker aitl starts for dev and tests."""
    if settings.bootstrap:
        return settings.bootstrap
    ports = (settings.local_port + 2 * i for i in range(settings.local_brokers))
    return ",".join(f"127.0.0.1:{port}" for port in ports)


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka (confluent-kafka) settings shared by producer, consumer and admin."""
    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap(settings),
        "security.protocol": settings.security_protocol,
        # a refused login raises from poll/consume/flush instead of retrying silently
        "error_cb": raise_on_auth_failure,
        "logger": LIBRDKAFKA_LOG,
    }
    check(settings)
    if settings.security_protocol.startswith("SASL"):
        cfg["sasl.mechanism"] = settings.sasl_mechanism
        cfg["sasl.username"] = settings.sasl_username
        cfg["sasl.password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        )
    if settings.security_protocol.endswith("SSL"):
        for key, value in (
            ("ssl.ca.location", settings.ssl_ca_location),
            ("ssl.certificate.location", settings.ssl_certificate_location),
            ("ssl.key.location", settings.ssl_key_location),
        ):
            if value:
                cfg[key] = value
        if settings.ssl_key_password is not None:
            cfg["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
    return cfg


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Idempotent, acks=all: an acknowledged event is never lost or duplicated."""
    cfg = client_config(settings) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 120_000,
    }
    return cfg | overrides


def consumer_config(settings: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Manual commits (after the output is durable), read from the start of new groups."""
    cfg = client_config(settings) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    return cfg | overrides
