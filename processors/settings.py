"""Processor settings, read once at the entrypoint (env prefix ``AITL_PROCESSORS_``).

Every default runs on one laptop; every one can be overridden for a cluster. Library code
receives this object (and :class:`kernel.settings.Settings`); it never reads the environment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

FaultPoint = Literal["after_parquet_rename", "after_manifest", "in_revoke"]


class ProcessorSettings(BaseSettings):
    """How the stream processors join, judge, redact, split and seal."""

    model_config = SettingsConfigDict(env_prefix="AITL_PROCESSORS_", frozen=True, extra="ignore")

    app_name: str = Field(
        default="processors",
        description="faust app id suffix: consumer group and changelog topics are "
        "<topic_prefix><app_name>-...",
    )
    # -- the join -------------------------------------------------------------------
    context_wait_s: float = Field(
        default=30.0, description="how long an annotation waits for its suggestion (then orphan)"
    )
    adoption_wait_s: float = Field(
        default=10.0, description="how long preference/relevance wait for the adoption decision"
    )
    knowledge_wait_s: float = Field(
        default=60.0, description="startup wait for the knowledge topic to be read to its end"
    )
    bundle_ttl_s: float = Field(
        default=7 * 24 * 3600.0, description="bundles untouched this long are dropped from tables"
    )
    # -- judging --------------------------------------------------------------------
    judge: Literal["rule", "llm", "composite", "none"] = "rule"
    llm_timeout_s: float = 10.0
    llm_retries: int = Field(default=2, ge=0, description="retries after the first attempt")
    llm_cooldown_s: float = Field(
        default=30.0, description="after a failure, skip the LLM for this long (rule fallback)"
    )
    llm_max_concurrency: int = 8
    # -- privacy --------------------------------------------------------------------
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for agent pseudonyms; unset: a random key made at first start "
        "and kept in <data_dir>/pseudonym.key (workers that share no data dir need one key)",
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IN"],
        description="regions whose national phone formats phonenumbers checks",
    )
    redact_patterns: dict[str, str] = Field(
        default_factory=dict, description='extra regexes, JSON: {"ORDER": "ORD-\\\\d{6}"}'
    )
    # -- shards ---------------------------------------------------------------------
    seal_rows: int = Field(default=5000, ge=1, description="seal a shard at this many rows")
    seal_age_s: float = Field(default=60.0, description="seal a non-empty shard this old")
    split_period_s: float = Field(
        default=24 * 3600.0, description="temporal split period (see processors/split.py)"
    )
    eval_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    # -- runtime --------------------------------------------------------------------
    tick_s: float = Field(default=0.5, description="timer period: deadlines, age seals, acks")
    commit_interval_s: float = Field(default=2.0, description="faust broker_commit_interval")
    status_interval_s: float = Field(default=30.0, description="log a status line this often")
    session_timeout_s: float = Field(
        default=30.0,
        description="consumer group session timeout: how soon a dead worker's partitions move",
    )
    # -- fault injection (tests/faults; never set in production) ---------------------
    fault_point: FaultPoint | None = Field(
        default=None,
        description="SIGKILL the worker at this point the first time it is reached "
        "(processors/faults.py lists them)",
    )
    fault_store_delay_s: float = Field(
        default=0.0, ge=0.0, description="a slow shard store: sleep this long in each write stage"
    )
