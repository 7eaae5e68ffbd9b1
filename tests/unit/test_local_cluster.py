"""The local cluster's settings and broker configs, and the fault hooks when unset (no JVM)."""

from __future__ import annotations

from pathlib import Path

from aitl.kafka_local import LocalKafkaCluster
from kernel.settings import KafkaSettings
from processors.faults import Faults
from processors.settings import ProcessorSettings
from streams.admin import min_insync
from streams.config import bootstrap


def test_a_local_cluster_replicates_three_times_and_clients_bootstrap_from_every_node() -> None:
    settings = KafkaSettings(local_brokers=3, local_port=19092)
    assert settings.replication_factor == 3
    assert bootstrap(settings) == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert min_insync(settings) == {"min.insync.replicas": "2"}
    assert KafkaSettings().replication_factor == 1 and min_insync(KafkaSettings()) == {}
    assert KafkaSettings(local_brokers=3, replication_factor=2).replication_factor == 2
    assert KafkaSettings(local_brokers=3, bootstrap="kafka:9092").replication_factor == 1


def test_every_node_votes_in_one_static_quorum_with_replicated_internal_topics(
    tmp_path: Path,
) -> None:
    cluster = LocalKafkaCluster.from_settings(
        KafkaSettings(local_dir=tmp_path, local_port=19092, local_controller_port=19093), 3
    )
    props = [_props(node._server_properties()) for node in cluster.nodes]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert {p["listeners"].split(",")[0] for p in props} == {
        f"PLAINTEXT://127.0.0.1:{port}" for port in (19092, 19094, 19096)
    }
    for p in props:
        assert p["offsets.topic.replication.factor"] == p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == p["transaction.state.log.min.isr"] == "2"
    assert len({node.cluster_id for node in cluster.nodes}) == 1
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"


def test_without_a_fault_point_the_hooks_do_nothing() -> None:
    faults = Faults(ProcessorSettings())
    for point in ("after_parquet_rename", "after_manifest", "in_revoke"):
        faults.hit(point)  # still alive
    faults.store_stage("parquet_renamed")
    assert Faults(ProcessorSettings(fault_point="after_manifest")).point == "after_manifest"


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    return {key: value for key, value in pairs}
