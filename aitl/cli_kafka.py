"""``aitl kafka start|stop|status``: the local single-node broker, as settings describe it."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from aitl.kafka_local import LocalKafka, LocalKafkaError
from kernel.settings import load_settings

app = typer.Typer(help="Run the local Apache Kafka broker (KRaft, one node).", no_args_is_help=True)
console = Console()


def _local_kafka() -> LocalKafka:
    settings = load_settings().kafka
    java_home = os.environ.get("JAVA_HOME")  # the JVM's own convention, read at the entrypoint
    return LocalKafka.from_settings(
        settings,
        java_home=Path(java_home) if java_home else None,
        on_step=lambda step: console.print(f"[dim]•[/dim] {step}"),
    )


@app.command()
def start(
    wait: float = typer.Option(90, help="seconds to wait for the broker to answer"),
) -> None:
    """Start the broker (resolving its jars the first time) and print its bootstrap."""
    if load_settings().kafka.bootstrap:
        console.print("[yellow]AITL_KAFKA_BOOTSTRAP is set: aitl clients use that broker[/]")
    kafka = _local_kafka()
    try:
        bootstrap = kafka.start(wait_s=wait)
    except LocalKafkaError as exc:
        console.print(f"[red]Kafka did not start:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"[green]Kafka {kafka.version} ready[/green] at [bold]{bootstrap}[/bold]")


@app.command()
def stop(
    timeout: float = typer.Option(30, help="seconds of clean shutdown before SIGKILL"),
) -> None:
    """Stop the broker; its data stays in the data dir."""
    try:
        was_running = _local_kafka().stop(timeout_s=timeout)
    except LocalKafkaError as exc:
        console.print(f"[red]Kafka did not stop:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print("[green]Kafka stopped[/green]" if was_running else "Kafka was not running")


@app.command()
def status() -> None:
    """Show whether the broker runs, its pid, bootstrap, version and data dir (exit 1: stopped)."""
    info = _local_kafka().status()
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
    if not info.running:
        raise typer.Exit(1)


@app.command()
def jars() -> None:
    """Resolve the broker's jars from Maven Central into the cache (once)."""
    try:
        lib = _local_kafka().ensure_jars()
    except LocalKafkaError as exc:
        console.print(f"[red]could not resolve the Kafka jars:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"[green]Kafka jars ready[/green] in {lib}")
