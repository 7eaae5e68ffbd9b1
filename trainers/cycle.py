"""One flywheel cycle for one component: snapshot -> train -> evaluate -> gate -> register.

    registry = Registry(KafkaLifecycleLog(settings.kafka), key=settings.lifecycle_key_bytes())
    result = run_cycle("retriever", settings=settings, registry=registry, kb=kb)
    result.action  # PROMOTED or REJECTED; result.decision.reason says why

The candidate and the serving version (stock while nothing is promoted) are evaluated on
the snapshot's eval slice in the same run, the gate decides, and the lifecycle events
(REGISTERED, then PROMOTED or REJECTED) go to the models topic with full lineage.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from kernel.checkpoints import checkpoint_sha256
from kernel.events import Component, LifecycleAction
from kernel.lifecycle import VersionState, read_model_card, write_model_card
from kernel.models import resolve_embedder, resolve_generator
from kernel.settings import Settings
from kernel.shards import GeneratorRow, RankerRow, RetrieverRow, ShardStore
from trainers import generator as gen
from trainers import ranker as rk
from trainers import retriever as rt
from trainers._internal import TrainResult
from trainers.config import CycleConfig
from trainers.gate import GateDecision, decide
from trainers.judges import LLMPairwiseJudge, PairwiseJudge, ReferenceSimilarityJudge
from trainers.registry import CheckpointStore, Registry, new_version
from trainers.report import log_mlflow, plot_cycle
from trainers.snapshot import Snapshot, read_split, rows_of, take_snapshot

log = logging.getLogger(__name__)
Stage = Callable[[str], None]
KB = Sequence[tuple[str, str]]


@dataclass
class CycleResult:
    """What one cycle produced and decided."""

    component: Component
    version: str
    artifact_uri: str
    snapshot: Snapshot
    serving_version: str | None
    metrics: dict[str, float]
    baseline: dict[str, float]
    decision: GateDecision
    action: LifecycleAction
    train: TrainResult
    seconds: dict[str, float] = field(default_factory=dict)
    plot: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "component": self.component.slug,
            "version": self.version,
            "action": self.action.value,
            "reason": self.decision.reason,
            "snapshot_id": self.snapshot.snapshot_id,
            "serving_version": self.serving_version,
            "metrics": self.metrics,
            "baseline": self.baseline,
            "train": self.train.to_dict(),
            "seconds": self.seconds,
            "artifact_uri": self.artifact_uri,
        }


@dataclass
class _Trained:
    train: TrainResult
    candidate: dict[str, float]
    baseline: dict[str, float]
    base_model: str
    card: dict[str, Any]
    eval_judge: str | None = None


def build_judge(settings: Settings) -> PairwiseJudge:
    """The LLM judge when ``llm_judge_url`` is set (reference similarity as fallback)."""
    reference = ReferenceSimilarityJudge.from_path(
        resolve_embedder(settings.retriever_model), settings.retriever_model
    )
    if not settings.llm_judge_url:
        return reference
    key = settings.llm_judge_api_key.get_secret_value() if settings.llm_judge_api_key else None
    return LLMPairwiseJudge(
        settings.llm_judge_url, settings.llm_judge_model, reference, api_key=key
    )


def run_cycle(
    component: Component | str,
    *,
    settings: Settings,
    registry: Registry,
    config: CycleConfig | None = None,
    kb: KB | None = None,
    snapshot_id: str | None = None,
    watermark: datetime | None = None,
    judge: PairwiseJudge | None = None,
    on_stage: Stage | None = None,
) -> CycleResult:
    """Run one cycle; raises ``NoTrainingData`` when the snapshot has no train rows.

    ``kb`` is the candidate knowledge base as (id, text); every object the shards mention
    is added to it. ``snapshot_id`` retrains on a recorded snapshot instead of a new one.
    Stages: snapshot, train and evaluate, gate, write the staging dir, publish and register.
    """
    comp = Component.parse(component)
    name = comp.slug
    config = config or CycleConfig()
    stage = on_stage or (lambda msg: log.info("%s: %s", name, msg))
    checkpoints = CheckpointStore(settings.checkpoint_store)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    snap, train_rows, eval_rows = _snapshot(
        comp, settings, checkpoints, snapshot_id, watermark, stage
    )
    seconds["snapshot"] = time.perf_counter() - t0

    serving = registry.serving(comp)
    version = new_version(comp)
    staging = checkpoints.staging_dir(name, version)
    t1 = time.perf_counter()
    rows = (train_rows, eval_rows)
    done = _train(
        comp, settings, config, registry, checkpoints, rows, kb, serving, staging, judge, stage
    )
    seconds["train"] = done.train.seconds
    seconds["evaluate"] = time.perf_counter() - t1 - done.train.seconds

    decision = decide(comp, done.candidate, done.baseline, config.gate)
    stage(("PASS: " if decision.promote else "REFUSED: ") + decision.reason)
    run = _Run(comp, version, staging, snap, serving, done, decision, config)
    uri, plot, sha256 = _write_and_publish(run, checkpoints)
    action = _register(run, registry, uri, sha256)
    seconds["total"] = time.perf_counter() - t0
    stage(f"{version}: {action.value} in {seconds['total']:.1f}s")
    return CycleResult(
        component=comp,
        version=version,
        artifact_uri=uri,
        snapshot=snap,
        serving_version=serving.version if serving else None,
        metrics=done.candidate,
        baseline=done.baseline,
        decision=decision,
        action=action,
        train=done.train,
        seconds=seconds,
        plot=plot,
    )


def _train(
    comp: Component,
    settings: Settings,
    config: CycleConfig,
    registry: Registry,
    checkpoints: CheckpointStore,
    rows: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    kb: KB | None,
    serving: VersionState | None,
    staging: Path,
    judge: PairwiseJudge | None,
    stage: Stage,
) -> _Trained:
    """Train the candidate into ``staging`` and evaluate it next to the serving version;
    a failure removes the staging dir."""
    serving_path = checkpoints.local_path(serving.artifact_uri) if serving else None
    train_rows, eval_rows = rows
    try:
        done = _train_and_evaluate(
            comp,
            settings,
            config,
            registry,
            checkpoints,
            train_rows,
            eval_rows,
            kb,
            serving_path,
            staging,
            judge,
            stage,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    gc.collect()
    if serving is not None and serving_path is not None and done.base_model == str(serving_path):
        done.base_model = (
            f"{serving.version}@{serving.artifact_uri}"  # trained from the serving one
        )
    return done


def _snapshot(
    comp: Component,
    settings: Settings,
    checkpoints: CheckpointStore,
    snapshot_id: str | None,
    watermark: datetime | None,
    stage: Stage,
) -> tuple[Snapshot, list[dict[str, Any]], list[dict[str, Any]]]:
    """The snapshot (new, or the recorded one) and its train and eval rows; recorded."""
    shards = ShardStore(settings.shard_store)
    snap = (
        checkpoints.load_snapshot(snapshot_id)
        if snapshot_id
        else take_snapshot(shards, comp.slug, watermark)
    )
    train_rows = rows_of(read_split(shards, snap, "train"))
    eval_rows = rows_of(read_split(shards, snap, "eval"))
    if not train_rows:
        raise rt.NoTrainingData(f"{comp.slug}: snapshot {snap.snapshot_id} has no train rows")
    checkpoints.save_snapshot(snap)
    stage(f"snapshot {snap.snapshot_id}: {len(train_rows)} train / {len(eval_rows)} eval rows")
    return snap, train_rows, eval_rows


@dataclass(frozen=True)
class _Run:
    """What the stages after the gate need of one cycle."""

    comp: Component
    version: str
    staging: Path
    snap: Snapshot
    serving: VersionState | None
    done: _Trained
    decision: GateDecision
    config: CycleConfig

    def lineage(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "snapshot": self.snap.summary(),
            "serving_version": self.serving.version if self.serving else None,
            "baseline_metrics": self.done.baseline,
            "gate": self.decision.to_dict(),
            "train": self.done.train.to_dict(),
            "eval_judge": self.done.eval_judge,
        }


def _write_and_publish(run: _Run, checkpoints: CheckpointStore) -> tuple[str, str | None, str]:
    """Lineage, model card, plot and MLflow run into the staging dir, then publish it;
    returns the artifact URI, the plot's and the checksum of what was published."""
    done, snap, name, version = run.done, run.snap, run.comp.slug, run.version
    (run.staging / "lineage.json").write_text(
        json.dumps(run.lineage(), indent=2, sort_keys=True, default=str)
    )
    write_model_card(
        run.staging,
        component=name,
        version=version,
        base_model=done.base_model,
        created_at=datetime.now(UTC).isoformat(),
        snapshot_id=snap.snapshot_id,
        **done.card,
    )
    verdict = ("promote: " if run.decision.promote else "refused: ") + run.decision.reason
    if run.config.plot:
        plot_cycle(
            run.staging / "metrics.png",
            f"{version} (snapshot {snap.snapshot_id})",
            done.candidate,
            done.baseline,
            done.train.loss_history,
            verdict,
        )
    log_mlflow(
        run.config.mlflow_tracking_uri,
        run.config.mlflow_experiment,
        version,
        {"component": name, "snapshot_id": snap.snapshot_id, "base_model": done.base_model},
        {**done.candidate, **{f"serving_{k}": v for k, v in done.baseline.items()}},
        run.staging,
    )
    sha256 = checkpoint_sha256(run.staging)  # publish moves or uploads these very files
    uri = checkpoints.publish(run.staging, name, version)
    return uri, (f"{uri}/metrics.png" if run.config.plot else None), sha256


