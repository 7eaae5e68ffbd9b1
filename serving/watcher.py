"""Hot-swap: follow the model lifecycle topic and hand each serving-version change to a
deployment's ``reconfigure``.

Every replica runs one watcher for its own component, so all replicas swap (a handle
call would reach only one) and a replica that restarts folds the compacted topic from
the start and comes up on the version that serves now. The deployment loads the new
weights beside the old ones and swaps a reference, so requests never wait on a load.

With a lifecycle key, an event whose signature does not verify (forged, or written
without the key) is ignored, and so is a promotion, read once the topic was caught up,
that is not newer than the last promotion or rollback of its component (a replayed old
record); both are counted in ``aitl_serving_lifecycle_rejected_total``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from prometheus_client import Counter, Gauge

from kernel.checkpoints import ModelSpec
from kernel.events import Component, Event, LifecycleAction, ModelLifecycle
from kernel.lifecycle import STOCK, RegistryState, fold, verify
from kernel.settings import KafkaSettings
from serving._internal import TopicFollower

log = logging.getLogger(__name__)

PROMOTED_AT = Gauge(
    "aitl_model_promoted_timestamp_seconds",
    "Event time of the promotion whose version serves now (from the lifecycle topic)",
    ["component"],
)
SWAP_FAILURES = Counter(
    "aitl_serving_swap_failures_total",
    "Versions a replica refused to load (reason: checksum, or load); it keeps the old one",
    ["component", "reason"],
)
LIFECYCLE_REJECTED = Counter(
    "aitl_serving_lifecycle_rejected_total",
    "Lifecycle events a replica ignored (reason: forged, a signature that does not verify; "
    "replayed, a promotion older than the last one applied)",
    ["component", "reason"],
)
EVAL_METRIC = Gauge(
    "aitl_model_eval_metric",
    "Eval-slice metrics of the serving version, from its lifecycle event",
    ["component", "metric"],
)


def export_state(state: RegistryState, component: Component) -> None:
    """Publish when the serving version was promoted and its eval metrics."""
    name = component.slug
    served = state.serving_state(component)
    if served is None or served.event is None:
        return
    PROMOTED_AT.labels(name).set(served.event.envelope.event_time.timestamp())
    for metric, value in served.metrics.items():
        EVAL_METRIC.labels(name, metric).set(value)


def serving_spec(state: RegistryState, component: Component) -> ModelSpec | None:
    """The version that should serve ``component``, or None if it cannot be resolved.

    No promotion yet (or a rollback to ``stock``) means the stock model.
    """
    version = state.serving.get(component)
    if version is None or version == STOCK:
        return ModelSpec()
    known = state.serving_state(component)
    if known is None or not known.artifact_uri:
        log.error(
            "%s version %s serves but has no artifact_uri; keeping the current one",
            component.value,
            version,
        )
        return None
    return ModelSpec(version, known.artifact_uri, known.artifact_sha256)


def changes(
    events: Iterable[ModelLifecycle], component: Component, current: ModelSpec | None
) -> ModelSpec | None:
    """The spec to swap to after these events, or None when nothing changes."""
    spec = serving_spec(fold(events), component)
    return spec if spec is not None and spec != current else None


class LifecycleWatcher(TopicFollower):
    """A thread calling ``on_change(spec)`` whenever ``component``'s serving version moves.

    ``on_change`` runs on the watcher thread; if it raises, the old version keeps serving,
    the error is kept in ``last_error`` and the next lifecycle event retries. A Kafka
    outage leaves the current version serving; the watcher reconnects and folds again.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        component: Component,
        on_change: Callable[[ModelSpec], None],
        *,
        current: ModelSpec | None = None,
        poll_s: float = 0.5,
        key: bytes | None = None,
    ) -> None:
        name = f"serving-{component.slug}-lifecycle"
        super().__init__(kafka, "models", name, batch=200, poll_s=poll_s)
        self.component = component
        self.on_change = on_change
        self.current = current
        self.events: list[ModelLifecycle] = []
        self.swaps = 0
        self.last_error: BaseException | None = None
        self.key = key
        self.rejected = 0
        self._seen: set[str] = set()
        self._newest: datetime | None = None  # newest PROMOTED/ROLLED_BACK applied
        self._caught_up = False

    def on_connect(self) -> None:
        self.events = []  # the compacted topic is replayed from its start
        self._seen, self._newest, self._caught_up = set(), None, False

    def on_idle(self) -> None:
        self._caught_up = True  # from now on, records arrive in the order they were written

    def handle(self, events: Sequence[Event]) -> None:
        fresh = [
            e
            for e in events
            if isinstance(e, ModelLifecycle)
            and e.component is self.component
            and self._admissible(e)
        ]
        if fresh:
            self.events.extend(fresh)
            self._maybe_swap()

    def _admissible(self, e: ModelLifecycle) -> bool:
        """Signed with the key, and not a replay of a record already applied or outdated.

        Before the topic is caught up, partitions are read in no particular order, so
        an older promotion is no sign of a replay then (``fold`` orders by event time)."""
        reason = None
        at = e.envelope.event_time
        if not verify(e, self.key):
            reason = "forged"
        elif str(e.envelope.event_id) in self._seen or (
            self._caught_up
            and e.action is LifecycleAction.PROMOTED
            and self._newest is not None
            and at <= self._newest
        ):
            reason = "replayed"
        if reason is not None:
            LIFECYCLE_REJECTED.labels(self.component.slug, reason).inc()
            self.rejected += 1
            log.warning(
                "ignored a %s %s event for %s version %s (event id %s)",
                reason,
                e.action.value,
                self.component.value,
                e.version,
                e.envelope.event_id,
            )
            return False
        self._seen.add(str(e.envelope.event_id))
        if e.action in (LifecycleAction.PROMOTED, LifecycleAction.ROLLED_BACK) and (
            self._newest is None or at > self._newest
        ):
            self._newest = at
        return True

    def _maybe_swap(self) -> None:
        export_state(fold(self.events), self.component)
        spec = changes(self.events, self.component, self.current)
        if spec is None:
            return
        try:
            self.on_change(spec)
        except Exception as exc:
            log.exception("swap of %s to %s failed", self.component.value, spec.version)
            self.last_error = exc
            return
        self.current = spec
        self.swaps += 1
