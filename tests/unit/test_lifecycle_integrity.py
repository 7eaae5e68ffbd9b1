"""Signed lifecycle events: a write to the models topic without the key changes nothing
that serves, and an old promotion replayed later is ignored; both are counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from kernel.checkpoints import ModelSpec
from kernel.events import Component, Envelope, LifecycleAction, ModelLifecycle
from kernel.lifecycle import sign, verify
from kernel.settings import KafkaSettings, Settings
from serving.watcher import LifecycleWatcher
from streams.serde import AvroSerde
from trainers.registry import MemoryLifecycleLog, Registry

G = Component.GENERATOR
KEY = b"lifecycle-test-key"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def ev(
    version: str, action: LifecycleAction, minute: int, key: bytes | None = KEY
) -> ModelLifecycle:
    event = ModelLifecycle(
        envelope=Envelope(event_time=T0 + timedelta(minutes=minute, microseconds=1234)),
        component=G,
        version=version,
        action=action,
        artifact_uri=f"file:///ckpt/{version}",
        artifact_sha256="ab" * 32,
    )
    return sign(event, key)


def rejected(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "aitl_serving_lifecycle_rejected_total", {"component": G.slug, "reason": reason}
    )
    return value or 0.0


def watcher() -> tuple[LifecycleWatcher, list[ModelSpec]]:
    applied: list[ModelSpec] = []
    w = LifecycleWatcher(KafkaSettings(), G, applied.append, current=ModelSpec(), key=KEY)
    return w, applied


def test_a_signature_survives_the_topic_and_covers_every_field() -> None:
    serde = AvroSerde()
    signed = ev("g1", LifecycleAction.PROMOTED, 1)
    read = serde.decode(serde.encode(signed))
    assert isinstance(read, ModelLifecycle) and read.signature == signed.signature
    assert verify(read, KEY)
    assert not verify(read, b"another key")
    for change in (
        {"artifact_uri": "file:///evil"},
        {"artifact_sha256": "00" * 32},
        {"version": "g2"},
        {"action": LifecycleAction.ROLLED_BACK},
    ):
        assert not verify(read.model_copy(update=change), KEY), change
    assert verify(ev("g1", LifecycleAction.PROMOTED, 1, key=None), None)  # signing off


def test_the_registry_signs_and_reads_only_signed_events() -> None:
    log = MemoryLifecycleLog()
    reg = Registry(log, key=KEY)
    reg.register(G, "g1", "file:///ckpt/g1", artifact_sha256="cd" * 32)
    reg.promote(G, "g1")
    assert all(e.signature and verify(e, KEY) for e in log.read())
    log.append(ev("g9", LifecycleAction.PROMOTED, 10**6, key=b"forger"))
    assert reg.state().serving[G] == "g1"  # the forged promotion counts for nothing


def test_settings_read_the_key_as_a_secret() -> None:
    s = Settings(lifecycle_key="s3cret")  # type: ignore[arg-type]
    assert s.lifecycle_key_bytes() == b"s3cret" and "s3cret" not in repr(s)
    assert Settings().lifecycle_key_bytes() is None


def test_a_forged_promotion_is_ignored_and_counted() -> None:
    w, applied = watcher()
    w.handle([ev("g1", LifecycleAction.REGISTERED, 0), ev("g1", LifecycleAction.PROMOTED, 1)])
    assert applied == [ModelSpec("g1", "file:///ckpt/g1", "ab" * 32)]
    before = rejected("forged")
    forged = ev("g2", LifecycleAction.REGISTERED, 2, key=b"not the key")
    unsigned = ev("g2", LifecycleAction.PROMOTED, 3, key=None)
    tampered = ev("g1", LifecycleAction.PROMOTED, 4).model_copy(
        update={"artifact_uri": "file:///evil"}
    )
    w.handle([forged, unsigned, tampered])
    assert len(applied) == 1 and w.current == applied[0]
    assert rejected("forged") - before == 3


def test_a_replayed_promotion_is_ignored_and_counted() -> None:
    w, applied = watcher()
    g1 = [ev("g1", LifecycleAction.REGISTERED, 0), ev("g1", LifecycleAction.PROMOTED, 1)]
    g2 = [ev("g2", LifecycleAction.REGISTERED, 2), ev("g2", LifecycleAction.PROMOTED, 3)]
    w.handle(g1)
    w.handle(g2)
    w.on_idle()  # caught up: what comes now was written now
    assert [s.version for s in applied] == ["g1", "g2"]
    before = rejected("replayed")
    w.handle([g1[1]])  # the very record again
    resent = sign(g1[1].model_copy(update={"envelope": Envelope(event_time=T0)}), KEY)
    w.handle([resent])  # signed, but older than g2's promotion
    assert [s.version for s in applied] == ["g1", "g2"] and w.current is not None
    assert w.current.version == "g2"
    assert rejected("replayed") - before == 2
    w.handle([ev("g1", LifecycleAction.PROMOTED, 5)])  # a new promotion of g1 is no replay
    assert [s.version for s in applied] == ["g1", "g2", "g1"]


def test_history_read_out_of_order_at_start_is_no_replay() -> None:
    w, applied = watcher()
    before = rejected("replayed")
    # partitions interleave: a newer promotion may come before an older one
    w.handle([ev("g2", LifecycleAction.PROMOTED, 3), ev("g1", LifecycleAction.PROMOTED, 1)])
    assert rejected("replayed") == before
    assert w.current is not None and w.current.version == "g2"
