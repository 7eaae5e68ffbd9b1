"""The Ray Serve application: Retriever -> Ranker -> Generator behind an HTTP ingress.

One deployment per model. Each loads its weights in ``__init__``, swaps through
``reconfigure(user_config)`` (``{"version", "artifact_uri", "sha256"}``; empty URI = stock) which
the replica's lifecycle watcher also drives, raises from ``check_health()`` when a
background thread died, and declares ``max_ongoing_requests``. A swap loads the new
weights beside the old ones and replaces one reference, so no request waits or fails.

``POST /v1/suggest {case_id, query, history}`` (the tenant is the token's) answers
``{request_id, knowledge[], candidates[2], model_versions, latency_ms}`` after the
suggestion-served event is acknowledged by Kafka (``503`` if it is not).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace
from typing import Any, cast

from ray import serve
from ray.serve.handle import DeploymentHandle

from kernel.checkpoints import ChecksumMismatch, ModelSpec
from kernel.errors import InfraError
from kernel.events import Component
from kernel.prompt import Snippet
from kernel.rankers import load_ranker
from kernel.settings import Settings
from serving.config import ServingSettings
from serving.generator import load_generator
from serving.knowledge.edge import EdgeTuning
from serving.knowledge.engines import open_index
from serving.knowledge.index import Hit
from serving.knowledge.indexer import KnowledgeIndexer, LiveIndex
from serving.records import Generated, GenerateRequest, Ranked, Retrieved
from serving.retriever import load_encoder
from serving.watcher import SWAP_FAILURES, LifecycleWatcher
from streams.edge import Access

log = logging.getLogger(__name__)


def _torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


class _Swappable:
    """Shared swap plumbing: a current spec, a lock, and the lifecycle watcher."""

    component: Component

    def _init_swap(self, settings: Settings, cfg: ServingSettings) -> None:
        self.spec = ModelSpec()
        self._swap_lock = threading.Lock()
        self.swap_error: str | None = None
        self.watcher: LifecycleWatcher | None = None
        if cfg.follow_lifecycle:
            self.watcher = LifecycleWatcher(
                settings.kafka,
                self.component,
                self.apply_spec,
                current=self.spec,
                key=settings.lifecycle_key_bytes(),
            ).start()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve the version in ``user_config`` (loaded off the request path)."""
        await asyncio.to_thread(self.apply_spec, ModelSpec.from_config(user_config))

    def apply_spec(self, spec: ModelSpec) -> None:
        with self._swap_lock:
            if spec == self.spec:
                return
            started = time.perf_counter()
            try:
                self._load(spec)
            except Exception as exc:
                self.swap_error = f"{spec.version}: {exc}"
                reason = "checksum" if isinstance(exc, ChecksumMismatch) else "load"
                SWAP_FAILURES.labels(self.component.slug, reason).inc()
                raise
            self.spec, self.swap_error = spec, None
            if self.watcher is not None:
                self.watcher.current = spec
            log.info(
                "%s now serves %s (%.1fs)",
                self.component.value,
                spec.version,
                time.perf_counter() - started,
            )

    def _load(self, spec: ModelSpec) -> None:
        raise NotImplementedError

    def _check_threads(self) -> None:
        if self.watcher is not None and (self.watcher.error or not self.watcher.alive):
            raise InfraError(f"lifecycle watcher stopped: {self.watcher.error!r}")


