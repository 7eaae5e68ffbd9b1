"""Serving settings (env prefix ``AITL_SERVE_``), read once at the entrypoint.

The models themselves are chosen by :class:`kernel.settings.Settings`
(``AITL_RETRIEVER_MODEL``, ``AITL_GENERATOR_MODEL``, ``AITL_QDRANT_URL``/``_PATH``,
``AITL_RETRIEVE_K``, ``AITL_RANK_K``); this object says how they are served. Defaults
fit one 2-core laptop: one replica each with fractional CPUs. On a GPU box set e.g.
``AITL_RETRIEVER_MODEL=intfloat/e5-base-v2 AITL_SERVE_QUERY_PREFIX="query: "
AITL_SERVE_DOCUMENT_PREFIX="passage: " AITL_GENERATOR_MODEL=mistralai/Mistral-7B-Instruct-v0.3
AITL_SERVE_GENERATOR_GPUS=1`` (models must already be in the local Hugging Face cache).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kernel.rankers import RankerKind


class ServingSettings(BaseSettings):
    """How the Ray Serve application runs."""

    model_config = SettingsConfigDict(env_prefix="AITL_SERVE_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    app_name: str = "aitl"
    ray_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AITL_SERVE_RAY_ADDRESS", "RAY_ADDRESS"),
        description="a Ray cluster to deploy to; unset = start Ray in this process",
    )
    ray_num_cpus: int = Field(default=2, description="CPUs of the local Ray instance")
    ray_object_store_mb: int = Field(default=256, description="local Ray object store size")
    # models
    ranker_kind: RankerKind = Field(
        default="none",
        description="stock ranker: none | embedding | cross-encoder | causal-lm-judge",
    )
    ranker_depth: int | None = Field(
        default=None, description="rescore only the first N retrieved (None: all retrieve_k)"
    )
    query_prefix: str = Field(default="", description="retriever query prefix (E5: 'query: ')")
    document_prefix: str = Field(default="", description="retriever document prefix")
    query_turns: int = Field(default=3, description="conversation turns in the retrieval query")
    max_new_tokens: int = Field(default=48, description="generator reply length cap")
    variant_b: Literal["prompt", "sample", "extractive"] = Field(
        default="prompt",
        description="B: a second prompt style (one batched pass), sampled, or extractive "
        "(the top knowledge's own answer, no decoding: half the CPU per suggestion)",
    )
    temperature: float = 0.8
    generator_batch: int = Field(default=4, description="requests decoded together")
    generator_batch_wait_s: float = Field(
        default=0.02,
        description="how long a decode batch waits to fill; longer fills batches from "
        "staggered arrivals (throughput) at that much added latency",
    )
    generator_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="weights' dtype on CPU: float32, or bfloat16 (fast where the CPU has "
        "AMX/AVX512-BF16; auto picks it there); GPUs always use bfloat16",
    )
    qdrant_alias: str = "aitl-knowledge"
    knowledge_engine: Literal["edge", "local"] = Field(
        default="edge",
        description="embedded index without AITL_QDRANT_URL: edge (Qdrant Edge, HNSW + BM25) "
        "or local (qdrant-client's local mode, an exact scan: a few thousand objects)",
    )
    knowledge_hybrid: bool = Field(
        default=False,
        description="retrieve by dense and BM25 rankings fused (RRF); edge engine only",
    )
    knowledge_hnsw_ef: int = Field(
        default=128, ge=1, description="HNSW search breadth (edge; at least the k asked for)"
    )
    index_knowledge: bool = Field(
        default=True, description="the retriever follows the knowledge topic"
    )
    follow_lifecycle: bool = Field(
        default=True, description="replicas hot-swap from the model lifecycle topic"
    )
    publish_timeout_s: float = Field(default=10.0, description="wait for Kafka's ack")
    # /v1/suggest limits (docs/security.md)
    request_timeout_s: float = Field(
        default=120.0, gt=0, description="a suggestion taking longer is a 504"
    )
    max_body_bytes: int = Field(default=262_144, ge=1, description="largest body read (413)")
    max_depth: int = Field(default=16, ge=2, description="deepest JSON nesting parsed (400)")
    max_text_chars: int = Field(
        default=4000, ge=1, description="longest query, history turn or any string (400)"
    )
    max_history_turns: int = Field(default=50, ge=0, description="most history turns (400)")
    max_id_chars: int = Field(default=200, ge=1, description="longest case id (400)")
    torch_threads: int = Field(default=2, description="intra-op threads per replica")
    # replicas and resources
    retriever_replicas: int = 1
    ranker_replicas: int = 1
    generator_replicas: int = 1
    ingress_replicas: int = 1
    retriever_cpus: float = 0.5
    ranker_cpus: float = 0.25
    generator_cpus: float = 0.5
    generator_gpus: float = 0.0
    ingress_cpus: float = 0.25
    retriever_max_ongoing: int = 16
    ranker_max_ongoing: int = 16
    generator_max_ongoing: int = Field(
        default=32, description="requests a generator replica holds (they wait in its batch queue)"
    )
    ingress_max_ongoing: int = 64


def load_serving_settings() -> ServingSettings:
    """Read the environment once; call at an entrypoint only."""
    return ServingSettings()
