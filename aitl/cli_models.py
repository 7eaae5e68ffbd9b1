"""``aitl models``, ``aitl train`` and ``aitl trainers``: the model lifecycle from the shell.

Settings (and ``AITL_TRAINERS_*`` / ``MLFLOW_TRACKING_URI``) are read here, once, and
passed down. The lifecycle lives on the models topic of the configured cluster.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from kernel.events import Component
from kernel.settings import Settings, load_settings

models_app = typer.Typer(
    help="Model versions: list, show lineage, promote, roll back.", no_args_is_help=True
)
train_app = typer.Typer(help="Run one training cycle for a component.", no_args_is_help=True)
trainers_app = typer.Typer(help="The trainer service.", no_args_is_help=True)
console = Console()

COMPONENT_HELP = "retriever | ranker | generator"


def _component(value: str) -> Component:
    try:
        return Component.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: expected {COMPONENT_HELP}") from exc


def _registry(settings: Settings, create_topics: bool = False) -> Any:
    from trainers.registry import KafkaLifecycleLog, Registry

    if create_topics:
        from streams.admin import ensure_topics

        ensure_topics(settings.kafka)
    return Registry(
        KafkaLifecycleLog(settings.kafka),
        tenant_id=settings.tenant_id,
        key=settings.lifecycle_key_bytes(),
    )


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    return typer.Exit(code=2)


# --- aitl models ----------------------------------------------------------------------
@models_app.command("list")
def models_list(
    component: str = typer.Option(None, help=f"only this component ({COMPONENT_HELP})"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
) -> None:
    """Every registered version with its status; the serving one is marked."""
    state = _registry(load_settings()).state()
    wanted = [_component(component)] if component else list(Component)
    if as_json:
        for comp in wanted:
            for v in state.versions.get(comp, {}).values():
                row = {
                    "component": comp.slug,
                    "version": v.version,
                    "status": v.status.value,
                    "serving": state.serving.get(comp) == v.version,
                    "artifact_uri": v.artifact_uri,
                    "metrics": v.metrics,
                }
                typer.echo(json.dumps(row, sort_keys=True))
        return
    table = Table("component", "version", "status", "serving", "time", "snapshot", "metrics")
    for comp in wanted:
        versions = sorted(
            state.versions.get(comp, {}).values(),
            key=lambda v: v.event.envelope.event_time if v.event else datetime.min,
        )
        for v in versions:
            shown = ", ".join(f"{k}={val:.3f}" for k, val in list(v.metrics.items())[:4])
            table.add_row(
                comp.slug,
                v.version,
                v.status.value,
                "*" if state.serving.get(comp) == v.version else "",
                v.event.envelope.event_time.strftime("%Y-%m-%d %H:%M:%S") if v.event else "",
                (v.event.snapshot_id or "") if v.event else "",
                shown,
            )
        if comp not in state.serving:
            table.add_row(comp.slug, "stock", "", "*", "", "", "")
    console.print(table)


@models_app.command("show")
def models_show(
    component: str = typer.Argument(..., help=COMPONENT_HELP),
    version: str = typer.Argument(None, help="version (default: the serving one)"),
) -> None:
    """A version's status, artifact and lineage (base model, config, snapshot, judge, metrics)."""
    from trainers.registry import RegistryError, lineage_of

    comp = _component(component)
    registry = _registry(load_settings())
    state = registry.state()
    version = version or state.serving.get(comp)
    if version is None:
        console.print(f"no {comp.slug} version is serving (stock)")
        raise typer.Exit(code=1)
    try:
        v = registry.get(comp, version)
    except RegistryError as exc:
        raise _fail(exc) from exc
    out = {
        "component": comp.slug,
        "version": v.version,
        "status": v.status.value,
        "serving": state.serving.get(comp) == v.version,
        "artifact_uri": v.artifact_uri,
        "reason": v.event.reason if v.event else None,
        "previous_version": v.event.previous_version if v.event else None,
        "lineage": lineage_of(v),
    }
    console.print_json(json.dumps(out, default=str))


@models_app.command("promote")
def models_promote(
    component: str = typer.Argument(..., help=COMPONENT_HELP),
    version: str = typer.Argument(..., help="the version to serve"),
    reason: str = typer.Option(
        None, help="recorded on the event (default: manual promotion; needed with --force)"
    ),
    force: bool = typer.Option(
        False, "--force", help="serve a version the gate rejected; recorded as forced: REASON"
    ),
) -> None:
    """Serve a registered version now: an operator's decision. A version the gate rejected
    needs --force and --reason, both recorded on the lifecycle event."""
    from trainers.registry import GateRefused, RegistryError

    comp = _component(component)
    if force and not (reason and reason.strip()):
        console.print("[red]--force needs --reason: say why the gate is overruled[/red]")
        raise typer.Exit(code=2)
    registry = _registry(load_settings(), create_topics=True)
    try:
        event = registry.promote(comp, version, reason=reason or "manual promotion", force=force)
    except GateRefused as exc:
        console.print(f"[red]{exc}[/red]")
        console.print(
            f"serve it anyway: aitl models promote {comp.slug} {version} --force --reason ..."
        )
        raise typer.Exit(code=2) from exc
    except RegistryError as exc:
        raise _fail(exc) from exc
    console.print(
        f"[green]PROMOTED {event.version}[/green] (was {event.previous_version or 'stock'})"
    )


@models_app.command("rollback")
def models_rollback(
    component: str = typer.Argument(..., help=COMPONENT_HELP),
    reason: str = typer.Option("manual rollback", help="recorded on the event"),
) -> None:
    """Stop serving the current version; the previous one (or stock) serves again."""
    from trainers.registry import RegistryError

    registry = _registry(load_settings(), create_topics=True)
    try:
        event = registry.rollback(_component(component), reason=reason)
    except RegistryError as exc:
        raise _fail(exc) from exc
    console.print(
        f"[yellow]ROLLED_BACK {event.version}[/yellow]; serving {event.previous_version or 'stock'}"
    )


