"""Hot-swap decisions from the lifecycle log and the deployments' user_config."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kernel.checkpoints import ModelSpec, load_card, local_checkpoint
from kernel.events import Component, Envelope, LifecycleAction, ModelLifecycle
from kernel.lifecycle import fold
from kernel.settings import KafkaSettings
from serving.watcher import LifecycleWatcher, changes, serving_spec
from tests.factories import T0

G = Component.GENERATOR


def ev(
    version: str,
    action: LifecycleAction,
    minute: int,
    prev: str | None = None,
    component: Component = G,
) -> ModelLifecycle:
    return ModelLifecycle(
        envelope=Envelope(event_time=T0 + timedelta(minutes=minute)),
        component=component,
        version=version,
        action=action,
        artifact_uri=f"file:///ckpt/{version}",
        previous_version=prev,
    )


def test_nothing_promoted_serves_stock() -> None:
    assert serving_spec(fold([ev("g1", LifecycleAction.REGISTERED, 0)]), G) == ModelSpec()


def test_promotion_and_rollback_move_the_spec() -> None:
    log = [ev("g1", LifecycleAction.REGISTERED, 0), ev("g1", LifecycleAction.PROMOTED, 1, "stock")]
    assert changes(log, G, ModelSpec()) == ModelSpec("g1", "file:///ckpt/g1")
    assert changes(log, G, ModelSpec("g1", "file:///ckpt/g1")) is None  # already serving
    log.append(ev("g1", LifecycleAction.ROLLED_BACK, 2, "stock"))
    assert changes(log, G, ModelSpec("g1", "file:///ckpt/g1")) == ModelSpec()


def test_other_components_and_rejections_do_not_swap() -> None:
    log = [
        ev("r1", LifecycleAction.PROMOTED, 0, component=Component.RETRIEVER),
        ev("g2", LifecycleAction.REGISTERED, 1),
        ev("g2", LifecycleAction.REJECTED, 2),
    ]
    assert changes(log, G, ModelSpec()) is None


def test_spec_is_the_user_config() -> None:
    spec = ModelSpec("g1", "file:///ckpt/g1")
    assert ModelSpec.from_config(spec.to_config()) == spec
    assert ModelSpec.from_config(None) == ModelSpec()
    assert ModelSpec().is_stock and not spec.is_stock


def test_local_checkpoints_and_cards(tmp_path: Path) -> None:
    assert local_checkpoint(f"file://{tmp_path}") == tmp_path
    assert local_checkpoint(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match="aitl_model.json"):
        load_card(str(tmp_path))


def test_watcher_swaps_once_and_keeps_serving_when_a_swap_fails() -> None:
    applied: list[ModelSpec] = []
    fail = {"next": True}

    def on_change(spec: ModelSpec) -> None:
        if fail["next"]:
            fail["next"] = False
            raise OSError("checkpoint not readable yet")
        applied.append(spec)

    watcher = LifecycleWatcher(KafkaSettings(), G, on_change, current=ModelSpec())
    promote = [ev("g1", LifecycleAction.REGISTERED, 0), ev("g1", LifecycleAction.PROMOTED, 1)]
    watcher.handle(promote)
    assert watcher.current == ModelSpec() and isinstance(watcher.last_error, OSError)
    watcher.handle([ev("r1", LifecycleAction.PROMOTED, 2, component=Component.RETRIEVER)])
    assert applied == []  # other components' events do not trigger a retry
    watcher.handle([ev("g1", LifecycleAction.PROMOTED, 3)])  # the next event retries
    assert applied == [ModelSpec("g1", "file:///ckpt/g1")]
    watcher.handle([ev("g1", LifecycleAction.PROMOTED, 4)])
    assert watcher.swaps == 1