def _register(run: _Run, registry: Registry, uri: str, sha256: str) -> LifecycleAction:
    """Register the version with its checksum; promote it when the gate passed (and
    promotion is on), else reject it with the gate's reason."""
    comp, version, decision = run.comp, run.version, run.decision
    registry.register(
        comp,
        version,
        uri,
        base_model=run.done.base_model,
        snapshot_id=run.snap.snapshot_id,
        judge_version=",".join(run.snap.judge_versions) or None,
        metrics=run.done.candidate,
        lineage=run.lineage(),
        artifact_sha256=sha256,
    )
    if decision.promote and run.config.promote:
        registry.promote(comp, version, reason=decision.reason)
        return LifecycleAction.PROMOTED
    if decision.promote:
        return LifecycleAction.REGISTERED
    registry.reject(comp, version, decision.reason)
    return LifecycleAction.REJECTED


def _train_and_evaluate(
    comp: Component,
    settings: Settings,
    config: CycleConfig,
    registry: Registry,
    checkpoints: CheckpointStore,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    kb: KB | None,
    serving_path: Path | None,
    staging: Path,
    judge: PairwiseJudge | None,
    stage: Stage,
) -> _Trained:
    """Train the component into ``staging`` and evaluate it and the serving version.

    The rows were read from this component's shards, written with the Arrow schema that
    ``schemas/rows/<component>.avsc`` generates: they are that component's row type."""
    if comp is Component.RETRIEVER:
        train_r, eval_r = cast(list[RetrieverRow], train_rows), cast(list[RetrieverRow], eval_rows)
        return _retriever(settings, config, train_r, eval_r, kb, serving_path, staging, stage)
    if comp is Component.RANKER:
        retriever = registry.serving(Component.RETRIEVER)
        retriever_path = checkpoints.local_path(retriever.artifact_uri) if retriever else None
        return _ranker(
            settings,
            config,
            cast(list[RankerRow], train_rows),
            cast(list[RankerRow], eval_rows),
            kb,
            serving_path,
            retriever_path,
            staging,
            stage,
        )
    if comp is not Component.GENERATOR:
        raise ValueError(f"no trainer for component {comp.slug!r}")
    return _generator(
        settings,
        config,
        cast(list[GeneratorRow], train_rows),
        cast(list[GeneratorRow], eval_rows),
        serving_path,
        staging,
        judge or build_judge(settings),
        stage,
    )


