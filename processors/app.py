"""The Faust edge: one agent reads the case-keyed topics as raw bytes, hands each message
to the :class:`~processors.engine.Engine`, produces what it returns, and acknowledges
messages only when they are done (see ``processors/offsets.py``).

* Source topics (interactions, suggestions, the four annotation topics) all have the
  catalog's partition count and the case id as key, so Faust's assignor gives one worker
  the same partition of each: a case's suggestion and annotations meet in one worker.
* Tables ``bundles`` and ``cases`` are Faust tables with changelog topics
  (``<prefix><app>-bundles-changelog``); a restarted or rebalanced worker recovers them.
  Every changelog write is tracked like any other produced message.
* ``concurrency=1`` (faust-streaming #606 loses messages with more), ``value_serializer
  ="raw"`` (the engine decodes Avro itself; nothing is ever pickled).
* A timer resolves deadlines, seals shards by age and acknowledges what is done; Faust
  commits the acknowledged offsets. On a revoke, everything open is sealed first.
* Around a (re)assignment faust-streaming can drop fetched messages without handing them
  over; a :class:`~processors.offsets.GapGuard` notices the missing offsets and the worker
  seeks back to read them (see ``offsets.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TP

from kernel.errors import InfraError
from kernel.settings import Settings
from kernel.shards import ShardStore
from processors import metrics
from processors.announce import announce_missing
from processors.engine import Engine, Outputs, Record
from processors.examples import PromptShape
from processors.faults import Faults
from processors.judge import CompositeJudge, IntegrityJudge, Judge, LLMJudge, RuleJudge
from processors.knowledge import KnowledgeView
from processors.offsets import AckTracker, GapGuard
from processors.redact import Redactor, pseudonym_key
from processors.sealer import SealedShard, ShardWriter
from processors.settings import ProcessorSettings
from processors.split import SplitRule
from streams.catalog import Topics
from streams.config import bootstrap
from streams.security import faust_credentials
from streams.serde import AvroSerde

log = logging.getLogger(__name__)
RAW_TOPIC: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
# tables take their changelog serializers from key_type/value_type (bytes: raw)
RAW_TABLE: dict[str, Any] = {"key_type": bytes, "value_type": bytes}


class ProcessorApp(faust.App):
    """A Faust app that runs a hook before it stops, while its consumer still runs."""

    before_stop: Callable[[], Awaitable[None]] | None = None

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            try:
                await self.before_stop()
            except Exception:  # stopping anyway: unacknowledged work is simply replayed
                log.exception("sealing before stop failed")
        await super().on_stop()


class ProcessorWorker(faust.Worker):
    """A Faust worker without the terminal spinner: at WARNING and above the spinner sets
    the root logger to DEBUG, and every library debug record is then built for nothing."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)


