"""The trainer service (``aitl trainers start``): a cycle every N new examples or T minutes.

It watches shard-sealed events for new *train* rows per component. A component is due
when at least ``every_examples`` new rows were sealed since its last cycle, or when
``every_minutes`` passed and there is at least one new row (no data, no cycle). The
pending counts are rebuilt from the shard store at start (sealed shards not in the
latest version's snapshot), so the events are only a wake-up signal and a restart
loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from kernel.events import Component, ShardSealed
from kernel.settings import Settings
from kernel.shards import ShardStore
from trainers.config import CycleConfig
from trainers.cycle import KB, CycleResult, run_cycle
from trainers.registry import CheckpointStore, Registry, RegistryError, wait_for_topic
from trainers.retriever import NoTrainingData

log = logging.getLogger(__name__)


@dataclass
class CycleTrigger:
    """Pure trigger logic: counts new train rows per component and says who is due."""

    components: Sequence[Component]
    every_examples: int = 500
    every_minutes: float = 60.0
    clock: Callable[[], float] = time.monotonic
    pending: dict[Component, int] = field(default_factory=dict)
    seen: dict[Component, set[str]] = field(default_factory=dict)
    last_cycle: dict[Component, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        now = self.clock()
        for c in self.components:
            self.pending.setdefault(c, 0)
            self.seen.setdefault(c, set())
            self.last_cycle.setdefault(c, now)

    def observe(self, component: Component, shard_id: str, split: str, rows: int) -> None:
        """Count a sealed shard once (replays and the start-up scan overlap)."""
        if component not in self.pending or shard_id in self.seen[component]:
            return
        self.seen[component].add(shard_id)
        if split.lower() == "train":
            self.pending[component] += rows

    def observe_event(self, event: ShardSealed) -> None:
        self.observe(event.component, event.shard_id, event.split.value, event.rows)

    def due(self) -> list[Component]:
        now = self.clock()
        out = []
        for c in self.components:
            if self.pending[c] <= 0:
                continue
            waited = now - self.last_cycle[c] >= self.every_minutes * 60
            if self.pending[c] >= self.every_examples or waited:
                out.append(c)
        return out

    def done(self, component: Component) -> None:
        self.pending[component] = 0
        self.last_cycle[component] = self.clock()


def trained_shards(
    registry: Registry, checkpoints: CheckpointStore, component: Component
) -> set[str]:
    """Shard ids in the snapshot of the component's newest registered version."""
    versions = registry.state().versions.get(component, {})
    newest = max(
        (v for v in versions.values() if v.event is not None and v.event.snapshot_id),
        key=lambda v: v.event.envelope.event_time if v.event else 0,
        default=None,
    )
    if newest is None or newest.event is None or newest.event.snapshot_id is None:
        return set()
    try:
        return set(checkpoints.load_snapshot(newest.event.snapshot_id).shard_ids)
    except RegistryError:
        return set()


def seed_trigger(
    trigger: CycleTrigger, shards: ShardStore, registry: Registry, checkpoints: CheckpointStore
) -> None:
    """Count the sealed shards no registered version has learned from yet."""
    for comp in trigger.components:
        done = trained_shards(registry, checkpoints, comp)
        trigger.seen[comp] |= done
        for m in shards.manifests(comp.slug):
            trigger.observe(comp, m.shard_id, m.split, m.rows)


class TrainerService:
    """Consume shard-sealed events and run cycles when the trigger says so."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        trigger: CycleTrigger,
        config: CycleConfig | None = None,
        *,
        kb: KB | None = None,
        group_id: str = "aitl-trainers",
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.trigger = trigger
        self.config = config or CycleConfig()
        self.kb = kb
        self.group_id = group_id
        self.results: list[CycleResult] = []

    def start_up(self) -> None:
        seed_trigger(
            self.trigger,
            ShardStore(self.settings.shard_store),
            self.registry,
            CheckpointStore(self.settings.checkpoint_store),
        )
        log.info(
            "pending train rows at start: %s", {c.value: n for c, n in self.trigger.pending.items()}
        )

    def run_due(self) -> list[CycleResult]:
        """Run a cycle for every due component (failures are logged, never fatal)."""
        out = []
        for comp in self.trigger.due():
            try:
                out.append(
                    run_cycle(
                        comp,
                        settings=self.settings,
                        registry=self.registry,
                        config=self.config,
                        kb=self.kb,
                    )
                )
            except NoTrainingData as exc:
                log.info("%s: %s", comp.value, exc)
            except Exception:
                log.exception("%s cycle failed; retrying at the next trigger", comp.value)
            self.trigger.done(comp)
        self.results.extend(out)
        return out

    def run(
        self, stop: threading.Event | None = None, max_cycles: int | None = None
    ) -> list[CycleResult]:
        """Serve until ``stop`` is set (or ``max_cycles`` cycles ran)."""
        from streams.catalog import Topics
        from streams.consumer import EventConsumer

        stop = stop or threading.Event()
        self.start_up()
        topic = Topics(self.settings.kafka).for_event(ShardSealed)
        wait_for_topic(self.settings.kafka, topic)
        with EventConsumer(self.settings.kafka, self.group_id, [topic]) as consumer:
            while not stop.is_set():
                batch = consumer.poll(200, 1.0)
                self.observe(d.event for d in batch.events)
                if batch.events or batch.dead:
                    consumer.commit()  # the trigger state is rebuilt from the store on restart
                self.run_due()
                if max_cycles is not None and len(self.results) >= max_cycles:
                    break
        return self.results

    def observe(self, events: Iterable[object]) -> None:
        for event in events:
            if isinstance(event, ShardSealed):
                self.trigger.observe_event(event)


def parse_components(value: str) -> list[Component]:
    """``"retriever,ranker"`` -> [RETRIEVER, RANKER]."""
    return [Component.parse(v) for v in value.split(",") if v.strip()]


__all__ = ["CycleTrigger", "TrainerService", "parse_components", "seed_trigger"]
