"""``aitl processors``: run the stream-processor worker (context join, Virtual Judge, PII
redaction, training shards). Several workers with the same settings split the partitions.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from kernel.settings import Settings, load_settings
from processors.settings import ProcessorSettings

app = typer.Typer(help="The stream processors (Faust).", no_args_is_help=True)
console = Console(stderr=True)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _processor_settings(**overrides: object) -> ProcessorSettings:
    base = ProcessorSettings()
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=changes) if changes else base


@app.command("start")
def start(
    judge: str = typer.Option(
        None, help="rule | llm | composite | none (default: AITL_PROCESSORS_JUDGE)"
    ),
    metrics_port: int = typer.Option(
        None, help="/metrics port (default AITL_METRICS_PORT, 0: off)"
    ),
    seal_rows: int = typer.Option(None, help="seal a shard at this many rows"),
    seal_age_s: float = typer.Option(None, help="seal a non-empty shard this old (seconds)"),
    create_topics: bool = typer.Option(True, help="create missing catalog topics first"),
    loglevel: str = typer.Option("INFO", help="worker log level"),
) -> None:
    """Run one processor worker in the foreground until SIGTERM/SIGINT."""
    from prometheus_client import start_http_server

    from processors.app import Processor
    from streams.admin import ensure_topics

    settings: Settings = load_settings()
    ps = _processor_settings(judge=judge, seal_rows=seal_rows, seal_age_s=seal_age_s)
    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    if create_topics:
        report = ensure_topics(settings.kafka)
        for line in report.drift:
            console.print(f"[yellow]topic drift: {line}[/yellow]")
    port = settings.metrics_port if metrics_port is None else metrics_port
    if port:
        start_http_server(port)
        console.print(f"metrics on http://0.0.0.0:{port}/metrics")
    processor = Processor(settings, ps)
    processor.prepare()
    code = 0
    try:
        processor.worker(loglevel=loglevel).execute_from_commandline()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        processor.close()
    crashed = processor.app.crash_reason
    if crashed is not None:
        console.print(f"[red]processor crashed: {crashed!r}[/red]")
        code = code or 1
    sys.exit(code)


@app.command("settings")
def show_settings() -> None:
    """Print the processor settings in effect (secrets masked)."""
    console.print_json(ProcessorSettings().model_dump_json())


def main() -> None:
    app(prog_name="aitl processors")


if __name__ == "__main__":
    main()
