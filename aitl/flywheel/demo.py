"""``aitl demo``: the flywheel end to end on the project's own demo data.

Kafka, the processors and the Ray Serve application run as separate processes, exactly
as an operator runs them. The demo measures the stock assistant on held-out cases,
replays the other cases through ``/v1/suggest`` with simulated agents annotating, lets
the processors judge and seal shards, runs a trainer cycle per component (promotion gate
included), waits for the serving application to hot-swap, measures again, and writes a
before/after table, ``report.json`` and ``report.png``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aitl.flywheel import report
from aitl.flywheel.agents import KnowledgeView, Profile, make_agents
from aitl.flywheel.evaluate import measure, suggest_all
from aitl.flywheel.judging import judge_table, scrape_judge
from aitl.flywheel.simulate import HttpSuggester, SimulationStats, shift_clock, simulate
from aitl.flywheel.stack import Stack
from aitl.kafka_local import free_port
from kernel.events import Component
from kernel.shards import ShardStore
from serving.knowledge.dataset import Case, Dataset, load_dstc
from serving.knowledge.demo_data import generate_demo
from serving.knowledge.indexer import knowledge_events
from streams.admin import ensure_topics
from streams.producer import Publisher

if TYPE_CHECKING:
    from kernel.settings import Settings

DEFAULT_MIX: dict[Profile, float] = {
    "careful": 0.7,
    "fatigued": 0.1,
    "careless": 0.1,
    "deferred": 0.1,
}


@dataclass
class DemoConfig:
    workdir: Path = Path(".aitl/demo")
    cases: int = 150  # replayed through the assistant and annotated, in order
    held_out: int = 30  # the cases after them: measured before and after, never annotated
    agents: int = 10
    mix: dict[Profile, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    seed: int = 7
    concurrency: int = 8  # suggestions asked at once; the generator decodes them as one batch
    components: tuple[Component, ...] = (Component.RETRIEVER, Component.RANKER, Component.GENERATOR)
    generator_steps: int = 8
    generator_eval_prompts: int = 8
    max_new_tokens: int = 40
    # B quotes the top knowledge (no decoding): a suggestion costs one prompt's decode on
    # 2 CPUs (the demo stays well under 10 minutes); "prompt" decodes two styles
    variant_b: str = "extractive"
    generator_batch_wait_s: float = 0.25  # time for the concurrent suggestions to meet
    swap_timeout_s: float = 300.0
    gate_margin: float | None = None  # None: the trainers' default; < 0 promotes any candidate
    eval_fraction: float = 0.1  # the processors' temporal eval slice: the replay's last share
    measure_replies: bool = True


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def wait_for_shards(
    stack: Stack,
    expected_min: int,
    settle_s: float,
    timeout_s: float,
    store_root: str | None = None,
) -> dict[str, int]:
    """Wait until sealed rows stop growing (processors seal by age); ``store_root``
    defaults to the stack's shard store."""
    store = ShardStore(store_root or str(stack.workdir / "shards"))
    deadline = time.monotonic() + timeout_s
    last: dict[str, int] = {}
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        stack.check()
        rows = {
            f"{c}/{s}": sum(m.rows for m in store.manifests(c, s))
            for c in (comp.slug for comp in Component)
            for s in ("train", "eval")
        }
        if rows != last:
            last, stable_since = rows, time.monotonic()
        elif sum(rows.values()) >= expected_min and time.monotonic() - stable_since > settle_s:
            return rows
        time.sleep(1)
    return last


def wait_for_versions(url: str, wanted: dict[str, str], timeout_s: float) -> dict[str, str]:
    """Poll /healthz until every component serves the wanted version."""
    deadline = time.monotonic() + timeout_s
    versions: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{url}/healthz", timeout=10).json()
            versions = body.get("model_versions") or body.get("versions") or {}
            if all(versions.get(k) == v for k, v in wanted.items()):
                return versions
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise TimeoutError(f"serving did not switch to {wanted} (serving {versions})")


@dataclass(frozen=True)
class _DemoData:
    """The generated demo dataset split in order, and the processors' environment."""

    dataset: Dataset
    replay: list[Case]
    held_out: list[Case]
    clock: Callable[[int], datetime]
    extra: dict[str, str]  # environment of the stack's services


