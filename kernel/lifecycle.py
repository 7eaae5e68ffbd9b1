"""Model lifecycle: the contract between trainers (who register/promote) and serving
(which hot-swaps). Lifecycle events on the compacted ``models`` topic are the source of
truth; this module folds them into state.

Semantics of each event (key ``COMPONENT:version``, so compaction keeps each version's
last state):

* ``REGISTERED``: a candidate exists at ``artifact_uri`` with its metrics and lineage.
* ``REJECTED``: the promotion gate refused it (``reason`` says why); it stays listed.
* ``PROMOTED``: it serves from now on; ``previous_version`` is what served before.
* ``ROLLED_BACK``: it no longer serves; ``previous_version`` (restored) serves again.

The serving version of a component is decided by its newest PROMOTED/ROLLED_BACK event,
which survives compaction because each version keeps its own last state.

Integrity: with a lifecycle key (``AITL_LIFECYCLE_KEY``), whoever writes an event signs
it (:func:`sign`: HMAC-SHA256 over :func:`canonical`), and serving applies only events
that :func:`verify`; a write to the topic without the key cannot change what serves.

Every checkpoint directory holds ``aitl_model.json``::

    {"component": "retriever", "kind": "sentence-transformer", "version": "...",
     "base_model": "...", "created_at": "..."}

with ``kind`` one of ``sentence-transformer`` (retriever), ``cross-encoder`` /
``embedding`` / ``causal-lm-judge`` (ranker) and ``causal-lm`` (generator; a LoRA
adapter lives in ``adapter/`` beside it when ``adapter`` is true).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kernel.events import Component, LifecycleAction, ModelLifecycle

MODEL_CARD = "aitl_model.json"
STOCK = "stock"


@dataclass
class VersionState:
    component: Component
    version: str
    status: LifecycleAction
    artifact_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    event: ModelLifecycle | None = None
    artifact_sha256: str = ""  # recorded at registration; serving checks it at load


@dataclass
class RegistryState:
    """Every known version per component and which one serves."""

    versions: dict[Component, dict[str, VersionState]] = field(default_factory=dict)
    serving: dict[Component, str] = field(default_factory=dict)
    history: dict[Component, list[str]] = field(default_factory=dict)  # serving order

    def serving_state(self, component: Component) -> VersionState | None:
        version = self.serving.get(component)
        if version is None:
            return None
        return self.versions.get(component, {}).get(version)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def canonical(event: ModelLifecycle) -> bytes:
    """The signed content: every field but the signature, as sorted compact JSON.

    Fields are named one by one (not the whole Avro record), so a field added to the
    schema later does not change the bytes of events signed before it."""
    env = event.envelope
    content = {
        "event_id": str(env.event_id),
        "event_time_ms": (env.event_time - _EPOCH) // _MS,
        "tenant_id": env.tenant_id,
        "producer": env.producer,
        "component": event.component.value,
        "version": event.version,
        "action": event.action.value,
        "artifact_uri": event.artifact_uri,
        "artifact_sha256": event.artifact_sha256,
        "base_model": event.base_model,
        "snapshot_id": event.snapshot_id,
        "judge_version": event.judge_version,
        "metrics": event.metrics,
        "previous_version": event.previous_version,
        "reason": event.reason,
        "config_json": event.config_json,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def signature(event: ModelLifecycle, key: bytes) -> str:
    return hmac.new(key, canonical(event), hashlib.sha256).hexdigest()


def sign(event: ModelLifecycle, key: bytes | None) -> ModelLifecycle:
    """The event with its signature; unchanged without a key (a laptop without one)."""
    if not key:
        return event
    env = event.envelope
    if env.event_time.microsecond % 1000:  # Avro keeps milliseconds: sign what is read back
        at = env.event_time.replace(microsecond=env.event_time.microsecond // 1000 * 1000)
        event = event.model_copy(update={"envelope": env.model_copy(update={"event_time": at})})
    return event.model_copy(update={"signature": signature(event, key)})


def verify(event: ModelLifecycle, key: bytes | None) -> bool:
    """True if the event was signed with ``key`` (always, when no key is configured)."""
    if not key:
        return True
    return hmac.compare_digest(event.signature, signature(event, key))


def fold(events: Iterable[ModelLifecycle]) -> RegistryState:
    """Fold lifecycle events (in any order) into registry state, by event time."""
    state = RegistryState()
    ordered = sorted(
        events, key=lambda e: (e.envelope.event_time, e.action != LifecycleAction.REGISTERED)
    )
    for e in ordered:
        comp = state.versions.setdefault(e.component, {})
        prior = comp.get(e.version)
        comp[e.version] = VersionState(
            component=e.component,
            version=e.version,
            status=e.action,
            artifact_uri=e.artifact_uri or (prior.artifact_uri if prior else ""),
            metrics=e.metrics or (prior.metrics if prior else {}),
            event=e,
            artifact_sha256=e.artifact_sha256 or (prior.artifact_sha256 if prior else ""),
        )
        hist = state.history.setdefault(e.component, [])
        if e.action is LifecycleAction.PROMOTED:
            state.serving[e.component] = e.version
            hist.append(e.version)
        elif (
            e.action is LifecycleAction.ROLLED_BACK
            and state.serving.get(e.component, e.version) == e.version
        ):
            if e.previous_version:
                state.serving[e.component] = e.previous_version
                hist.append(e.previous_version)
            else:
                state.serving.pop(e.component, None)
    return state


def previous_serving(state: RegistryState, component: Component) -> str | None:
    """The version that served before the current one (the rollback target)."""
    current = state.serving.get(component)
    for version in reversed(state.history.get(component, [])):
        if (
            version != current
            and state.versions[component][version].status is not LifecycleAction.ROLLED_BACK
        ):
            return version
    return None


def write_model_card(directory: Path, **card: Any) -> Path:
    path = directory / MODEL_CARD
    path.write_text(json.dumps(card, indent=2, sort_keys=True))
    return path


def read_model_card(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MODEL_CARD
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not an aitl checkpoint: {MODEL_CARD} is missing")
    card: dict[str, Any] = json.loads(path.read_text())
    return card