# --- aitl train -----------------------------------------------------------------------
def _cycle_config(
    config_file: Path | None,
    max_steps: int | None,
    epochs: float | None,
    margin: float | None,
    promote: bool,
) -> Any:
    """The cycle config: YAML file (flag or AITL_TRAINERS_CONFIG_FILE), then flag overrides."""
    from trainers.config import CycleConfig, TrainerSettings

    env = TrainerSettings()
    yaml_file = config_file or env.config_file
    cfg = CycleConfig.from_yaml(yaml_file) if yaml_file else CycleConfig()
    for section in (cfg.retriever, cfg.ranker, cfg.generator):
        if max_steps is not None:
            section.max_steps = max_steps
        if epochs is not None:
            section.epochs = epochs
    if margin is not None:  # flag > YAML > AITL_TRAINERS_MARGIN
        cfg.gate.margin = margin
    elif yaml_file is None:
        cfg.gate.margin = env.margin
    cfg.promote = promote
    cfg.mlflow_tracking_uri = cfg.mlflow_tracking_uri or env.mlflow_tracking_uri
    return cfg


def _load_kb(kb: Path | None) -> list[tuple[str, str]] | None:
    if kb is None:
        return None
    from serving.knowledge import load_dstc

    return [(o.id, o.text) for o in load_dstc(kb).knowledge]


def _train(
    component: str,
    snapshot: str | None,
    watermark: str | None,
    kb: Path | None,
    config_file: Path | None,
    max_steps: int | None,
    epochs: float | None,
    margin: float | None,
    promote: bool,
) -> None:
    from trainers.cycle import run_cycle
    from trainers.registry import RegistryError
    from trainers.retriever import NoTrainingData
    from trainers.snapshot import SnapshotError

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    cfg = _cycle_config(config_file, max_steps, epochs, margin, promote)
    try:
        result = run_cycle(
            component,
            settings=settings,
            registry=_registry(settings, create_topics=True),
            config=cfg,
            kb=_load_kb(kb),
            snapshot_id=snapshot,
            watermark=datetime.fromisoformat(watermark) if watermark else None,
            on_stage=lambda msg: console.print(f"[cyan]{component}[/cyan] {msg}"),
        )
    except (NoTrainingData, SnapshotError, RegistryError) as exc:
        raise _fail(exc) from exc
    table = Table("metric", "serving", "candidate")
    for k, v in result.metrics.items():
        base = result.baseline.get(k)
        table.add_row(k, "" if base is None else f"{base:.4f}", f"{v:.4f}")
    console.print(table)
    color = "green" if result.action.value == "PROMOTED" else "yellow"
    console.print(
        f"[{color}]{result.action.value}[/{color}] {result.version}: {result.decision.reason}"
    )
    console.print(f"artifact {result.artifact_uri}; plot {result.plot}")
    console.print(
        f"trained {result.train.examples} examples in {result.train.seconds:.1f}s "
        f"({result.train.examples_per_s:.1f}/s); cycle {result.seconds['total']:.1f}s"
    )


def _train_command(component: str) -> None:
    def command(
        snapshot: str = typer.Option(None, help="retrain on this recorded snapshot id"),
        watermark: str = typer.Option(None, help="only shards sealed up to this ISO time"),
        kb: Path = typer.Option(
            None, help="DSTC-format dataset dir whose knowledge is the eval KB"
        ),
        config: Path = typer.Option(None, help="YAML trainer config (see trainers/config.py)"),
        max_steps: int = typer.Option(None, help="optimizer steps (overrides epochs)"),
        epochs: float = typer.Option(None, help="passes over the train rows"),
        margin: float = typer.Option(None, help="promotion gate margin"),
        promote: bool = typer.Option(True, help="promote when the gate passes"),
    ) -> None:
        _train(component, snapshot, watermark, kb, config, max_steps, epochs, margin, promote)

    command.__doc__ = f"Snapshot -> train the {component} -> evaluate -> gate -> register/promote."
    train_app.command(component)(command)


for _member in Component:
    _train_command(_member.slug)


# --- aitl trainers --------------------------------------------------------------------
@trainers_app.command("start")
def trainers_start(
    every_examples: int = typer.Option(None, help="cycle after this many new train rows"),
    every_minutes: float = typer.Option(None, help="cycle at least this often (when new rows)"),
    components: str = typer.Option(None, help="comma-separated components to train"),
    kb: Path = typer.Option(None, help="DSTC-format dataset dir whose knowledge is the eval KB"),
    config: Path = typer.Option(None, help="YAML trainer config"),
) -> None:
    """Watch sealed shards and run cycles until interrupted."""
    from trainers.config import TrainerSettings
    from trainers.service import CycleTrigger, TrainerService, parse_components

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    env = TrainerSettings()
    trigger = CycleTrigger(
        parse_components(components or env.components),
        every_examples=every_examples if every_examples is not None else env.every_examples,
        every_minutes=every_minutes if every_minutes is not None else env.every_minutes,
    )
    cfg = _cycle_config(config, None, None, None, True)
    service = TrainerService(
        settings, _registry(settings, create_topics=True), trigger, cfg, kb=_load_kb(kb)
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(
        f"trainer service: every {trigger.every_examples} rows or {trigger.every_minutes} min "
        f"for {', '.join(c.slug for c in trigger.components)}"
    )
    try:
        service.run(stop)
    except KeyboardInterrupt:
        stop.set()
    console.print(f"stopped after {len(service.results)} cycles")
