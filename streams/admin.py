"""Create the catalog's topics idempotently and report drift from the cluster."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from kernel.errors import SecurityError
from kernel.settings import KafkaSettings
from streams.catalog import Topics
from streams.config import bootstrap, client_config
from streams.security import AUTH_ERROR_CODES, check


@dataclass
class TopicReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)  # human-readable differences


def admin_client(settings: KafkaSettings) -> AdminClient:
    return AdminClient(client_config(settings))


def min_insync(settings: KafkaSettings) -> dict[str, str]:
    """``min.insync.replicas`` for replicated topics: all but one replica (at most 2), so an
    ``acks=all`` write survives one broker lost and writes go on while one is down."""
    rf = settings.replication_factor
    return {"min.insync.replicas": str(min(2, rf - 1))} if rf > 1 else {}


def ensure_topics(settings: KafkaSettings, timeout_s: float = 30.0) -> TopicReport:
    """Create missing topics; for existing ones, report partition/config drift."""
    admin = admin_client(settings)
    topics = Topics(settings)
    present = admin.list_topics(timeout=timeout_s).topics
    report = TopicReport()
    new = [
        NewTopic(
            name,
            num_partitions=topics.partitions(spec),
            replication_factor=settings.replication_factor,
            config=spec.configs() | min_insync(settings),
        )
        for name, spec in topics
        if name not in present
    ]
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout=timeout_s)
                report.created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                report.existing.append(name)
    existing = [name for name, _ in topics if name in present]
    report.existing.extend(existing)
    if existing:
        report.drift.extend(_drift(admin, topics, existing, present, timeout_s))
    return report


def _drift(
    admin: AdminClient, topics: Topics, names: list[str], present: dict[str, Any], timeout_s: float
) -> list[str]:
    out = []
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    configs = admin.describe_configs(resources)
    for res, fut in configs.items():
        name = res.name
        spec = topics.spec(name)
        want_parts = topics.partitions(spec)
        have_parts = len(present[name].partitions)
        if have_parts != want_parts:
            out.append(
                f"{name}: partitions {have_parts} on the cluster, {want_parts} in the catalog"
            )
        have = {k: v.value for k, v in fut.result(timeout=timeout_s).items()}
        for key, want in spec.configs().items():
            if have.get(key) != want:
                out.append(f"{name}: {key}={have.get(key)} on the cluster, {want} in the catalog")
    return sorted(out)


def delete_topics(settings: KafkaSettings, timeout_s: float = 30.0) -> list[str]:
    """Delete the catalog's topics (tests and `aitl topics delete --yes`)."""
    admin = admin_client(settings)
    present = admin.list_topics(timeout=timeout_s).topics
    names = [name for name, _ in Topics(settings) if name in present]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=timeout_s).values():
            fut.result(timeout=timeout_s)
    return names


def check_connection(settings: KafkaSettings, timeout_s: float = 15.0) -> int:
    """Log in once with the configured security; returns the number of brokers.

    Raises :class:`SecurityError` naming the user, mechanism and the broker's reason
    when the login or the TLS handshake fails (never the password), and librdkafka's
    ``KafkaException`` when the cluster cannot be reached at all.
    """
    check(settings)
    errors: list[KafkaError] = []
    admin = AdminClient(client_config(settings) | {"error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return len(admin.list_topics(timeout=min(1.0, timeout_s)).brokers)
        except KafkaException:
            admin.poll(0)  # serves error_cb
            refused = [e for e in errors if e.code() in AUTH_ERROR_CODES]
            if refused:
                who = (
                    f"user {settings.sasl_username!r} ({settings.sasl_mechanism})"
                    if settings.security_protocol.startswith("SASL")
                    else "this client"
                )
                raise SecurityError(
                    f"{bootstrap(settings)} refused {who} over {settings.security_protocol}: "
                    f"{refused[0].str()}"
                ) from None
            if time.monotonic() >= deadline:
                raise
