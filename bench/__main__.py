"""Run benchmarks: ``python -m bench [name ...]`` (default: all available).

Starts a local Kafka broker unless ``AITL_KAFKA_BOOTSTRAP`` points at one, runs each
benchmark module's ``run(bootstrap)``, prints a table and writes
``bench/results/<name>.json``. Baselines are measured in the same run, so the ratios
mean something on a shared, noisy machine.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from aitl.kafka_local import LocalKafka, free_port
from bench import readme

NAMES = ("backbone", "processors", "serving", "trainers", "generator")
RESULTS = Path(__file__).parent / "results"
README = Path(__file__).parent.parent / "README.md"


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flatten(f"{prefix}{k}.", v)]
    return [(prefix.rstrip("."), str(value))]


def main(argv: list[str]) -> int:
    console = Console()
    names = argv or list(NAMES)
    broker = None
    bootstrap = os.environ.get("AITL_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalKafka(Path(tempfile.mkdtemp(prefix="aitl-bench-")), free_port(), free_port())
        with console.status("starting a local Kafka broker"):
            bootstrap = broker.start(wait_s=120)
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = 0
    try:
        for name in names:
            try:
                module = importlib.import_module(f"bench.{name}")
            except ModuleNotFoundError as exc:
                console.print(f"[yellow]{name}: not available ({exc})[/yellow]")
                continue
            with console.status(f"benchmark {name}"):
                started = time.perf_counter()
                try:
                    result = module.run(bootstrap)
                except Exception as exc:  # report and go on with the others
                    console.print(f"[red]{name} failed: {exc!r}[/red]")
                    failed += 1
                    continue
            result["wall_seconds"] = round(time.perf_counter() - started, 1)
            (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
            table = Table("metric", "value", title=f"{name} -> bench/results/{name}.json")
            for key, value in _flatten("", result):
                table.add_row(key, value)
            console.print(table)
    finally:
        if broker is not None:
            broker.stop()
    if readme.update(README):
        console.print(f"README table rewritten from {RESULTS}/*.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