def _kb(kb: KB | None, extra: Mapping[str, str]) -> list[tuple[str, str]]:
    merged = dict(kb or [])
    for kid, text in extra.items():
        merged.setdefault(kid, text)
    return list(merged.items())


def _kind(path: Path | None) -> str | None:
    return str(read_model_card(path)["kind"]) if path is not None else None


def _retriever(
    settings: Settings,
    config: CycleConfig,
    train_rows: list[RetrieverRow],
    eval_rows: list[RetrieverRow],
    kb: KB | None,
    serving_path: Path | None,
    out: Path,
    stage: Stage,
) -> _Trained:
    cfg = config.retriever
    stock = resolve_embedder(settings.retriever_model)
    serving_model = str(serving_path) if _kind(serving_path) == rt.KIND else stock
    base = cfg.base_model or serving_model
    stage(f"training retriever from {base} (MNRL, NO_DUPLICATES batches)")
    result = rt.train_retriever(train_rows, base, out, cfg, progress=config.progress)
    candidates = _kb(kb, rt.knowledge_of(train_rows + eval_rows))
    queries = rt.eval_queries(eval_rows)
    stage(f"evaluating on {len(queries)} eval queries over {len(candidates)} knowledge objects")
    cand = rt.evaluate_retriever(out, queries, candidates, cfg.ks, progress=config.progress)
    baseline = rt.evaluate_retriever(serving_model, queries, candidates, cfg.ks)
    return _Trained(
        result,
        cand,
        baseline,
        base if base != stock else settings.retriever_model,
        {"kind": rt.KIND},
    )


