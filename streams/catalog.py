"""The topic catalog: every aitl topic, declared once.

Nothing else spells a topic name. Names are ``<topic_prefix><suffix>`` so a test, a
tenant or a staging stack gets its own namespace by changing one setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kernel.events import (
    ANNOTATIONS,
    CustomerInteraction,
    Event,
    JudgeVerdict,
    KnowledgeChanged,
    ModelLifecycle,
    ShardSealed,
    SuggestionServed,
)
from kernel.settings import KafkaSettings

DAY_MS = 24 * 3600 * 1000
DLQ_RETENTION_MS = 7 * DAY_MS


@dataclass(frozen=True)
class TopicSpec:
    """One topic: what it carries and how the broker keeps it."""

    suffix: str
    event: type[Event] | None  # None: raw bytes (the dead-letter topic)
    description: str
    key: str = "case_id"
    compact: bool = False
    retention_ms: int | None = 30 * DAY_MS  # None: keep forever
    partitions: int | None = None  # None: KafkaSettings.default_partitions

    def configs(self) -> dict[str, str]:
        """Broker-side topic configs, as ``kafka-topics`` and Strimzi spell them."""
        cfg = {"cleanup.policy": "compact" if self.compact else "delete"}
        if not self.compact:
            cfg["retention.ms"] = "-1" if self.retention_ms is None else str(self.retention_ms)
        return cfg


CATALOG: tuple[TopicSpec, ...] = (
    TopicSpec("interactions", CustomerInteraction, "customer messages with conversation history"),
    TopicSpec("suggestions", SuggestionServed, "what the assistant served the agent"),
    # one topic per annotation type, declared by the type (kernel/annotations/<type>.py)
    *(TopicSpec(a.topic, a, a.topic_doc, retention_ms=365 * DAY_MS) for a in ANNOTATIONS),
    TopicSpec(
        "judge.verdicts",
        JudgeVerdict,
        "Virtual Judge verdict per annotation",
        retention_ms=90 * DAY_MS,
    ),
    TopicSpec(
        "knowledge",
        KnowledgeChanged,
        "knowledge objects upserted / retired (latest per id)",
        key="knowledge_id",
        compact=True,
    ),
    TopicSpec(
        "shards.sealed",
        ShardSealed,
        "sealed training shards (latest per id)",
        key="shard_id",
        compact=True,
    ),
    TopicSpec(
        "models",
        ModelLifecycle,
        "model lifecycle, the source of truth for versions",
        key="component:version",
        compact=True,
    ),
    # The original bytes, PII included (nothing is lost, the processors redact only what
    # they decode): kept one week, long enough to read and replay, no longer.
    TopicSpec(
        "dlq",
        None,
        "undecodable or invalid messages, raw bytes, with the reason in headers",
        key="original",
        retention_ms=DLQ_RETENTION_MS,
    ),
)

_BY_SUFFIX = {spec.suffix: spec for spec in CATALOG}
_BY_EVENT = {spec.event: spec for spec in CATALOG if spec.event is not None}


class Topics:
    """The catalog bound to one cluster's settings (prefix, partitions, replication)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def name(self, suffix: str) -> str:
        if suffix not in _BY_SUFFIX:
            raise KeyError(f"no topic {suffix!r} in the catalog")
        return self.settings.topic_prefix + suffix

    def for_event(self, event: type[Event] | Event) -> str:
        cls = event if isinstance(event, type) else type(event)
        return self.settings.topic_prefix + _BY_EVENT[cls].suffix

    @property
    def dlq(self) -> str:
        return self.name("dlq")

    @property
    def annotations(self) -> list[str]:
        return [self.name(s.suffix) for s in CATALOG if s.suffix.startswith("annotations.")]

    def spec(self, name: str) -> TopicSpec:
        return _BY_SUFFIX[name.removeprefix(self.settings.topic_prefix)]

    def partitions(self, spec: TopicSpec) -> int:
        return spec.partitions or self.settings.default_partitions

    def __iter__(self) -> Iterator[tuple[str, TopicSpec]]:
        for spec in CATALOG:
            yield self.settings.topic_prefix + spec.suffix, spec
