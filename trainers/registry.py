"""Model registry: checkpoints in a store, lifecycle events on the models topic as truth.

``Registry`` never keeps state of its own: every question is answered by folding the
lifecycle log (``kernel.lifecycle.fold``), and every change is one appended event. Each
event repeats the version's artifact, lineage and metrics, because the compacted topic
keeps only a version's last event.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import fsspec

from kernel.errors import ModelError
from kernel.events import Component, Envelope, LifecycleAction, ModelLifecycle, utcnow
from kernel.lifecycle import RegistryState, VersionState, fold, previous_serving, sign, verify
from kernel.settings import KafkaSettings
from trainers.snapshot import Snapshot

SNAPSHOTS = "_snapshots"


STALE_S = 3600.0  # a staging dir untouched this long belongs to a trainer that died


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` and the directories naming them to the disk."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(root)


class RegistryError(ModelError):
    """A lifecycle change that cannot be made (unknown version, nothing to roll back)."""


class GateRefused(RegistryError):
    """A promotion of a version the gate rejected, asked for without force."""


# --- checkpoint store -----------------------------------------------------------------
class CheckpointStore:
    """Checkpoint directories under a local dir or any fsspec URL.

    Layout: ``<root>/<component>/<version>/`` (the model, ``aitl_model.json``,
    ``lineage.json``, ``metrics.png``) and ``<root>/_snapshots/<snapshot_id>.json``.
    """

    def __init__(self, root: str, cache_dir: Path | None = None) -> None:
        self.root = root.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)
        self.is_local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        self.cache_dir = cache_dir or Path.home() / ".cache" / "aitl" / "checkpoints"

    def uri(self, component: str, version: str) -> str:
        path = f"{self.base}/{component.lower()}/{version}"
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def staging_dir(self, component: str, version: str) -> Path:
        """A local dir to build a checkpoint in before ``publish`` moves it into the store;
        staging dirs a crashed trainer left behind (older than ``STALE_S``) are removed."""
        root = Path(self.base) if self.is_local else self.cache_dir
        parent = root / component.lower()
        path = parent / f".staging-{version}"
        if parent.is_dir():
            cutoff = time.time() - STALE_S
            for old in parent.glob(".staging-*"):
                if old != path and old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def publish(self, local_dir: Path, component: str, version: str) -> str:
        """Move (local) or upload (remote) a finished checkpoint; returns its URI.

        Locally the files are fsynced and the directory renamed into place, one atomic
        step: a version dir is complete or absent, even after a crash or power loss. (A
        remote upload is not atomic; its registered sha256, checked at load, refuses a
        half-uploaded one.)"""
        uri = self.uri(component, version)
        if self.is_local:
            target = Path(self.base) / component.lower() / version
            if target.exists():
                raise RegistryError(f"checkpoint {target} already exists")
            _fsync_tree(local_dir)
            local_dir.rename(target)
            _fsync_dir(target.parent)
        else:
            self.fs.put(str(local_dir), self.fs._strip_protocol(uri), recursive=True)
            shutil.rmtree(local_dir, ignore_errors=True)
        return uri

    def local_path(self, uri: str) -> Path:
        """A local directory with the checkpoint at ``uri`` (downloaded once if remote)."""
        fs, path = fsspec.core.url_to_fs(uri)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if "file" in protocols:
            return Path(path)
        target = self.cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
        if not (target / ".complete").exists():
            tmp = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:6]}")
            fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
            (target / ".complete").touch()
        return target

    def save_snapshot(self, snapshot: Snapshot) -> str:
        directory = f"{self.base}/{SNAPSHOTS}"
        self.fs.makedirs(directory, exist_ok=True)
        path = f"{directory}/{snapshot.snapshot_id}.json"
        with self.fs.open(path, "w") as fh:
            fh.write(snapshot.to_json())
        return path

    def load_snapshot(self, snapshot_id: str) -> Snapshot:
        path = f"{self.base}/{SNAPSHOTS}/{snapshot_id}.json"
        if not self.fs.exists(path):
            raise RegistryError(f"no recorded snapshot {snapshot_id} under {self.root}")
        with self.fs.open(path, "r") as fh:
            return Snapshot.from_json(fh.read())


# --- lifecycle logs -------------------------------------------------------------------
class LifecycleLog(Protocol):
    """Where lifecycle events live: the models topic, or a list in tests."""

    def read(self) -> list[ModelLifecycle]: ...

    def append(self, event: ModelLifecycle) -> None: ...


class MemoryLifecycleLog:
    """An in-process log (unit tests, dry runs, the benchmark without a broker)."""

    def __init__(self, events: list[ModelLifecycle] | None = None) -> None:
        self.events: list[ModelLifecycle] = list(events or [])

    def read(self) -> list[ModelLifecycle]:
        return list(self.events)

    def append(self, event: ModelLifecycle) -> None:
        self.events.append(event)


class KafkaLifecycleLog:
    """The compacted models topic: read from the start to the end, append with acks=all."""

    def __init__(self, settings: KafkaSettings, *, producer_name: str = "aitl-trainers") -> None:
        from streams.catalog import Topics

        self.settings = settings
        self.topic = Topics(settings).for_event(ModelLifecycle)
        self.producer_name = producer_name
        self._publisher: Any = None

    def read(self, timeout_s: float = 30.0) -> list[ModelLifecycle]:
        """Every event on the topic now (each partition read up to its high watermark)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

        from streams.config import consumer_config
        from streams.serde import AvroSerde, SerializationError

        deadline = time.monotonic() + timeout_s
        partitions = wait_for_topic(self.settings, self.topic, timeout_s)
        if not partitions:
            return []
        group = f"aitl-registry-{uuid.uuid4().hex[:8]}"
        consumer = Consumer(consumer_config(self.settings, group, **{"enable.partition.eof": True}))
        serde = AvroSerde()
        events: list[ModelLifecycle] = []
        try:
            ends: dict[int, int] = {}
            for p in partitions:
                while True:  # a new topic's leaders settle for a moment
                    try:
                        low, high = consumer.get_watermark_offsets(
                            TopicPartition(self.topic, p),
                            timeout=max(1.0, deadline - time.monotonic()),
                        )
                        break
                    except KafkaException:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                if high > low:
                    ends[p] = high
            if not ends:
                return []
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
            while ends and time.monotonic() < deadline:
                for msg in consumer.consume(500, 0.5):
                    if msg.error() is not None:
                        continue  # partition EOF; the watermark check below ends the loop
                    p, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                    try:
                        event = serde.decode(
                            msg.value(), topic=self.topic, partition=p, offset=offset
                        )
                    except SerializationError:
                        event = None  # not ours to fix here: the DLQ tooling reports it
                    if isinstance(event, ModelLifecycle):
                        events.append(event)
                    if p in ends and offset + 1 >= ends[p]:
                        del ends[p]
            if ends:
                raise RegistryError(
                    f"timed out reading {self.topic} (partitions {sorted(ends)} unread)"
                )
        finally:
            consumer.close()
        return events

    def append(self, event: ModelLifecycle) -> None:
        from streams.producer import Publisher

        if self._publisher is None:
            self._publisher = Publisher(self.settings, producer_name=self.producer_name)
        self._publisher.publish(event)
        if self._publisher.flush(60) or self._publisher.failed:
            raise RegistryError(f"lifecycle event not acknowledged: {self._publisher.failed[-1:]}")

    def close(self) -> None:
        """Flush and close the producer (before the broker goes away)."""
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None


