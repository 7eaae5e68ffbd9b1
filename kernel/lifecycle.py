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

Every checkpoint directory holds ``aitl_model.json``::

    {"component": "retriever", "kind": "sentence-transformer", "version": "...",
     "base_model": "...", "created_at": "..."}

with ``kind`` one of ``sentence-transformer`` (retriever), ``cross-encoder`` /
``embedding`` / ``causal-lm-judge`` (ranker) and ``causal-lm`` (generator; a LoRA
adapter lives in ``adapter/`` beside it when ``adapter`` is true).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
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
