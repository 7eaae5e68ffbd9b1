"""Kafka security for the asyncio clients (aiokafka, faust) and redaction of secrets.

confluent-kafka takes file paths (``streams.config.client_config``); aiokafka and faust
need an :class:`ssl.SSLContext` and, for faust, a credentials object. Both are built here
from the same :class:`KafkaSettings`, so every client of a process speaks the same
protocol with the same identity. Secrets stay in ``SecretStr`` until the client is built
and :func:`redact` masks them in anything that is printed or logged.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError

from kernel.errors import SecurityError
from kernel.settings import KafkaSettings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

MASK = "**********"
# librdkafka codes of a refused SASL login or a failed TLS handshake
AUTH_ERROR_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})
# librdkafka, aiokafka and pydantic spell secrets in these ways
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|jaas|api[._-]?key|credential", re.IGNORECASE)


def check(settings: KafkaSettings) -> None:
    """Raise :class:`SecurityError` for a combination no client could connect with."""
    protocol = settings.security_protocol
    if protocol.startswith("SASL"):
        missing = [
            f"AITL_KAFKA_{name.upper()}"
            for name in ("sasl_mechanism", "sasl_username", "sasl_password")
            if getattr(settings, name) is None
        ]
        if missing:
            raise SecurityError(f"security_protocol={protocol} needs {', '.join(missing)}")
    if (settings.ssl_certificate_location is None) != (settings.ssl_key_location is None):
        raise SecurityError(
            "a client certificate needs both AITL_KAFKA_SSL_CERTIFICATE_LOCATION and "
            "AITL_KAFKA_SSL_KEY_LOCATION"
        )


def raise_on_auth_failure(error: KafkaError) -> None:
    """A librdkafka ``error_cb`` that turns a refused login into an exception.

    librdkafka only logs a failed SASL or TLS handshake and retries forever, so a client
    with a wrong password would wait silently. With this callback the client's next
    ``poll``/``consume``/``flush`` raises :class:`SecurityError` instead.
    """
    if error.code() in AUTH_ERROR_CODES:
        raise SecurityError(f"Kafka refused the connection: {error.str()}")


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """TLS for aiokafka/faust, or None when the protocol does not use SSL.

    The broker is verified against ``ssl_ca_location`` (the system CAs when unset) with
    hostname checking on; a client certificate is presented when one is configured (mTLS).
    """
    if not settings.security_protocol.endswith("SSL"):
        return None
    check(settings)
    from aiokafka.helpers import create_ssl_context

    password = settings.ssl_key_password
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.ssl_ca_location,
        certfile=settings.ssl_certificate_location,
        keyfile=settings.ssl_key_location,
        password=password.get_secret_value() if password is not None else None,
    )
    return context


def aiokafka_security(settings: KafkaSettings) -> dict[str, Any]:
    """The connection-security kwargs of ``AIOKafkaProducer``/``Consumer``/``AdminClient``."""
    check(settings)
    cfg: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None  # check() guarantees it
        cfg |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value(),
        }
    context = ssl_context(settings)
    if context is not None:
        cfg["ssl_context"] = context
    return cfg


def faust_credentials(settings: KafkaSettings) -> CredentialsT | None:
    """``faust.App(broker_credentials=...)``: SASL (over TLS for SASL_SSL), TLS, or None."""
    from faust.auth import SASLCredentials, SSLCredentials

    check(settings)
    context = ssl_context(settings)
    protocol = settings.security_protocol
    if protocol.startswith("SASL"):
        assert settings.sasl_password is not None
        return SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,  # faust switches to SASL_SSL when a context is given
        )
    if protocol == "SSL":
        return SSLCredentials(context)
    return None


def redact(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a client config (or any mapping) safe to print: secret values masked."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out[key] = redact(value)
        elif _SECRET_KEY.search(str(key)) and value not in (None, ""):
            out[key] = MASK
        else:
            out[key] = value
    return out