class TrackedTable(faust.Table):
    """A Faust table that remembers the changelog messages it sent, so the processor can
    wait for their delivery before acknowledging the message that caused them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[Any] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.sent.append(fut)
        return fut

    def drain_sent(self) -> list[Any]:
        sent, self.sent = self.sent, []
        return sent


def make_judge(settings: Settings, ps: ProcessorSettings) -> Judge:
    """The configured judge; ``llm``/``composite`` need ``AITL_LLM_JUDGE_URL`` (an
    OpenAI-compatible endpoint, or ``local`` for a transformers model in the worker);
    ``none`` only checks integrity (the ablation)."""
    if ps.judge == "rule":
        return RuleJudge()
    if ps.judge == "none":
        return IntegrityJudge()
    if not settings.llm_judge_url:
        raise ValueError(f"judge={ps.judge} needs AITL_LLM_JUDGE_URL")
    key = settings.llm_judge_api_key
    local = settings.llm_judge_url == "local"
    llm = LLMJudge(
        base_url=settings.llm_judge_url,
        # a local judge with no model named runs the generator's stock model
        model=settings.generator_model
        if local and settings.llm_judge_model == "judge"
        else settings.llm_judge_model,
        api_key=key.get_secret_value() if key else None,
        timeout_s=ps.llm_timeout_s,
        retries=ps.llm_retries,
        cooldown_s=ps.llm_cooldown_s,
        max_concurrency=ps.llm_max_concurrency,
    )
    return llm if ps.judge == "llm" else CompositeJudge(llm=llm)


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    if not raw:
        return []
    items = raw.items() if isinstance(raw, Mapping) else raw
    return [(str(k), bytes(v) if v is not None else b"") for k, v in items]


def _faust_app(settings: Settings, ps: ProcessorSettings) -> ProcessorApp:
    """The worker's Faust app: raw bytes in and out, acks=all, commits and sessions as
    configured, in-memory tables rebuilt from their changelogs."""
    kafka = settings.kafka
    datadir = Path(settings.data_dir) / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    return ProcessorApp(
        f"{kafka.topic_prefix}{ps.app_name}",
        broker=[f"kafka://{b.strip()}" for b in bootstrap(kafka).split(",")],
        broker_credentials=faust_credentials(kafka),
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        topic_replication_factor=kafka.replication_factor,
        topic_partitions=kafka.default_partitions,
        stream_wait_empty=False,
        broker_commit_interval=ps.commit_interval_s,
        broker_session_timeout=ps.session_timeout_s,
        broker_heartbeat_interval=max(1.0, ps.session_timeout_s / 10),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.005,  # batch verdicts and changelog writes: fewer requests
        key_serializer="raw",
        value_serializer="raw",
    )


class Processor:
    """The worker: a Faust app, its agent and timer, and the engine behind them."""

    def __init__(
        self,
        settings: Settings,
        ps: ProcessorSettings,
        *,
        judge: Judge | None = None,
        knowledge: Mapping[str, str] | None = None,
    ) -> None:
        from aiokafka.codec import has_lz4

        if not has_lz4():  # aitl producers compress with lz4 (streams/config.py)
            raise InfraError("faust/aiokafka cannot read lz4 batches: install cramjam")
        self.settings, self.ps = settings, ps
        kafka = settings.kafka
        self.topics = Topics(kafka)
        self.serde = AvroSerde()
        configured = ps.pseudonym_key.get_secret_value() if ps.pseudonym_key else None
        self.redactor = Redactor(
            pseudonym_key(configured, settings.data_dir), ps.redact_patterns, ps.phone_regions
        ).warm()
        self.judge = judge or make_judge(settings, ps)
        self.knowledge_view: KnowledgeView | None = None
        if knowledge is None:
            self.knowledge_view = KnowledgeView(kafka, self.redactor, self.serde)
            knowledge = self.knowledge_view
        self.app = _faust_app(settings, ps)
        sources = [self.topics.name("interactions"), self.topics.name("suggestions")]
        self.source = self.app.topic(*sources, *self.topics.annotations, **RAW_TOPIC)
        self.out = {
            name: self.app.topic(self.topics.name(name), **RAW_TOPIC)
            for name in ("judge.verdicts", "dlq", "shards.sealed")
        }
        parts = kafka.default_partitions
        self.bundles = TrackedTable(self.app, name="bundles", partitions=parts, **RAW_TABLE)
        self.cases = TrackedTable(self.app, name="cases", partitions=parts, **RAW_TABLE)
        for table in (self.bundles, self.cases):
            self.app.tables.add(table)
        self.faults = Faults(ps)
        self.writer = ShardWriter(
            ShardStore(settings.shard_store),
            self.judge.version,
            ps.seal_rows,
            ps.seal_age_s,
            defer_writes=True,  # Parquet is written in a thread, off the stream's path
            after_stage=self.faults.store_stage
            if ps.fault_point or ps.fault_store_delay_s
            else None,
        )
        self.engine = self._engine(knowledge)
        # table writes queue in faust's producer buffer; past max_messages faust pauses the
        # stream and drains it one message per 0.1 s wait: keep the bound well above a burst
        self.app.producer.buffer.max_messages = 10_000
        self.tracker = AckTracker()
        self.lock = asyncio.Lock()
        self.last_offset: dict[tuple[str, int], int] = {}
        self.guard = GapGuard()
        self._start_offsets: dict[tuple[str, int], int] = {}
        self.processed = 0
        self._last_status = time.monotonic()
        # concurrency=1: faust-streaming #606 loses messages with more
        agent = self.app.agent(self.source, name="processors.join", concurrency=1)
        agent(cast(Any, self._agent))
        self.app.timer(ps.tick_s, name="processors.tick")(self._tick)
        self.app.on_partitions_revoked.connect(cast(Any, self._on_revoked))
        self.app.on_partitions_assigned.connect(cast(Any, self._on_assigned))
        self.app.before_stop = self._before_stop

    def _engine(self, knowledge: Mapping[str, str]) -> Engine:
        settings, ps = self.settings, self.ps
        return Engine(
            judge=self.judge,
            redactor=self.redactor,
            writer=self.writer,
            bundles=self.bundles,
            cases=self.cases,
            knowledge=knowledge,
            split_rule=SplitRule(ps.split_period_s, ps.eval_fraction),
            context_wait_s=ps.context_wait_s,
            adoption_wait_s=ps.adoption_wait_s,
            bundle_ttl_s=ps.bundle_ttl_s,
            serde=self.serde,
            prompt_shape=PromptShape(settings.prompt_knowledge, settings.prompt_chars),
        )

    # -- Faust callbacks --------------------------------------------------------------
    async def _agent(self, stream: faust.Stream) -> None:
        async for event in stream.noack().events():
            msg = event.message
            try:
                if not await self._in_order(msg):
                    continue
                async with self.lock:
                    ticket = self.tracker.track(msg.topic, msg.partition, msg.offset, event)
                    rec = Record(
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        msg.key,
                        msg.value,
                        _headers(msg.headers),
                    )
                    outputs = await self.engine.on_record(rec, ticket)
                    ticket.futures += self.bundles.drain_sent() + self.cases.drain_sent()
                    await self._emit(outputs)
                    self.last_offset[(msg.topic, msg.partition)] = msg.offset
                    if msg.timestamp:
                        metrics.MESSAGE_AGE.observe(max(0.0, time.time() - msg.timestamp))
                    self.processed += 1
            except Exception as exc:  # infrastructure failure: stop, restart from commits
                log.exception("processor failed at %s/%s@%s", msg.topic, msg.partition, msg.offset)
                await self.app.crash(exc)
                raise

    def _start_offset(self, tp: TP) -> int:
        """Where this session starts reading a partition: the group's committed offset
        (read when the partition was assigned), or 0 for a partition never committed (if
        retention removed offset 0, the guard's one re-read lands on the earliest offset
        and the gap is then accepted)."""
        known = self._start_offsets.get((tp.topic, tp.partition))
        if known is not None:
            return known
        committed = getattr(self.app.consumer, "_committed_offset", {}).get(tp)  # set on seek
        return int(committed or 0)

    def _committed(self, tps: set[TP]) -> dict[tuple[str, int], int]:
        """The group's committed offsets of ``tps``, asked of the broker: Faust's own map
        is empty until this session commits, and a guard started at 0 would re-read every
        partition from its beginning after each restart."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from streams.config import consumer_config

        consumer = Consumer(consumer_config(self.settings.kafka, self.app.conf.id))
        try:
            parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
            found = consumer.committed(parts, timeout=30)
        except KafkaException as exc:  # the guard then starts at 0: a re-read, nothing lost
            log.warning("committed offsets not read (%s): partitions may be re-read", exc)
            return {}
        finally:
            consumer.close()
        return {(p.topic, p.partition): p.offset for p in found if p.offset >= 0}

    async def _in_order(self, msg: Any) -> bool:
        """False for messages to drop: re-deliveries, and messages past a gap while the
        gap is re-read (the edge seeks back; they come again, in order)."""
        tp, now = (msg.topic, msg.partition), time.monotonic()
        if tp not in self.guard.expected:
            self.guard.start(tp, self._start_offset(msg.tp), now)
        verdict = self.guard.check(tp, msg.offset, now)
        if verdict == "gap":
            expected = self.guard.expected[tp]
            log.warning("offsets %s..%s of %s/%s skipped by the consumer: re-reading",
                        expected, msg.offset - 1, *tp)  # fmt: skip
            await self.app.consumer.seek(msg.tp, expected)
        return verdict == "ok"

    async def _reread_skipped_tails(self) -> None:
        if self.app.rebalancing:  # offsets are known once the worker seeked to them
            return
        consumer = self.app.consumer
        now = time.monotonic()
        for tp in consumer.assignment():
            key = (tp.topic, tp.partition)
            if tp.topic not in self.source.topics:
                continue
            if key not in self.guard.expected:
                self.guard.start(key, self._start_offset(tp), now)
            offset = self.guard.stalled(key, consumer.highwater(tp) or 0, now, idle_s=10.0)
            if offset is None:
                continue
            position = await consumer.position(tp)  # fetched past it, yet never handed over?
            if position is not None and position > offset:
                log.warning("the tail of %s/%s from %s was skipped: re-reading", *key, offset)
                self.guard.rereading_tail(key, offset)
                await consumer.seek(tp, offset)

    async def _tick(self) -> None:
        try:
            view = self.knowledge_view
            if view is not None and view.error is not None:
                raise InfraError(f"knowledge reader failed: {view.error!r}")
            async with self.lock:
                await self._emit(await self.engine.on_tick())
                await self._checkpoint()
            self._lag()
            await self._reread_skipped_tails()
            now = time.monotonic()
            if now - self._last_status >= self.ps.status_interval_s:
                self._last_status = now
                self._log_status()
        except Exception as exc:
            log.exception("processor tick failed")
            await self.app.crash(exc)
            raise

    async def _on_revoked(self, app: faust.App, revoked: set[TP], **_: Any) -> None:
        """Seal what is open and acknowledge what is done before the partitions move."""
        async with self.lock:
            out = self.engine.seal_all()
            await self._emit(out)
            if revoked and out.sealed:
                await asyncio.sleep(0)  # the shard writes start in their threads
                self.faults.hit("in_revoke")
            await self._settle()
            await self.app.consumer.commit()
            lost = {(tp.topic, tp.partition) for tp in revoked}
            dropped = self.tracker.drop(lost) + self.engine.drop_partitions(lost)
            self.guard.forget(lost)
            for key in lost:
                self._start_offsets.pop(key, None)
            if dropped:
                log.info(
                    "revoked %d partitions; %d messages left to their next owner",
                    len(lost),
                    dropped,
                )

    async def _on_assigned(self, app: faust.App, assigned: set[TP], **_: Any) -> None:
        """Another worker may have sealed shards for these partitions: learn their ids;
        and where this session starts reading each source partition."""
        sources = {tp for tp in assigned if tp.topic in self.source.topics}
        async with self.lock:
            added = await asyncio.to_thread(self.writer.load_sealed)
            if sources:
                self._start_offsets.update(await asyncio.to_thread(self._committed, sources))
        log.info("assigned %d partitions; %d sealed example ids learned", len(assigned), added)

    async def _before_stop(self) -> None:
        """Graceful stop: seal, wait for deliveries, acknowledge and commit."""
        async with self.lock:
            await self._emit(self.engine.seal_all())
            await self._settle()
            await self.app.consumer.commit()
        log.info("stopped cleanly; %d messages left unacknowledged", len(self.tracker))

    # -- producing and acknowledging --------------------------------------------------
    async def _emit(self, out: Outputs) -> None:
        verdicts, dlq, sealed = (self.out[n] for n in ("judge.verdicts", "dlq", "shards.sealed"))
        # send() hands the message to aiokafka at once; send_soon() would queue it in
        # faust's producer buffer, whose small bound throttles the whole stream
        for verdict, ticket in out.verdicts:
            value = self.serde.encode(verdict, verdicts.get_topic_name())
            ticket.futures.append(await verdicts.send(key=verdict.key().encode(), value=value))
        for dead in out.dead:
            sent = await dlq.send(key=dead.key, value=dead.value, headers=dead.headers)
            dead.ticket.futures.append(sent)
        for shard in out.sealed:
            # the shard's messages wait for this task: written, announced, delivered
            task = asyncio.ensure_future(self._write_and_announce(shard, sealed))
            for ticket in shard.tickets:
                ticket.futures.append(task)
                ticket.release()

    async def _write_and_announce(self, shard: SealedShard, topic: Any) -> None:
        """Write a sealed shard in a thread, then publish its shard-sealed event."""
        started = time.perf_counter()
        await asyncio.to_thread(shard.write)
        self.faults.hit("after_manifest")
        value = self.serde.encode(shard.event, topic.get_topic_name())
        await (await topic.send(key=shard.event.key().encode(), value=value))
        log.info(
            "sealed %s (%d rows, written in %.2fs)",
            shard.manifest.shard_id,
            shard.manifest.rows,
            time.perf_counter() - started,
        )

    async def _settle(self, timeout_s: float = 30.0) -> None:
        """Flush the producer, wait for every delivery, acknowledge what is done."""
        await self.app.producer.flush()
        futures = [f for t in self.tracker.tickets() for f in t.futures if not f.done()]
        if futures:
            await asyncio.wait(futures, timeout=timeout_s)
        await self._checkpoint()

    async def _checkpoint(self) -> None:
        """Acknowledge, in offset order, every message whose outputs are all delivered."""
        for ticket in self.tracker.ackable():
            ticket.handle.ack()
        metrics.UNCOMMITTED.set(len(self.tracker))

    def _log_status(self) -> None:
        oldest = sorted(self.tracker.next_offsets().items())[:3]
        log.info(
            "status: %d messages handled, %d annotations waiting, %d unacknowledged "
            "(oldest %s), %d rows in open shards",
            self.processed,
            self.engine.n_pending(),
            len(self.tracker),
            ", ".join(f"{t}/{p}@{o}" for (t, p), o in oldest) or "-",
            self.writer.open_rows(),
        )

    def _lag(self) -> None:
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:  # not started yet
            return
        for tp in assignment:
            if (tp.topic, tp.partition) not in self.last_offset:
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:
                continue
            if high is not None:
                lag = max(0, high - self.last_offset[(tp.topic, tp.partition)] - 1)
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(lag)

    # -- running ----------------------------------------------------------------------
    def ensure_changelogs(self, timeout_s: float = 30.0) -> list[str]:
        """Create the tables' compacted changelog topics up front, with the source topics'
        partition count: if Faust's own creation races the first records (seen under
        load), a table write fails with PartitionsMismatch (changelog with 0 partitions)."""
        from confluent_kafka.admin import AdminClient, NewTopic

        from streams.config import client_config

        kafka = self.settings.kafka
        names = [f"{self.app.conf.id}-{t}-changelog" for t in ("bundles", "cases")]
        admin = AdminClient(client_config(kafka))
        present = admin.list_topics(timeout=timeout_s).topics
        new = [
            NewTopic(
                name,
                num_partitions=kafka.default_partitions,
                replication_factor=kafka.replication_factor,
                config={"cleanup.policy": "compact"},
            )
            for name in names
            if name not in present
        ]
        created = []
        if new:
            for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
                try:
                    fut.result(timeout=timeout_s)
                    created.append(name)
                except Exception as exc:  # already created by a sibling worker
                    if "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise
        return created

    def prepare(self) -> None:
        """Create the changelogs, read the sealed example ids and the knowledge topic."""
        self.ensure_changelogs()
        started = time.monotonic()
        self.writer.warm_up()
        n = self.writer.load_sealed()
        log.info("%d sealed example ids read in %.1fs", n, time.monotonic() - started)
        topic = self.topics.name("shards.sealed")
        announce_missing(self.settings.kafka, self.writer.store, topic, self.serde)
        if self.knowledge_view is not None:
            self.knowledge_view.start(self.ps.knowledge_wait_s)

    def close(self) -> None:
        if self.knowledge_view is not None:
            self.knowledge_view.stop()

    def worker(self, loglevel: str = "INFO") -> faust.Worker:
        return ProcessorWorker(self.app, loglevel=loglevel, quiet=True)