def _ranker(
    settings: Settings,
    config: CycleConfig,
    train_rows: list[RankerRow],
    eval_rows: list[RankerRow],
    kb: KB | None,
    serving_path: Path | None,
    retriever_path: Path | None,
    out: Path,
    stage: Stage,
) -> _Trained:
    cfg = config.ranker
    stock = resolve_embedder(settings.retriever_model)
    serving_kind = _kind(serving_path)
    arch = rk.choose_architecture(cfg, serving_kind)
    if cfg.base_model:
        base = cfg.base_model
    elif serving_kind == arch:
        base = str(serving_path)
    elif arch == rk.EMBEDDING and retriever_path is not None:
        # the first embedding ranker starts from the serving retriever: the order it must
        # beat is that model's, so it starts there and learns the graded labels on top
        base = str(retriever_path)
    else:
        base = stock
    stage(f"training {arch} ranker from {base} on relevance labels")
    result = rk.train_ranker(
        train_rows, base, out, cfg, architecture=arch, progress=config.progress
    )
    candidates = _kb(kb, rk.knowledge_of(train_rows + eval_rows))
    queries = rk.rank_queries(eval_rows, candidates, cfg.pool_size)
    stage(f"evaluating on {len(queries)} eval queries (pools of {cfg.pool_size})")
    kb_map = dict(candidates)
    cand = rk.evaluate_ranker(
        rk.load_scorer(out, kind=arch), queries, kb_map, cfg.k, cfg.relevant_at
    )
    # the stock ranker is serving's "none": the serving retriever's cosine order
    base_scorer = (
        rk.load_scorer(serving_path)
        if serving_path
        else rk.embedding_scorer(str(retriever_path) if retriever_path else stock)
    )
    baseline = rk.evaluate_ranker(base_scorer, queries, kb_map, cfg.k, cfg.relevant_at)
    return _Trained(
        result,
        cand,
        baseline,
        base if base != stock else settings.retriever_model,
        {"kind": arch},
    )


def _generator(
    settings: Settings,
    config: CycleConfig,
    train_rows: list[GeneratorRow],
    eval_rows: list[GeneratorRow],
    serving_path: Path | None,
    out: Path,
    judge: PairwiseJudge,
    stage: Stage,
) -> _Trained:
    cfg = config.generator
    serving_card = read_model_card(serving_path) if serving_path else {}
    base_name = cfg.base_model or str(serving_card.get("base_model") or settings.generator_model)
    base_path = resolve_generator(base_name)
    stage(f"training LoRA adapter on {base_name} with ORPO")
    result = gen.train_generator(train_rows, base_path, out, cfg, progress=config.progress)
    gc.collect()
    stage(f"evaluating on {min(len(eval_rows), cfg.eval_examples)} eval prompts ({judge.version})")
    models = gen.AdapterModel(base_path, cfg.quantization)
    models.add("candidate", out / gen.ADAPTER_DIR)
    serving_adapter = None
    if serving_path is not None and serving_card.get("adapter"):
        models.add("serving", serving_path / gen.ADAPTER_DIR)
        serving_adapter = "serving"
    similarity = (
        judge if isinstance(judge, ReferenceSimilarityJudge) else _similarity(judge, settings)
    )
    cand, baseline = gen.evaluate_generator(
        models,
        "candidate",
        serving_adapter,
        eval_rows,
        judge,
        similarity,
        cfg,
        progress=config.progress,
    )
    return _Trained(
        result,
        cand,
        baseline,
        base_name,
        {
            "kind": gen.KIND,
            "adapter": True,
            "quantized_4bit": result.extra.get("quantized_4bit", False),
        },
        eval_judge=judge.version,
    )


def _similarity(judge: PairwiseJudge, settings: Settings) -> ReferenceSimilarityJudge:
    fallback = getattr(judge, "fallback", None)
    if isinstance(fallback, ReferenceSimilarityJudge):
        return fallback
    return ReferenceSimilarityJudge.from_path(
        resolve_embedder(settings.retriever_model), settings.retriever_model
    )
