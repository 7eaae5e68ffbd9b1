"""``aitl deploy k8s-topics|k8s-rules``: write (or check) the generated Kubernetes manifests."""

from __future__ import annotations

import difflib
from pathlib import Path

import typer
from rich.console import Console

from aitl import k8s

app = typer.Typer(help="Deployment manifests generated from the code.", no_args_is_help=True)
console = Console()


def _write_or_check(path: Path, text: str, check: bool) -> None:
    if check:
        reason = k8s.drift(path, text)
        if reason is None:
            console.print(f"[green]{path} is up to date[/green]")
            return
        console.print(f"[red]{reason}[/red]", highlight=False)
        if path.is_file():
            diff = difflib.unified_diff(
                path.read_text().splitlines(),
                text.splitlines(),
                str(path),
                "generated",
                lineterm="",
            )
            console.print("\n".join(diff), markup=False, highlight=False)
        console.print("regenerate it with the same command without --check")
        raise typer.Exit(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    console.print(f"[green]wrote {path}[/green]")


@app.command("k8s-topics")
def k8s_topics(
    out: Path = typer.Option(k8s.TOPICS_FILE, help="where to write the KafkaTopic manifests"),
    prefix: str = typer.Option(k8s.PREFIX, help="topic name prefix (AITL_KAFKA_TOPIC_PREFIX)"),
    partitions: int = typer.Option(k8s.PARTITIONS, help="partitions of topics without their own"),
    replicas: int = typer.Option(k8s.REPLICAS, help="replicas of every topic"),
    cluster: str = typer.Option(k8s.CLUSTER, help="the Strimzi Kafka cluster's name"),
    namespace: str = typer.Option(k8s.NAMESPACE, help="namespace of the KafkaTopic resources"),
    check: bool = typer.Option(False, "--check", help="exit 1 if the file differs; write nothing"),
) -> None:
    """Strimzi KafkaTopic manifests for every topic of the catalog."""
    text = k8s.topics_manifest(
        prefix=prefix,
        partitions=partitions,
        replicas=replicas,
        cluster=cluster,
        namespace=namespace,
    )
    _write_or_check(out, text, check)


@app.command("k8s-rules")
def k8s_rules(
    out: Path = typer.Option(k8s.RULES_FILE, help="where to write the PrometheusRule"),
    check: bool = typer.Option(False, "--check", help="exit 1 if the file differs; write nothing"),
) -> None:
    """A prometheus-operator PrometheusRule holding deploy/prometheus/rules/."""
    _write_or_check(out, k8s.rules_manifest(), check)
