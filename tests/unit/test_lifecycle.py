from __future__ import annotations

from datetime import timedelta

from kernel.events import Component, Envelope, LifecycleAction, ModelLifecycle
from kernel.lifecycle import fold, previous_serving
from tests.factories import T0

R = Component.RETRIEVER


def _ev(
    version: str, action: LifecycleAction, minute: int, prev: str | None = None
) -> ModelLifecycle:
    return ModelLifecycle(
        envelope=Envelope(event_time=T0 + timedelta(minutes=minute)),
        component=R,
        version=version,
        action=action,
        artifact_uri=f"/ckpt/{version}",
        previous_version=prev,
    )


def test_promotion_then_rollback_restores_previous() -> None:
    events = [
        _ev("v1", LifecycleAction.REGISTERED, 0),
        _ev("v1", LifecycleAction.PROMOTED, 1),
        _ev("v2", LifecycleAction.REGISTERED, 2),
        _ev("v2", LifecycleAction.PROMOTED, 3, prev="v1"),
    ]
    state = fold(events)
    assert state.serving[R] == "v2"
    assert previous_serving(state, R) == "v1"
    state = fold([*events, _ev("v2", LifecycleAction.ROLLED_BACK, 4, prev="v1")])
    assert state.serving[R] == "v1"
    assert state.versions[R]["v2"].status is LifecycleAction.ROLLED_BACK


def test_compacted_log_gives_same_serving_version() -> None:
    """Only each version's last event survives compaction; the answer must not change."""
    compacted = [
        _ev("v1", LifecycleAction.PROMOTED, 1),
        _ev("v2", LifecycleAction.ROLLED_BACK, 4, prev="v1"),
        _ev("v3", LifecycleAction.REJECTED, 5),
    ]
    state = fold(reversed(compacted))
    assert state.serving[R] == "v1"
    assert state.versions[R]["v3"].status is LifecycleAction.REJECTED
    assert state.versions[R]["v2"].artifact_uri == "/ckpt/v2"


def test_rejected_candidate_never_serves() -> None:
    state = fold([_ev("v1", LifecycleAction.PROMOTED, 1), _ev("v2", LifecycleAction.REJECTED, 2)])
    assert state.serving[R] == "v1"
