"""The ``aitl`` command line. Settings are read once here and passed down."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kernel.settings import Settings, load_settings

app = typer.Typer(help="aitl: the agent-in-the-loop data flywheel.", no_args_is_help=True)
topics_app = typer.Typer(help="The topic catalog on the cluster.", no_args_is_help=True)
events_app = typer.Typer(help="Publish and read events.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter topic.", no_args_is_help=True)
schemas_app = typer.Typer(help="The Avro contracts.", no_args_is_help=True)
gateway_app = typer.Typer(help="The HTTP gateway.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(events_app, name="events")
app.add_typer(dlq_app, name="dlq")
app.add_typer(schemas_app, name="schemas")
app.add_typer(gateway_app, name="gateway")

console = Console()


def _settings() -> Settings:
    return load_settings()


SUB_APPS = (
    ("aitl.cli_kafka", "app", "kafka"),
    ("aitl.cli_processors", "app", "processors"),
    ("aitl.cli_serve", "app", "serve"),
    ("aitl.cli_models", "models_app", "models"),
    ("aitl.cli_models", "train_app", "train"),
    ("aitl.cli_models", "trainers_app", "trainers"),
    ("aitl.cli_deploy", "app", "deploy"),
)


def mount_sub_apps() -> typer.Typer:
    """Mount the command groups that live beside their code."""
    import importlib

    for module_name, attr, name in SUB_APPS:
        if any(g.name == name for g in app.registered_groups):
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        app.add_typer(getattr(module, attr), name=name)
    return app


@topics_app.command("create")
def topics_create() -> None:
    """Create every catalog topic (idempotent) and report drift from the cluster."""
    from streams.admin import ensure_topics

    report = ensure_topics(_settings().kafka)
    console.print(f"created {len(report.created)}, already there {len(report.existing)}")
    for name in report.created:
        console.print(f"  [green]+ {name}[/green]")
    for line in report.drift:
        console.print(f"  [yellow]drift: {line}[/yellow]")
    if report.drift:
        raise typer.Exit(code=3)


@topics_app.command("list")
def topics_list() -> None:
    """The catalog: name, event, key, partitions, retention."""
    from streams.catalog import Topics

    topics = Topics(_settings().kafka)
    table = Table("topic", "value", "key", "partitions", "cleanup / retention", "what")
    for name, spec in topics:
        cfg = spec.configs()
        keep = cfg["cleanup.policy"] + ("" if spec.compact else f" {cfg['retention.ms']} ms")
        table.add_row(
            name,
            spec.event.schema_name if spec.event else "raw bytes",
            spec.key,
            str(topics.partitions(spec)),
            keep,
            spec.description,
        )
    console.print(table)


@events_app.command("publish")
def events_publish(
    file: Path = typer.Argument(..., help='JSON lines: {"type": ..., "event": {...}}'),
) -> None:
    """Publish events from a JSON-lines file through the SDK."""
    from streams.producer import InvalidEvent, Publisher

    settings = _settings()
    sent = 0
    with Publisher(settings.kafka, producer_name="aitl-cli", tenant_id=settings.tenant_id) as pub:
        for lineno, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                pub.publish(row["event"], row["type"])
            except (InvalidEvent, KeyError) as exc:
                console.print(f"[red]{file}:{lineno}: {exc}[/red]")
                raise typer.Exit(code=2) from exc
            sent += 1
    console.print(f"published {sent} events")


@events_app.command("tail")
def events_tail(
    topic: str = typer.Argument(..., help="catalog suffix (e.g. interactions) or full name"),
    limit: int = typer.Option(20, help="stop after this many events (0 = follow)"),
    from_beginning: bool = typer.Option(True, help="start at the earliest offset"),
) -> None:
    """Print decoded events of a topic."""
    import uuid

    from streams.catalog import Topics
    from streams.consumer import EventConsumer

    settings = _settings()
    topics = Topics(settings.kafka)
    name = topic if topic.startswith(settings.kafka.topic_prefix) else topics.name(topic)
    group = f"aitl-tail-{uuid.uuid4().hex[:8]}"
    offset = "earliest" if from_beginning else "latest"
    seen = 0
    overrides: dict[str, Any] = {"auto.offset.reset": offset}
    with EventConsumer(settings.kafka, group, [name], **overrides) as consumer:
        idle = 0
        while limit == 0 or seen < limit:
            batch = consumer.poll(100, 1.0)
            idle = 0 if batch.events else idle + 1
            for d in batch.events:
                console.rule(f"{d.topic}/{d.partition}@{d.offset} key={d.key!r}")
                console.print_json(d.event.model_dump_json())
                seen += 1
            if limit and idle >= 5:
                break
    console.print(f"{seen} events")


@dlq_app.command("show")
def dlq_show(limit: int = typer.Option(20, help="how many dead letters to show")) -> None:
    """Dead letters with their source, error and the first bytes of the payload."""
    from streams.dlq_reader import read_dead_letters

    letters = read_dead_letters(_settings().kafka, limit=limit)
    table = Table("source", "stage", "error", "payload")
    for dl in letters:
        payload = (dl.value or b"")[:40]
        table.add_row(
            f"{dl.topic}/{dl.partition}@{dl.offset}",
            dl.stage,
            f"{dl.error_class}: {dl.error}",
            repr(payload),
        )
    console.print(table)
    console.print(f"{len(letters)} dead letters shown")


@schemas_app.command("freeze")
def schemas_freeze() -> None:
    """Write frozen copies of schema versions not yet in schemas/history/."""
    from streams.schema_history import freeze
    from streams.serde import SchemaSet

    for path in freeze(SchemaSet()):
        console.print(f"[green]froze {path}[/green]")


@schemas_app.command("list")
def schemas_list() -> None:
    """Every schema with its version and fingerprint."""
    from streams.serde import default_schemas

    table = Table("schema", "version", "fingerprint (CRC-64-AVRO, LE)")
    for name, sv in sorted(default_schemas().current.items()):
        table.add_row(name, str(sv.version), sv.fingerprint.hex())
    console.print(table)


@gateway_app.command("start")
def gateway_start(
    host: str = typer.Option(None, help="bind address (default: AITL_GATEWAY_HOST)"),
    port: int = typer.Option(None, help="port (default: AITL_GATEWAY_PORT)"),
) -> None:
    """Run the HTTP gateway in the foreground, with the agents' console at /console."""
    import uvicorn

    from aitl.console import create_console_app
    from kernel.errors import SecurityError

    settings = _settings()
    try:
        gateway = create_console_app(settings)  # no tokens: refused unless AITL_AUTH=off
    except SecurityError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    uvicorn.run(
        gateway,
        host=gateway.state.access.bind_host(host or settings.gateway_host),
        port=port or settings.gateway_port,
        log_level="warning",
    )


