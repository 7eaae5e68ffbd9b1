"""Kubernetes manifests generated from the code, so there is one source of truth.

* ``deploy/k8s/kafka-topics.yaml``: a Strimzi ``KafkaTopic`` per topic of the catalog
  (``streams/catalog.py``): name, partitions, replicas and broker configs.
* ``deploy/k8s/prometheus-rules.yaml``: a prometheus-operator ``PrometheusRule`` holding
  the alert rules of ``deploy/prometheus/rules/`` (the file ``promtool`` tests).

``aitl deploy k8s-topics`` / ``k8s-rules`` write them; ``--check`` (and a unit test)
fail when a committed file no longer matches what the code would generate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from kernel.settings import KafkaSettings
from streams.catalog import Topics

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deploy" / "k8s"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
TOPICS_FILE = K8S_DIR / "kafka-topics.yaml"
RULES_FILE = K8S_DIR / "prometheus-rules.yaml"

# What the committed manifests are generated with (a production-shaped cluster).
CLUSTER = "aitl"
NAMESPACE = "aitl"
PREFIX = "aitl."
PARTITIONS = 6
REPLICAS = 3
LABELS = {"app.kubernetes.io/part-of": "aitl", "app.kubernetes.io/managed-by": "aitl-deploy"}

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def resource_name(topic: str) -> str:
    """A valid Kubernetes name for a topic (the real name stays in ``spec.topicName``)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", topic.lower()).strip(".-")[:253]
    if not _DNS_SUBDOMAIN.match(name):
        raise ValueError(f"topic {topic!r} gives no valid Kubernetes name")
    return name


def kafka_topics(
    *,
    prefix: str = PREFIX,
    partitions: int = PARTITIONS,
    replicas: int = REPLICAS,
    cluster: str = CLUSTER,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """One Strimzi ``KafkaTopic`` per catalog topic.

    Besides the catalog's own configs, ``min.insync.replicas`` is set to
    ``replicas - 1`` (at least 1): with the producers' ``acks=all`` an acknowledged event
    then survives the loss of one broker.
    """
    settings = KafkaSettings.model_construct(
        topic_prefix=prefix, default_partitions=partitions, replication_factor=replicas
    )
    topics = Topics(settings)
    docs = []
    for name, spec in topics:
        config: dict[str, Any] = dict(spec.configs())
        config["min.insync.replicas"] = str(max(1, replicas - 1))
        docs.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                "metadata": {
                    "name": resource_name(name),
                    "namespace": namespace,
                    "labels": {"strimzi.io/cluster": cluster, **LABELS},
                    "annotations": {"aitl.io/description": spec.description},
                },
                "spec": {
                    "topicName": name,
                    "partitions": topics.partitions(spec),
                    "replicas": replicas,
                    "config": config,
                },
            }
        )
    return docs


def prometheus_rule(
    rules_dir: Path = RULES_DIR, *, name: str = "aitl", namespace: str = NAMESPACE
) -> dict[str, Any]:
    """The alert rule files of ``rules_dir`` as one ``PrometheusRule``."""
    groups: list[Any] = []
    for path in sorted(rules_dir.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": namespace,
            # the label kube-prometheus-stack's default ruleSelector matches
            "labels": {"release": "prometheus", **LABELS},
        },
        "spec": {"groups": groups},
    }


def render(docs: Iterable[dict[str, Any]], *, source: str, command: str) -> str:
    """Multi-document YAML with a header that says where it comes from."""
    header = (
        f"# GENERATED from {source} by `{command}`; do not edit.\n"
        "# A unit test fails when this file and the code disagree.\n"
    )
    body = "---\n".join(
        yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100) for doc in docs
    )
    return header + "---\n" + body


def topics_manifest(**options: Any) -> str:
    cmd = "aitl deploy k8s-topics"
    return render(kafka_topics(**options), source="streams/catalog.py", command=cmd)


def rules_manifest(rules_dir: Path = RULES_DIR) -> str:
    return render(
        [prometheus_rule(rules_dir)],
        source="deploy/prometheus/rules/",
        command="aitl deploy k8s-rules",
    )


def drift(path: Path, expected: str) -> str | None:
    """None when ``path`` holds exactly ``expected``, else a one-line reason."""
    if not path.is_file():
        return f"{path} is missing"
    if path.read_text() != expected:
        return f"{path} differs from what the code generates"
    return None