@dataclass(frozen=True)
class _DemoOutcome:
    """What the demo measured and produced, for the report."""

    before: dict[str, float]
    after: dict[str, float]
    promoted: dict[str, str]
    cycles: list[dict[str, Any]]
    rows: dict[str, int]
    judged: dict[str, Any] | None
    stats: SimulationStats
    generator_tokens_per_s: float


def run_demo(cfg: DemoConfig, console: Console | None = None) -> dict[str, Any]:
    # the trainers (and torch) load first, as always: a broken install fails before the
    # stack starts; the stages import what they use from them
    from trainers import config, cycle, registry  # noqa: F401

    console = console or Console()
    started = time.perf_counter()
    data = _prepare_data(cfg)
    timings: dict[str, float] = {}
    with Stack(cfg.workdir, topic_prefix="demo.", extra_env=data.extra) as stack:
        settings = _start_stack(stack, data.dataset, console, timings)
        suggester = HttpSuggester(stack.serve_url)
        t = time.perf_counter()
        before = _measure_held_out(
            cfg, suggester, data.held_out, "before: stock models on held-out cases", console
        )
        timings["before_s"] = time.perf_counter() - t
        report.show({"before": before}, "stock assistant", console)
        stats = _annotate(cfg, settings, suggester, data, console, timings)
        rows, judged = _judge_and_seal(stack, data, console, timings)
        promoted, cycles = _train(cfg, settings, data.dataset, console, timings)
        _hot_swap(cfg, stack, promoted, console, timings)
        t = time.perf_counter()
        after = _measure_held_out(
            cfg, suggester, data.held_out, "after: promoted models on held-out cases", console
        )
        timings["after_s"] = time.perf_counter() - t
        rate = _generator_rate(stack.serve_url)
        suggester.close()

    outcome = _DemoOutcome(before, after, promoted, cycles, rows, judged, stats, rate)
    return _write_report(cfg, data, outcome, timings, started, console)


def _prepare_data(cfg: DemoConfig) -> _DemoData:
    """A fresh workdir with generated demo data, split into replayed and held-out cases,
    and the services' environment for a simulated shift over the replay."""
    shutil.rmtree(cfg.workdir, ignore_errors=True)
    n = cfg.cases + cfg.held_out
    data_dir = generate_demo(cfg.workdir / "data", n_cases=n, seed=cfg.seed)
    dataset = load_dstc(data_dir, name="demo")
    replay, held_out = dataset.temporal_split(cfg.cases / n)
    # a simulated shift: the processors' eval slice is the last share of the replay
    period_s, clock = shift_clock(len(replay))
    extra = {
        "AITL_PROCESSORS_SEAL_AGE_S": "5",
        "AITL_PROCESSORS_SPLIT_PERIOD_S": str(period_s),
        "AITL_PROCESSORS_EVAL_FRACTION": str(cfg.eval_fraction),
        "AITL_PROCESSORS_ADOPTION_WAIT_S": "5",
        "AITL_METRICS_PORT": str(free_port()),
        "AITL_SERVE_MAX_NEW_TOKENS": str(cfg.max_new_tokens),
        "AITL_SERVE_VARIANT_B": cfg.variant_b,
        # the simulator asks `concurrency` suggestions at once; they reach the generator
        # a retrieval apart, so its batch waits long enough to decode them together
        "AITL_SERVE_GENERATOR_BATCH_WAIT_S": str(cfg.generator_batch_wait_s),
        "AITL_SERVE_GENERATOR_BATCH": str(cfg.concurrency),
    }
    return _DemoData(dataset, replay, held_out, clock, extra)


def _start_stack(
    stack: Stack, dataset: Dataset, console: Console, timings: dict[str, float]
) -> Settings:
    """Kafka and its topics, the knowledge base published, then the processors and the
    serving application started and healthy, as an operator would run them."""
    t = time.perf_counter()
    with console.status("starting Kafka 4.1 (KRaft) and creating topics"):
        stack.start_kafka()
        settings = stack.settings()
        ensure_topics(settings.kafka)
    console.print(f"[green]✓[/] Kafka at {stack.bootstrap}, topics with prefix demo.")
    with Publisher(settings.kafka, producer_name="aitl-demo") as pub:
        pub.publish_many(knowledge_events(dataset.knowledge))
    console.print(f"[green]✓[/] published {len(dataset.knowledge)} knowledge objects")
    stack.start("processors", "processors", "start")
    stack.start("serve", "serve", "start")
    lead_token = secrets.token_urlsafe(12)  # the flywheel page's models role, this run only
    stack.start("gateway", "gateway", "start", env={"AITL_MODELS_ADMIN_TOKENS": lead_token})
    with console.status("starting processors and the Ray Serve application (models load)"):
        health = stack.wait_serving()
    stack.check()
    timings["startup_s"] = time.perf_counter() - t
    console.print(
        f"[green]✓[/] serving at {stack.serve_url}: {health.get('model_versions', health)}"
    )
    console.print(
        f"[green]✓[/] agents' console at {stack.gateway_url}/console#agent=demo-agent, "
        f"flywheel at {stack.gateway_url}/console/flywheel#token={lead_token}"
    )
    return settings


