"""The benchmark's moving parts: processors on a topic namespace, an annotated replay
through them, the verdicts they published, and training straight from their shards.

Every annotation of the benchmark goes through the real broker and the real processors
(join, Virtual Judge, redaction, temporal split, sealing). Two processor deployments can
read the same topics: the judge ablation runs one with the Virtual Judge and one without
(``AITL_PROCESSORS_JUDGE=none``) on the *same* annotations, each with its own consumer
group, changelogs and shard store, so the two sides differ in the judge and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aitl.flywheel.demo import wait_for_shards
from aitl.flywheel.judging import scrape_judge
from aitl.flywheel.stack import Service, Stack
from aitl.kafka_local import free_port
from kernel import events as ev
from kernel.shards import ShardStore
from serving.knowledge.dataset import KnowledgeObject
from serving.knowledge.indexer import knowledge_events
from streams.admin import ensure_topics
from streams.catalog import Topics
from streams.consumer import EventConsumer
from streams.producer import Publisher

if TYPE_CHECKING:
    from kernel.settings import Settings


@dataclass(frozen=True)
class Processors:
    """One processors deployment: its judge, service, shard store and metrics port."""

    judge: str
    service: Service
    store: str
    metrics_port: int
    settings: Settings


def start_processors(
    stack: Stack,
    run_dir: Path,
    prefix: str,
    judges: Sequence[str],
    period_s: float,
    knowledge: Sequence[KnowledgeObject],
) -> list[Processors]:
    """A topic namespace on the shared broker with the knowledge base published into it,
    and one processors deployment per judge (``rule``, ``none``) reading it."""
    stack.topic_prefix = prefix
    ensure_topics(stack.settings().kafka)
    with Publisher(stack.settings().kafka, producer_name="aitl-benchmark") as pub:
        pub.publish_many(knowledge_events(list(knowledge)))
    out = []
    for judge in judges:
        jdir = run_dir / judge
        port = free_port()
        env = {
            "AITL_SHARD_STORE": str(jdir / "shards"),
            "AITL_CHECKPOINT_STORE": str(jdir / "checkpoints"),
            "AITL_PROCESSORS_JUDGE": judge,
            "AITL_PROCESSORS_SEAL_AGE_S": "5",
            "AITL_PROCESSORS_SPLIT_PERIOD_S": str(period_s),
            "AITL_PROCESSORS_ADOPTION_WAIT_S": "5",
            "AITL_PROCESSORS_APP_NAME": f"processors-{prefix.strip('.')}-{judge}",
            "AITL_METRICS_PORT": str(port),
        }
        service = stack.start(
            f"processors-{prefix.strip('.')}-{judge}", "processors", "start", env=env
        )
        settings = stack.settings().model_copy(
            update={
                "shard_store": str(jdir / "shards"),
                "checkpoint_store": str(jdir / "checkpoints"),
            }
        )
        out.append(Processors(judge, service, str(jdir / "shards"), port, settings))
    return out


def wait_sealed(
    stack: Stack, processors: Sequence[Processors], expected_min: int
) -> dict[str, dict[str, int]]:
    """Sealed rows per deployment, once each has stopped growing."""
    return {
        p.judge: wait_for_shards(
            stack, expected_min=expected_min, settle_s=12, timeout_s=900, store_root=p.store
        )
        for p in processors
    }


def judge_summary(processors: Processors) -> dict[str, Any] | None:
    """What the deployment's judge did, read from its ``/metrics`` as an SRE would."""
    return scrape_judge(f"http://127.0.0.1:{processors.metrics_port}/metrics")


@dataclass(frozen=True)
class Verdicts:
    """The verdicts one judge published, by annotation event id."""

    accepted: dict[str, bool]
    weight: dict[str, float]

    def quality(self, corrupted: set[str]) -> dict[str, float]:
        """Precision and recall at catching the annotations the simulator corrupted (the
        paper's judge-vs-expert check), counting a rejection as a catch. Annotations the
        judge never saw (none, normally) are left out."""
        seen = set(self.accepted)
        bad = corrupted & seen
        rejected = {k for k, ok in self.accepted.items() if not ok}
        caught = rejected & bad
        weights_bad = [self.weight[k] for k in bad]
        weights_good = [self.weight[k] for k in seen - bad]
        return {
            "precision": len(caught) / len(rejected) if rejected else 0.0,
            "recall": len(caught) / len(bad) if bad else 0.0,
            "rejected": float(len(rejected)),
            "corrupted": float(len(bad)),
            "annotations": float(len(seen)),
            "mean_weight_corrupted": sum(weights_bad) / len(weights_bad) if weights_bad else 0.0,
            "mean_weight_clean": sum(weights_good) / len(weights_good) if weights_good else 0.0,
        }


def read_verdicts(settings: Settings, judge_name: str, expected: int) -> Verdicts:
    """Every verdict of ``judge_name`` on the namespace's verdict topic (both deployments
    of an ablation publish there; the verdict names its judge)."""
    topic = Topics(settings.kafka).name("judge.verdicts")
    accepted: dict[str, bool] = {}
    weight: dict[str, float] = {}
    group = f"aitl-bench-verdicts-{time.monotonic_ns()}"
    deadline = time.monotonic() + 120
    overrides: dict[str, Any] = {"auto.offset.reset": "earliest"}
    with EventConsumer(settings.kafka, group, [topic], **overrides) as c:
        while time.monotonic() < deadline:
            batch = c.poll(2000, 1.0)
            for d in batch.events:
                v = d.event
                if isinstance(v, ev.JudgeVerdict) and v.judge_name == judge_name:
                    accepted[str(v.annotation_event_id)] = v.accepted
                    weight[str(v.annotation_event_id)] = v.weight
            if not batch.events and len(accepted) >= expected and c.at_end():
                break
    return Verdicts(accepted, weight)


def window_clock(
    windows: Sequence[int], period_s: float, now: float | None = None
) -> Callable[[int, int], datetime]:
    """Simulated time for a replay in windows: window ``w`` is exactly split period ``w``
    (aligned to the processors' period boundaries) and its ``n`` cases are spread evenly
    over it, so the processors' temporal eval slice is the last 10% of every window's
    conversations, however fast the replay runs. Returns ``clock(window, index)``."""
    from datetime import UTC

    start = ((now or time.time()) // period_s - len(windows) - 1) * period_s

    def clock(w: int, i: int) -> datetime:
        step = period_s / max(windows[w], 1)
        return datetime.fromtimestamp(start + w * period_s + i * step, UTC)

    return clock


def rows_by_split(store_root: str, component: str) -> Mapping[str, list[dict[str, Any]]]:
    """The sealed rows of one component, by split (a snapshot of everything sealed)."""
    from trainers.snapshot import read_split, rows_of, take_snapshot

    store = ShardStore(store_root)
    snap = take_snapshot(store, component)
    return {s: rows_of(read_split(store, snap, s)) for s in ("train", "eval")}