@serve.deployment(name="Retriever", health_check_period_s=10)
class Retriever(_Swappable):
    """Embeds the query and returns the top-K knowledge from the serving collection."""

    component = Component.RETRIEVER

    def __init__(self, settings: Settings, cfg: ServingSettings) -> None:
        _torch_threads(cfg.torch_threads)
        self.settings, self.cfg = settings, cfg
        self.index = open_index(
            settings.qdrant_url,
            settings.qdrant_path,
            cfg.qdrant_alias,
            engine=cfg.knowledge_engine,
            hybrid=cfg.knowledge_hybrid,
            tuning=EdgeTuning(hnsw_ef=cfg.knowledge_hnsw_ef),
        )
        self.live = LiveIndex(self.index, self._encoder(ModelSpec()))
        self.indexer = (
            KnowledgeIndexer(self.live, settings.kafka).start() if cfg.index_knowledge else None
        )
        self._init_swap(settings, cfg)

    def _encoder(self, spec: ModelSpec) -> Any:
        return load_encoder(
            spec,
            self.settings.retriever_model,
            query_prefix=self.cfg.query_prefix,
            document_prefix=self.cfg.document_prefix,
        )

    def _load(self, spec: ModelSpec) -> None:
        self.live.switch(self._encoder(spec))  # returns once the new collection serves

    def retrieve(self, query: str, k: int) -> Retrieved:
        started = time.perf_counter()
        version, hits = self.live.search(query, k)
        return Retrieved(version, list(hits), (time.perf_counter() - started) * 1000)

    def status(self) -> dict[str, Any]:
        return {
            "version": self.spec.version,
            "collection": self.live.collection,
            "objects": self.index.count(self.live.collection),
            "applied_events": self.indexer.applied if self.indexer else 0,
            "caught_up": bool(self.indexer and self.indexer.caught_up.is_set()),
            "kafka_error": self.indexer.last_kafka_error if self.indexer else None,
            "swap_error": self.swap_error,
        }

    def check_health(self) -> None:
        self._check_threads()
        if self.indexer is not None and (self.indexer.error or not self.indexer.alive):
            raise InfraError(f"knowledge indexer stopped: {self.indexer.error!r}")


@serve.deployment(name="Ranker", health_check_period_s=10)
class Ranker(_Swappable):
    """Rescores the retrieved knowledge and keeps the top ``rank_k``."""

    component = Component.RANKER

    def __init__(self, settings: Settings, cfg: ServingSettings) -> None:
        _torch_threads(cfg.torch_threads)
        self.settings, self.cfg = settings, cfg
        self.ranker = self._ranker(ModelSpec())
        self._init_swap(settings, cfg)

    def _ranker(self, spec: ModelSpec) -> Any:
        return load_ranker(
            spec,
            stock_kind=self.cfg.ranker_kind,
            retriever_model=self.settings.retriever_model,
            generator_model=self.settings.generator_model,
            depth=self.cfg.ranker_depth,
        )

    def _load(self, spec: ModelSpec) -> None:
        self.ranker = self._ranker(spec)

    def rank(self, query: str, hits: list[Hit], k: int) -> Ranked:
        started = time.perf_counter()
        ranker = self.ranker
        order = ranker.rank(query, [h.text for h in hits], [h.score for h in hits], k)
        ranked = [replace(hits[i], score=score) for i, score in order]
        ms = (time.perf_counter() - started) * 1000
        return Ranked(ranker.version, ranker.kind, ranked, ms)

    def status(self) -> dict[str, Any]:
        return {
            "version": self.spec.version,
            "kind": self.ranker.kind,
            "swap_error": self.swap_error,
        }

    def check_health(self) -> None:
        self._check_threads()


@serve.deployment(name="Generator", health_check_period_s=10)
class Generator(_Swappable):
    """Writes candidates A and B; concurrent requests are decoded as one batch."""

    component = Component.GENERATOR

    def __init__(self, settings: Settings, cfg: ServingSettings) -> None:
        _torch_threads(cfg.torch_threads)
        self.settings, self.cfg = settings, cfg
        self.model_loads = 0  # weights loaded by this replica: once, plus once per swap
        self.generator = self._generator(ModelSpec())
        self.tokens = 0
        self.seconds = 0.0
        cast(Any, self.generate).set_max_batch_size(cfg.generator_batch)
        cast(Any, self.generate).set_batch_wait_timeout_s(cfg.generator_batch_wait_s)
        self._init_swap(settings, cfg)

    def _generator(self, spec: ModelSpec) -> Any:
        self.model_loads += 1
        return load_generator(
            spec,
            self.settings.generator_model,
            max_new_tokens=self.cfg.max_new_tokens,
            n_knowledge=self.settings.prompt_knowledge,
            snippet_chars=self.settings.prompt_chars,
            variant_b=self.cfg.variant_b,
            temperature=self.cfg.temperature,
            cpu_dtype=self.cfg.generator_dtype,
        )

    def _load(self, spec: ModelSpec) -> None:
        self.generator = self._generator(spec)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.02)
    async def generate(self, requests: list[GenerateRequest]) -> list[Generated]:
        generator = self.generator
        batch = [
            (
                r.query,
                [tuple(t) for t in r.history],
                [Snippet(h.knowledge_id, h.text) for h in r.knowledge],
            )
            for r in requests
        ]
        results = await asyncio.to_thread(generator.generate_many, batch)
        self.tokens += sum(g.new_tokens for g in results)
        self.seconds += results[0].seconds if results else 0.0
        return [
            Generated(generator.version, g.replies, g.new_tokens, len(requests), g.seconds * 1000)
            for g in results
        ]

    def status(self) -> dict[str, Any]:
        rate = self.tokens / self.seconds if self.seconds else 0.0
        return {
            "version": self.spec.version,
            "tokens_per_s": rate,
            "generated_tokens": self.tokens,
            "generation_seconds": self.seconds,
            "model_loads": self.model_loads,
            "swap_error": self.swap_error,
        }

    def check_health(self) -> None:
        self._check_threads()