def _measure_held_out(
    cfg: DemoConfig,
    suggester: HttpSuggester,
    held_out: list[Case],
    description: str,
    console: Console,
) -> dict[str, float]:
    """The served assistant's metrics on the held-out cases, with a progress bar."""
    with _progress(console) as progress:
        task = progress.add_task(description, total=len(held_out))
        served = suggest_all(
            suggester, held_out, cfg.concurrency, lambda n: progress.advance(task, n)
        )
    return measure(served, held_out, replies=cfg.measure_replies)


def _annotate(
    cfg: DemoConfig,
    settings: Settings,
    suggester: HttpSuggester,
    data: _DemoData,
    console: Console,
    timings: dict[str, float],
) -> SimulationStats:
    """Replay the cases through ``/v1/suggest`` while simulated agents annotate what is
    served, publishing to the real topics: the flywheel's input."""
    agents = make_agents(
        cfg.agents, cfg.mix, seed=cfg.seed, kb=KnowledgeView(data.dataset.knowledge)
    )
    t = time.perf_counter()
    with (
        Publisher(settings.kafka, producer_name="aitl-simulator") as pub,
        _progress(console) as progress,
    ):
        task = progress.add_task("agents annotating live suggestions", total=len(data.replay))
        stats = simulate(
            data.replay,
            suggester,
            agents,
            pub,
            concurrency=cfg.concurrency,
            on_case=lambda n: progress.advance(task, n),
            clock=data.clock,
        )
    timings["simulate_s"] = time.perf_counter() - t
    console.print(
        f"[green]✓[/] {stats.annotations} annotations from {cfg.agents} agents {stats.by_profile}"
    )
    return stats


def _judge_and_seal(
    stack: Stack, data: _DemoData, console: Console, timings: dict[str, float]
) -> tuple[dict[str, int], dict[str, Any] | None]:
    """Wait for the processors to judge the annotations and seal shards; the sealed rows
    and the Virtual Judge's summary from the processors' metrics."""
    t = time.perf_counter()
    with console.status("Virtual Judge at work; sealing shards"):
        rows = wait_for_shards(stack, expected_min=len(data.replay), settle_s=12, timeout_s=300)
    timings["judge_and_seal_s"] = time.perf_counter() - t
    judged = scrape_judge(f"http://127.0.0.1:{data.extra['AITL_METRICS_PORT']}/metrics")
    if judged:
        console.print(judge_table(judged))
    console.print(f"[green]✓[/] sealed shard rows: {rows}")
    return rows, judged