@app.command("demo")
def demo(
    cases: int = typer.Option(150, help="cases replayed and annotated"),
    held_out: int = typer.Option(30, help="later cases measured before and after"),
    agents: int = typer.Option(10, help="simulated agents"),
    seed: int = typer.Option(7, help="seed of the data and the agents"),
    workdir: Path = typer.Option(Path(".aitl/demo"), help="where everything is written"),
    timings_out: Path = typer.Option(
        None, help="also write the stage timings here (make demo: bench/results/demo.json)"
    ),
    readme: Path = typer.Option(None, help="rewrite this README's demo section from the run"),
) -> None:
    """The flywheel end to end on the demo data: before/after table, JSON and PNG."""
    from aitl.flywheel.demo import DemoConfig, run_demo
    from aitl.quiet import quiet_third_party

    quiet_third_party()
    cfg = DemoConfig(workdir=workdir, cases=cases, held_out=held_out, agents=agents, seed=seed)
    run_demo(cfg, console)
    if timings_out is not None:
        timings_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workdir / "timings.json", timings_out)
        console.print(f"stage timings: {timings_out}")
    if readme is not None:
        from aitl.flywheel import report
        from aitl.flywheel.demo import STAGES

        doc = json.loads((workdir / "timings.json").read_text())
        if report.replace_section(
            readme, report.DEMO_START, report.DEMO_END, report.demo_markdown(doc, STAGES)
        ):
            console.print(f"README demo section rewritten: {readme}")