def _deployment(cls: Any) -> serve.Deployment:
    """The ``@serve.deployment`` class as the Deployment it is (for type checkers)."""
    return cast(serve.Deployment, cls)


def build_app(settings: Settings, cfg: ServingSettings) -> serve.Application:
    """The bound application (ingress on top), resources and replicas from ``cfg``.
    Raises :class:`SecurityError` without API tokens unless ``settings.auth`` is off."""
    from serving.ingress import Ingress

    Access(settings, "serving ingress")  # refuse before any replica starts
    embedded_path = settings.qdrant_url is None and str(settings.qdrant_path) != ":memory:"
    if embedded_path and cfg.retriever_replicas != 1:
        raise ValueError(
            "embedded Qdrant at a path allows one client: use retriever_replicas=1, "
            "AITL_QDRANT_URL for a server, or qdrant_path=':memory:' (a copy per replica)"
        )
    retriever = (
        _deployment(Retriever)
        .options(
            num_replicas=cfg.retriever_replicas,
            max_ongoing_requests=cfg.retriever_max_ongoing,
            ray_actor_options={"num_cpus": cfg.retriever_cpus},
        )
        .bind(settings, cfg)
    )
    ranker = (
        _deployment(Ranker)
        .options(
            num_replicas=cfg.ranker_replicas,
            max_ongoing_requests=cfg.ranker_max_ongoing,
            ray_actor_options={"num_cpus": cfg.ranker_cpus},
        )
        .bind(settings, cfg)
    )
    generator = (
        _deployment(Generator)
        .options(
            num_replicas=cfg.generator_replicas,
            max_ongoing_requests=cfg.generator_max_ongoing,
            ray_actor_options={"num_cpus": cfg.generator_cpus, "num_gpus": cfg.generator_gpus},
        )
        .bind(settings, cfg)
    )
    return (
        _deployment(Ingress)
        .options(
            num_replicas=cfg.ingress_replicas,
            max_ongoing_requests=cfg.ingress_max_ongoing,
            ray_actor_options={"num_cpus": cfg.ingress_cpus},
        )
        .bind(retriever, ranker, generator, settings, cfg)
    )


WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def start(settings: Settings, cfg: ServingSettings) -> DeploymentHandle:
    """Start Ray locally (or join ``cfg.ray_address``), start Serve's HTTP proxy on
    ``cfg.host:cfg.port`` (127.0.0.1 when auth is off) and run the application; returns
    the ingress handle. Raises :class:`SecurityError` without tokens unless auth is off."""
    import ray

    host = Access(settings, "serving ingress").bind_host(cfg.host)

    if not ray.is_initialized():
        runtime_env = {"env_vars": WORKER_ENV}
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, namespace="aitl", runtime_env=runtime_env)
        else:
            ray.init(
                num_cpus=cfg.ray_num_cpus,
                object_store_memory=cfg.ray_object_store_mb * 1024 * 1024,
                include_dashboard=False,
                namespace="aitl",
                runtime_env=runtime_env,
            )
    serve.start(http_options={"host": host, "port": cfg.port})
    return serve.run(build_app(settings, cfg), name=cfg.app_name, route_prefix="/")


def app_builder(args: dict[str, str]) -> serve.Application:
    """Ray Serve application builder (``serving.app:app_builder``, e.g. in a KubeRay
    RayService): settings come from the environment of the Ray cluster."""
    from kernel.settings import load_settings
    from serving.config import load_serving_settings

    return build_app(load_settings(), load_serving_settings())
