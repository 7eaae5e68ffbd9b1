"""``aitl demo``: the flywheel end to end on the project's own demo data.

Kafka, the processors and the Ray Serve application run as separate processes, exactly
as an operator runs them. The demo measures the stock assistant on held-out cases,
replays the other cases through ``/v1/suggest`` with simulated agents annotating, lets
the processors judge and seal shards, runs a trainer cycle per component (promotion gate
included), waits for the serving application to hot-swap, measures again, and writes a
before/after table, ``report.json`` and ``report.png``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aitl.flywheel import report
from aitl.flywheel.agents import Profile, make_agents
from aitl.flywheel.evaluate import measure, suggest_all
from aitl.flywheel.judging import judge_table, scrape_judge
from aitl.flywheel.simulate import HttpSuggester, shift_clock, simulate
from aitl.flywheel.stack import Stack
from aitl.kafka_local import free_port
from kernel.events import Component
from kernel.shards import ShardStore
from serving.knowledge.dataset import load_dstc
from serving.knowledge.demo_data import generate_demo
from serving.knowledge.indexer import knowledge_events
from streams.admin import ensure_topics
from streams.producer import Publisher

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
    concurrency: int = 4
    components: tuple[Component, ...] = (Component.RETRIEVER, Component.RANKER, Component.GENERATOR)
    generator_steps: int = 8
    generator_eval_prompts: int = 8
    max_new_tokens: int = 40
    # B quotes the top knowledge (no decoding): a suggestion costs one prompt's decode on
    # 2 CPUs, which keeps the demo within 15 minutes; "prompt" decodes two styles
    variant_b: str = "extractive"
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
            for c in ("retriever", "ranker", "generator")
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


def run_demo(cfg: DemoConfig, console: Console | None = None) -> dict[str, Any]:
    from trainers.config import CycleConfig
    from trainers.cycle import run_cycle
    from trainers.registry import KafkaLifecycleLog, Registry

    console = console or Console()
    started = time.perf_counter()
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
    }
    timings: dict[str, float] = {}
    with Stack(cfg.workdir, topic_prefix="demo.", extra_env=extra) as stack:
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
        with console.status("starting processors and the Ray Serve application (models load)"):
            health = stack.wait_serving()
        stack.check()
        timings["startup_s"] = time.perf_counter() - t
        console.print(
            f"[green]✓[/] serving at {stack.serve_url}: {health.get('model_versions', health)}"
        )

        suggester = HttpSuggester(stack.serve_url)
        with _progress(console) as progress:
            task = progress.add_task("before: stock models on held-out cases", total=len(held_out))
            before_s = suggest_all(
                suggester, held_out, cfg.concurrency, lambda n: progress.advance(task, n)
            )
        before = measure(before_s, held_out, replies=cfg.measure_replies)
        report.show({"before": before}, "stock assistant", console)

        agents = make_agents(cfg.agents, cfg.mix, seed=cfg.seed)
        t = time.perf_counter()
        with (
            Publisher(settings.kafka, producer_name="aitl-simulator") as pub,
            _progress(console) as progress,
        ):
            task = progress.add_task("agents annotating live suggestions", total=len(replay))
            stats = simulate(
                replay,
                suggester,
                agents,
                pub,
                concurrency=cfg.concurrency,
                on_case=lambda n: progress.advance(task, n),
                clock=clock,
            )
        timings["simulate_s"] = time.perf_counter() - t
        console.print(
            f"[green]✓[/] {stats.annotations} annotations from {cfg.agents} agents "
            f"{stats.by_profile}"
        )

        with console.status("Virtual Judge at work; sealing shards"):
            rows = wait_for_shards(stack, expected_min=len(replay), settle_s=12, timeout_s=300)
        judged = scrape_judge(f"http://127.0.0.1:{extra['AITL_METRICS_PORT']}/metrics")
        if judged:
            console.print(judge_table(judged))
        console.print(f"[green]✓[/] sealed shard rows: {rows}")

        lifecycle_log = KafkaLifecycleLog(settings.kafka)
        registry = Registry(lifecycle_log)
        kb = [(k.id, k.text) for k in dataset.knowledge]
        config = CycleConfig()
        config.generator.max_steps = cfg.generator_steps
        config.generator.eval_examples = cfg.generator_eval_prompts
        if cfg.gate_margin is not None:
            config.gate.margin = cfg.gate_margin
        promoted: dict[str, str] = {}
        cycles = []
        t = time.perf_counter()
        for component in cfg.components:
            console.rule(f"trainer cycle: {component.value.lower()}")
            result = run_cycle(
                component,
                settings=settings,
                registry=registry,
                config=config,
                kb=kb,
                on_stage=lambda msg: console.print(f"  {msg}"),
            )
            cycles.append(result.summary())
            if result.action.value == "PROMOTED":
                promoted[component.value.lower()] = result.version
        timings["train_s"] = time.perf_counter() - t
        lifecycle_log.close()

        with console.status(f"hot-swapping {promoted or 'nothing'} in the serving application"):
            t = time.perf_counter()
            versions = (
                wait_for_versions(stack.serve_url, promoted, cfg.swap_timeout_s) if promoted else {}
            )
            timings["swap_s"] = time.perf_counter() - t
        console.print(f"[green]✓[/] serving {versions or 'the stock models (nothing promoted)'}")

        with _progress(console) as progress:
            task = progress.add_task(
                "after: promoted models on held-out cases", total=len(held_out)
            )
            after_s = suggest_all(
                suggester, held_out, cfg.concurrency, lambda n: progress.advance(task, n)
            )
        after = measure(after_s, held_out, replies=cfg.measure_replies)
        suggester.close()

    rows_table = {"before": before, "after": after}
    report.show(rows_table, "aitl demo: before vs after one flywheel cycle", console)
    timings["total_s"] = time.perf_counter() - started
    result_doc = {
        "before": before,
        "after": after,
        "promoted": promoted,
        "cycles": cycles,
        "shard_rows": rows,
        "annotations": stats.annotations,
        "judge": judged,
        "agents": stats.by_profile,
        "cases": {"replayed": len(replay), "held_out": len(held_out)},
        "timings_s": timings,
        "helpfulness_judge": "reference similarity (no LLM judge endpoint configured)",
    }
    out = cfg.workdir / "report.json"
    report.write_json(result_doc, out)
    png = report.plot(rows_table, cfg.workdir / "report.png", "aitl demo: before vs after")
    console.print(f"report: {out}  plot: {png}  ({timings['total_s'] / 60:.1f} min)")
    return result_doc