@app.command("simulate")
def simulate_cmd(
    dataset: Path = typer.Option(..., help="a DSTC-format dataset dir"),
    url: str = typer.Option("http://127.0.0.1:8000", help="the serving application"),
    cases: int = typer.Option(100, help="how many cases to replay, in order"),
    agents: int = typer.Option(10, help="simulated agents"),
    careless: float = typer.Option(0.1, help="share of careless agents"),
    fatigued: float = typer.Option(0.1, help="share of fatigued agents"),
    deferred: float = typer.Option(0.1, help="share of deferred missing-knowledge annotators"),
    seed: int = typer.Option(0, help="seed of the agents"),
) -> None:
    """Replay cases through a running /v1/suggest and publish simulated annotations."""
    from rich.progress import track

    from aitl.flywheel.agents import KnowledgeView, make_agents
    from aitl.flywheel.simulate import HttpSuggester, simulate
    from serving.knowledge.dataset import load_dstc
    from streams.producer import Publisher

    settings = _settings()
    data = load_dstc(dataset)
    careful = max(0.0, 1 - careless - fatigued - deferred)
    mix = {"careful": careful, "careless": careless, "fatigued": fatigued, "deferred": deferred}
    crew = make_agents(agents, mix, seed=seed, kb=KnowledgeView(data.knowledge))  # type: ignore[arg-type]
    tokens = sorted(settings.token_set())
    suggester = HttpSuggester(url, tokens[0] if tokens else None)
    chosen = data.cases[:cases]
    with Publisher(settings.kafka, producer_name="aitl-simulator") as pub:
        progress = iter(track(range(len(chosen)), description="simulating"))

        def advance(_: int) -> None:
            next(progress, None)

        stats = simulate(chosen, suggester, crew, pub, on_case=advance)
    console.print(f"{stats.cases} cases, {stats.annotations} annotations, {stats.by_profile}")


@app.command("benchmark")
def benchmark(
    dataset: Path = typer.Option(..., help="a DSTC-format dataset dir (docs or faqs+reviews)"),
    out: Path = typer.Option(Path("bench/results/quality.json"), help="the JSON report"),
    max_cases: int = typer.Option(0, help="use only the first N instances (0: all)"),
    agents: int = typer.Option(20, help="simulated agents per replay"),
    cycles: int = typer.Option(4, help="replay windows, a trainer cycle after each"),
    ablations: bool = typer.Option(True, help="run the judge ablation"),
    epochs: float = typer.Option(0.2, help="training epochs per cycle"),
    judge_seeds: str = typer.Option(
        "12,13", help="more agent seeds for the judge ablation, comma-separated (its spread)"
    ),
    generator: bool = typer.Option(True, help="train and measure the generator"),
    generator_cases: int = typer.Option(64, help="held-out prompts the generators decode"),
    workdir: Path = typer.Option(Path(".aitl/benchmark"), help="where shards and models go"),
    readme: Path | None = typer.Option(None, help="rewrite this README's results section"),
) -> None:
    """The flywheel on a DSTC-format dataset: stock / every cycle / oracle, the judge
    ablation and the generator, with 95% intervals."""
    import shutil

    from aitl.flywheel.benchmark import BenchmarkConfig, run_benchmark

    if not (dataset / "knowledge.json").exists():
        console.print(
            f"[red]{dataset}: no knowledge.json (a DSTC-format dataset dir is needed)[/red]"
        )
        raise typer.Exit(2)
    shutil.rmtree(workdir, ignore_errors=True)
    cfg = BenchmarkConfig(
        dataset=dataset,
        out=out,
        workdir=workdir,
        max_cases=max_cases or None,
        agents=agents,
        cycles=cycles,
        ablations=ablations,
        epochs=epochs,
        judge_seeds=tuple(int(x) for x in judge_seeds.split(",") if x.strip()),
        generator=generator,
        generator_cases=generator_cases,
    )
    doc = run_benchmark(cfg, console)
    if readme is not None:
        from aitl.flywheel.report import update_readme

        if update_readme(readme, doc):
            console.print(f"updated the results section of {readme}")
        else:
            console.print(f"[yellow]{readme} has no results markers; left as it is[/yellow]")


def main() -> None:
    mount_sub_apps()
    app(prog_name="aitl")


if __name__ == "__main__":
    main()