def wait_for_topic(settings: KafkaSettings, topic: str, timeout_s: float = 30.0) -> list[int]:
    """The topic's partition ids once every one has a leader; [] if the topic is absent."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    from streams.config import client_config

    admin = AdminClient(client_config(settings))
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or (
            meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            return []
        if meta.error is None and all(
            p.leader >= 0 and p.error is None for p in meta.partitions.values()
        ):
            return sorted(meta.partitions)
        if time.monotonic() > deadline:
            raise RegistryError(f"topic {topic} has partitions without a leader")
        time.sleep(0.2)


# --- the registry ---------------------------------------------------------------------
class Registry:
    """Register, reject, promote and roll back versions; state is the folded log."""

    def __init__(
        self,
        log: LifecycleLog,
        *,
        producer: str = "aitl-trainers",
        tenant_id: str = "default",
        clock: Callable[[], datetime] = utcnow,
        key: bytes | None = None,
    ) -> None:
        self.log = log
        self.key = key  # signs every event (Settings.lifecycle_key_bytes())
        self.producer = producer
        self.tenant_id = tenant_id
        self.clock = clock

    def state(self) -> RegistryState:
        """The folded log; with a key, only the events signed with it count."""
        return fold(e for e in self.log.read() if verify(e, self.key))

    def serving(self, component: Component) -> VersionState | None:
        return self.state().serving_state(component)

    def get(self, component: Component, version: str) -> VersionState:
        state = self.state()
        found = state.versions.get(component, {}).get(version)
        if found is None:
            raise RegistryError(f"no {component.slug} version {version!r}")
        return found

    def _envelope(self, state: RegistryState) -> Envelope:
        # strictly after every known event, so fold() orders this one last
        latest = max(
            (
                v.event.envelope.event_time
                for c in state.versions.values()
                for v in c.values()
                if v.event
            ),
            default=None,
        )
        now = self.clock()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what Avro keeps
        if latest is not None and now <= latest:
            now = latest + timedelta(milliseconds=1)
        return Envelope(event_time=now, tenant_id=self.tenant_id, producer=self.producer)

    def _emit(self, event: ModelLifecycle) -> ModelLifecycle:
        event = sign(event, self.key)
        self.log.append(event)
        return event

    def register(
        self,
        component: Component,
        version: str,
        artifact_uri: str,
        *,
        base_model: str = "",
        snapshot_id: str | None = None,
        judge_version: str | None = None,
        metrics: dict[str, float] | None = None,
        lineage: dict[str, Any] | None = None,
        artifact_sha256: str = "",
    ) -> ModelLifecycle:
        """A new candidate at ``artifact_uri`` with its metrics, lineage and checksum."""
        state = self.state()
        if version in state.versions.get(component, {}):
            raise RegistryError(f"{component.slug} version {version!r} already exists")
        return self._emit(
            ModelLifecycle(
                envelope=self._envelope(state),
                component=component,
                version=version,
                action=LifecycleAction.REGISTERED,
                artifact_uri=artifact_uri,
                base_model=base_model,
                snapshot_id=snapshot_id,
                judge_version=judge_version,
                metrics={k: float(v) for k, v in (metrics or {}).items()},
                config_json=json.dumps(lineage or {}, sort_keys=True, default=str),
                artifact_sha256=artifact_sha256,
            )
        )

    def _transition(
        self,
        component: Component,
        version: str,
        action: LifecycleAction,
        *,
        reason: str | None,
        previous_version: str | None,
    ) -> ModelLifecycle:
        state = self.state()
        current = state.versions.get(component, {}).get(version)
        if current is None or current.event is None:
            raise RegistryError(f"no {component.slug} version {version!r}")
        return self._emit(
            current.event.model_copy(
                update={
                    "envelope": self._envelope(state),
                    "action": action,
                    "reason": reason,
                    "previous_version": previous_version,
                }
            )
        )

    def reject(self, component: Component, version: str, reason: str) -> ModelLifecycle:
        """The gate refused ``version``; it stays listed with the reason."""
        return self._transition(
            component, version, LifecycleAction.REJECTED, reason=reason, previous_version=None
        )

    def promote(
        self,
        component: Component,
        version: str,
        reason: str | None = None,
        *,
        force: bool = False,
    ) -> ModelLifecycle:
        """``version`` serves from now on; the event names what served before.

        A version the gate refused is promoted only with ``force`` and a ``reason``, and
        the event records ``forced: <reason>``: an operator may overrule the gate, not
        without a trace."""
        state = self.state()
        current = state.serving.get(component)
        if current == version:
            raise RegistryError(f"{component.slug} {version!r} is already serving")
        target = state.versions.get(component, {}).get(version)
        refused = gate_refusal(target) if target is not None else None
        if refused is not None:
            if not force:
                raise GateRefused(
                    f"{component.slug} {version!r} was rejected by the gate ({refused}); "
                    "promoting it anyway needs force and a reason",
                    component=component.slug,
                    version=version,
                )
            if not (reason and reason.strip()):
                raise RegistryError(f"forcing {component.slug} {version!r} needs a reason")
            reason = f"forced: {reason.strip()}"
        return self._transition(
            component, version, LifecycleAction.PROMOTED, reason=reason, previous_version=current
        )

    def rollback(self, component: Component, reason: str | None = None) -> ModelLifecycle:
        """The serving version stops serving; the one before it (or stock) serves again."""
        state = self.state()
        current = state.serving.get(component)
        if current is None:
            raise RegistryError(f"no {component.slug} version is serving: nothing to roll back")
        target = previous_serving(state, component)
        return self._transition(
            component,
            current,
            LifecycleAction.ROLLED_BACK,
            reason=reason or "manual rollback",
            previous_version=target,
        )


def new_version(component: Component, now: datetime | None = None) -> str:
    """A sortable, unique version name: ``retriever-20261101T093000-1a2b3c``."""
    ts = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"{component.slug}-{ts}-{uuid.uuid4().hex[:6]}"


def gate_refusal(state: VersionState) -> str | None:
    """Why the promotion gate refused this version, or None when it did not: its last
    event is REJECTED, or its lineage records the gate's refusal (so a forced promotion
    that was rolled back needs forcing again)."""
    if state.status is LifecycleAction.REJECTED:
        return (state.event.reason if state.event else None) or "rejected"
    gate = lineage_of(state).get("gate")
    if isinstance(gate, dict) and gate.get("promote") is False:
        return str(gate.get("reason") or "rejected")
    return None


def lineage_of(state: VersionState) -> dict[str, Any]:
    """The lineage recorded on a version's last event (config, snapshot, baseline, gate)."""
    if state.event is None:
        return {}
    raw = state.event.config_json or "{}"
    try:
        parsed: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError:
        parsed = {"config_json": raw}
    return {
        "base_model": state.event.base_model,
        "snapshot_id": state.event.snapshot_id,
        "judge_version": state.event.judge_version,
        "metrics": state.metrics,
        **parsed,
    }
