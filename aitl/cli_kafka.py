"""``aitl kafka start|stop|status``: the local broker (or, with ``--brokers 3``, a local
three-node cluster), as settings describe it."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from aitl.kafka_local import KafkaStatus, LocalKafka, LocalKafkaCluster, LocalKafkaError
from kernel.settings import load_settings

app = typer.Typer(
    help="Run the local Apache Kafka broker (KRaft; one node, or a cluster with --brokers).",
    no_args_is_help=True,
)
console = Console()


BROKERS = typer.Option(
    None, min=1, help="nodes of the local cluster (default: AITL_KAFKA_LOCAL_BROKERS, 1)"
)


def _local_kafka(brokers: int | None = None) -> LocalKafka | LocalKafkaCluster:
    settings = load_settings().kafka
    java_home = os.environ.get("JAVA_HOME")  # the JVM's own convention, read at the entrypoint
    kwargs = {
        "java_home": Path(java_home) if java_home else None,
        "on_step": lambda step: console.print(f"[dim]•[/dim] {step}"),
    }
    n = brokers or settings.local_brokers
    if n > 1:
        return LocalKafkaCluster.from_settings(settings, n, **kwargs)
    return LocalKafka.from_settings(settings, **kwargs)


@app.command()
def start(
    wait: float = typer.Option(90, help="seconds to wait for the broker to answer"),
    brokers: int | None = BROKERS,
) -> None:
    """Start the broker (resolving its jars the first time) and print its bootstrap."""
    settings = load_settings().kafka
    if settings.bootstrap:
        console.print("[yellow]AITL_KAFKA_BOOTSTRAP is set: aitl clients use that broker[/]")
    elif brokers and brokers != settings.local_brokers:
        console.print(
            f"[yellow]export AITL_KAFKA_LOCAL_BROKERS={brokers}[/]: aitl clients then reach "
            f"all {brokers} nodes and replicate topics {min(3, brokers)} times"
        )
    kafka = _local_kafka(brokers)
    try:
        bootstrap = kafka.start(wait_s=wait)
    except LocalKafkaError as exc:
        console.print(f"[red]Kafka did not start:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"[green]Kafka {kafka.version} ready[/green] at [bold]{bootstrap}[/bold]")


@app.command()
def stop(
    timeout: float = typer.Option(30, help="seconds of clean shutdown before SIGKILL"),
    brokers: int | None = BROKERS,
) -> None:
    """Stop the broker; its data stays in the data dir."""
    try:
        was_running = _local_kafka(brokers).stop(timeout_s=timeout)
    except LocalKafkaError as exc:
        console.print(f"[red]Kafka did not stop:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print("[green]Kafka stopped[/green]" if was_running else "Kafka was not running")


@app.command()
def status(brokers: int | None = BROKERS) -> None:
    """Show whether the broker runs, its pid, bootstrap, version and data dir (exit 1: stopped)."""
    kafka = _local_kafka(brokers)
    infos = kafka.status() if isinstance(kafka, LocalKafkaCluster) else [kafka.status()]
    for info in infos:
        _print_status(info)
    if not all(info.running for info in infos):
        raise typer.Exit(1)


def _print_status(info: KafkaStatus) -> None:
    table = Table(show_header=False, box=None)
    state = "[green]running[/green]" if info.running else "[red]stopped[/red]"
    for key, value in (
        ("state", state),
        ("pid", str(info.pid or "-")),
        ("bootstrap", info.bootstrap),
        ("version", info.version),
        ("data dir", str(info.data_dir)),
    ):
        table.add_row(f"[bold]{key}[/bold]", value)
    console.print(table)


@app.command()
def jars() -> None:
    """Resolve the broker's jars from Maven Central into the cache (once)."""
    try:
        lib = _local_kafka().ensure_jars()
    except LocalKafkaError as exc:
        console.print(f"[red]could not resolve the Kafka jars:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"[green]Kafka jars ready[/green] in {lib}")