def _train(
    cfg: DemoConfig,
    settings: Settings,
    dataset: Dataset,
    console: Console,
    timings: dict[str, float],
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A trainer cycle per component on the sealed shards, promotion gate included;
    the promoted versions by component, and the cycles' summaries."""
    from trainers.config import CycleConfig
    from trainers.cycle import run_cycle
    from trainers.registry import KafkaLifecycleLog, Registry

    lifecycle_log = KafkaLifecycleLog(settings.kafka)
    registry = Registry(lifecycle_log, key=settings.lifecycle_key_bytes())
    kb = [(k.id, k.text) for k in dataset.knowledge]
    config = CycleConfig()
    config.generator.max_steps = cfg.generator_steps
    config.generator.eval_examples = cfg.generator_eval_prompts
    if cfg.gate_margin is not None:
        config.gate.margin = cfg.gate_margin
        config.gate.open_for_tests = cfg.gate_margin < 0  # tests that must see a promotion
    promoted: dict[str, str] = {}
    cycles = []
    t = time.perf_counter()
    for component in cfg.components:
        console.rule(f"trainer cycle: {component.slug}")
        started = time.perf_counter()
        result = run_cycle(
            component,
            settings=settings,
            registry=registry,
            config=config,
            kb=kb,
            on_stage=lambda msg: console.print(f"  {msg}"),
        )
        timings[f"train_{component.slug}_s"] = time.perf_counter() - started
        cycles.append(result.summary())
        if result.action.value == "PROMOTED":
            promoted[component.slug] = result.version
    timings["train_s"] = time.perf_counter() - t
    lifecycle_log.close()
    return promoted, cycles


def _hot_swap(
    cfg: DemoConfig,
    stack: Stack,
    promoted: dict[str, str],
    console: Console,
    timings: dict[str, float],
) -> None:
    """Wait until the serving application has hot-swapped to the promoted versions."""
    with console.status(f"hot-swapping {promoted or 'nothing'} in the serving application"):
        t = time.perf_counter()
        versions = (
            wait_for_versions(stack.serve_url, promoted, cfg.swap_timeout_s) if promoted else {}
        )
        timings["swap_s"] = time.perf_counter() - t
    console.print(f"[green]✓[/] serving {versions or 'the stock models (nothing promoted)'}")


def _write_report(
    cfg: DemoConfig,
    data: _DemoData,
    outcome: _DemoOutcome,
    timings: dict[str, float],
    started: float,
    console: Console,
) -> dict[str, Any]:
    """The before/after table, ``report.json`` and ``report.png`` in the workdir."""
    rows_table = {"before": outcome.before, "after": outcome.after}
    report.show(rows_table, "aitl demo: before vs after one flywheel cycle", console)
    timings["total_s"] = time.perf_counter() - started
    result_doc = {
        "before": outcome.before,
        "after": outcome.after,
        "promoted": outcome.promoted,
        "cycles": outcome.cycles,
        "shard_rows": outcome.rows,
        "annotations": outcome.stats.annotations,
        "judge": outcome.judged,
        "agents": outcome.stats.by_profile,
        "cases": {"replayed": len(data.replay), "held_out": len(data.held_out)},
        "timings_s": timings,
        "generator_tokens_per_s": outcome.generator_tokens_per_s,
        "helpfulness_judge": "reference similarity (no LLM judge endpoint configured)",
    }
    out = cfg.workdir / "report.json"
    report.write_json(result_doc, out)
    report.write_json(demo_timings(result_doc), cfg.workdir / "timings.json")
    png = report.plot(rows_table, cfg.workdir / "report.png", "aitl demo: before vs after")
    console.print(f"report: {out}  plot: {png}  ({timings['total_s'] / 60:.1f} min)")
    return result_doc


# the stages of the demo's timings, in order, by what a newcomer sees on the screen
STAGES = {
    "startup_s": "start Kafka, processors and serving (models load)",
    "before_s": "stock models on the held-out cases",
    "simulate_s": "live suggestions annotated by the simulated agents",
    "judge_and_seal_s": "Virtual Judge and sealed shards",
    "train_retriever_s": "retriever cycle",
    "train_ranker_s": "ranker cycle",
    "train_generator_s": "generator cycle",
    "swap_s": "hot-swap of the promoted models",
    "after_s": "promoted models on the held-out cases",
}


def demo_timings(doc: dict[str, Any]) -> dict[str, Any]:
    """Where the demo's time went (``bench/results/demo.json``): total, stage seconds,
    cores, the serving generator's decode rate, and the before/after metrics."""
    timings = doc["timings_s"]
    return {
        "total_s": round(timings["total_s"], 1),
        "stages": {k.removesuffix("_s"): round(timings[k], 1) for k in STAGES if k in timings},
        "cores": os.cpu_count(),
        "generator_tokens_per_s": round(doc.get("generator_tokens_per_s", 0.0), 2),
        "cases": doc["cases"],
        "before": doc["before"],
        "after": doc["after"],
        "promoted": doc["promoted"],
    }


def _generator_rate(url: str) -> float:
    """New tokens per second of decoding the serving generator measured so far."""
    try:
        body = httpx.get(f"{url}/healthz", timeout=30).json()
        return float(body["generator"].get("tokens_per_s", 0.0))
    except (httpx.HTTPError, KeyError, ValueError):
        return 0.0
