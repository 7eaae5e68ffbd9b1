"""The processors' core without a broker: join, waits, orphans, DLQ, dedupe, splits, acks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kernel import events as ev
from kernel.settings import KafkaSettings
from kernel.shards import ShardStore
from processors.engine import Engine, Outputs, Record
from processors.examples import PromptShape
from processors.judge import RuleJudge
from processors.offsets import AckTracker, Ticket
from processors.redact import Redactor
from processors.sealer import ShardWriter
from streams.catalog import Topics
from streams.dlq import DeadLetter
from streams.serde import AvroSerde
from tests.factories import T0, samples

TOPICS = Topics(KafkaSettings(topic_prefix="t."))
SERDE = AvroSerde()
KB = {f"kb-{i}": f"Knowledge object {i} text." for i in range(10)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """An engine over dict tables and a temp shard store, fed like the Faust edge feeds it."""

    def __init__(self, root: Path, seal_rows: int = 1000, knowledge: dict[str, str] | None = None):
        self.clock = Clock()
        self.store = ShardStore(str(root))
        self.bundles: dict[bytes, bytes] = {}
        self.cases: dict[bytes, bytes] = {}
        self.tracker = AckTracker()
        self.offsets: dict[tuple[str, int], int] = {}
        self.out = Outputs()
        self.new_engine(seal_rows, KB if knowledge is None else knowledge)

    def new_engine(self, seal_rows: int = 1000, knowledge: dict[str, str] | None = None) -> None:
        """A fresh engine and writer on the same tables and store (a restarted worker)."""
        self.writer = ShardWriter(
            self.store, "rule-1", seal_rows=seal_rows, seal_age_s=60, clock=self.clock
        )
        self.writer.load_sealed()
        self.engine = Engine(
            judge=RuleJudge(),
            redactor=Redactor(b"k"),
            writer=self.writer,
            bundles=self.bundles,
            cases=self.cases,
            knowledge=KB if knowledge is None else knowledge,
            context_wait_s=30,
            adoption_wait_s=10,
            clock=self.clock,
        )

    def record(self, value: bytes, topic: str, partition: int = 0) -> tuple[Record, Ticket]:
        offset = self.offsets.get((topic, partition), -1) + 1
        self.offsets[(topic, partition)] = offset
        ticket = self.tracker.track(topic, partition, offset)
        return Record(topic, partition, offset, b"case-1", value), ticket

    async def feed(self, *events: ev.Event, partition: int = 0) -> Outputs:
        out = Outputs()
        for event in events:
            topic = TOPICS.for_event(event)
            rec, ticket = self.record(SERDE.encode(event, topic), topic, partition)
            out.extend(await self.engine.on_record(rec, ticket))
        return self._deliver(out)

    async def feed_raw(self, value: bytes, topic: str) -> Outputs:
        rec, ticket = self.record(value, topic)
        return self._deliver(await self.engine.on_record(rec, ticket))

    async def tick(self, advance_s: float = 0.0) -> Outputs:
        self.clock.now += advance_s
        return self._deliver(await self.engine.on_tick())

    def seal(self) -> Outputs:
        return self._deliver(self.engine.seal_all())

    def _deliver(self, out: Outputs) -> Outputs:
        """What the edge does after producing: sealed shards release their tickets."""
        for shard in out.sealed:
            for ticket in shard.tickets:
                ticket.release()
        self.out.extend(out)
        return out

    def rows(self, component: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in self.store.manifests(component):
            out += pq.read_table(m.parquet).to_pylist()
        return out


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield Harness(tmp_path / "shards")


S = samples()


def verdicts(out: Outputs) -> dict[str, ev.JudgeVerdict]:
    return {v.annotation_type: v for v, _ in out.verdicts}


async def test_annotations_after_their_context_are_judged_and_sealed(h: Harness) -> None:
    out = await h.feed(
        S["interaction"], S["suggestion"], S["adoption"], S["preference"], S["relevance"]
    )
    got = verdicts(out)
    assert set(got) == {"ADOPTION", "PREFERENCE", "RELEVANCE"}
    assert all(v.accepted for v in got.values()), [v.reasons for v in got.values()]
    assert got["PREFERENCE"].agent_pseudonym == Redactor(b"k").agent("agent-7")
    before_seal = {t.topic for t in h.tracker.ackable()}
    assert before_seal == {TOPICS.name("interactions"), TOPICS.name("suggestions")}
    h.seal()
    acked = {t.topic for t in h.tracker.ackable()}
    assert acked == {
        TOPICS.name(f"annotations.{n}") for n in ("adoption", "preference", "relevance")
    }
    assert len(h.tracker) == 0
    assert {r["knowledge_id"] for r in h.rows("ranker")} == {"kb-1", "kb-2"}
    assert len(h.rows("generator")) == 2 and len(h.rows("retriever")) == 1


async def test_an_annotation_before_its_suggestion_waits_for_it(h: Harness) -> None:
    early = await h.feed(S["adoption"])
    assert not early.verdicts and h.engine.n_pending() == 1
    await h.tick(5)
    assert not h.out.verdicts
    late = await h.feed(S["suggestion"])
    assert [v.annotation_type for v, _ in late.verdicts] == ["ADOPTION"]
    assert late.verdicts[0][0].accepted and h.engine.n_pending() == 0


async def test_an_annotation_whose_suggestion_never_comes_is_an_orphan(h: Harness) -> None:
    await h.feed(S["preference"])
    assert not (await h.tick(29)).dead
    out = await h.tick(2)
    (dead,) = out.dead
    letter = DeadLetter.from_message(dead.key, dead.value, dead.headers)
    assert letter.error.startswith("orphan") and letter.stage == "join"
    assert letter.topic == TOPICS.name("annotations.preference") and letter.offset == 0
    ((verdict, _),) = out.verdicts
    assert not verdict.accepted and verdict.reasons[0].startswith("orphan")
    assert [t.offset for t in h.tracker.ackable()] == [0]


async def test_preference_waits_for_the_adoption_and_is_checked_against_it(h: Harness) -> None:
    sent_b = S["adoption"].model_copy(
        update={
            "decision": ev.Adoption.AS_IS,
            "candidate_id": "B",
            "final_text": "Late fee [kb-2].",
        }
    )
    await h.feed(S["suggestion"], S["preference"])
    assert not h.out.verdicts, "the preference waits for the adoption"
    out = await h.feed(sent_b)
    got = verdicts(out)
    assert not got["PREFERENCE"].accepted
    assert got["PREFERENCE"].reasons[0].startswith("preference_mismatch")


async def test_without_an_adoption_preference_is_judged_after_the_wait_and_says_so(
    h: Harness,
) -> None:
    await h.feed(S["suggestion"], S["preference"])
    assert not (await h.tick(9)).verdicts
    ((verdict, _),) = (await h.tick(2)).verdicts
    assert verdict.accepted and any(r.startswith("adoption_missing") for r in verdict.reasons)


async def test_missing_knowledge_texts_are_waited_for_then_noted(tmp_path: Path) -> None:
    h = Harness(tmp_path, knowledge={})
    await h.feed(S["suggestion"], S["adoption"], S["relevance"])
    assert verdicts(h.out).keys() == set()
    h.engine.knowledge = {"kb-0": "zero", "kb-1": "one", "kb-2": "two"}
    out = await h.tick(1)
    assert set(verdicts(out)) == {"ADOPTION", "RELEVANCE"}
    h2 = Harness(tmp_path / "b", knowledge={})
    await h2.feed(S["suggestion"], S["adoption"])
    ((verdict, _),) = (await h2.tick(31)).verdicts
    assert "knowledge_missing:3" in verdict.reasons


async def test_an_adoption_waits_only_for_the_knowledge_its_prompt_shows(
    tmp_path: Path,
) -> None:
    ranked = [k.knowledge_id for k in S["suggestion"].ranked]
    assert len(ranked) >= 2
    h = Harness(tmp_path, knowledge={ranked[0]: "the first object's text"})
    h.engine.prompt_shape = PromptShape(knowledge=1, chars=300)
    await h.feed(S["suggestion"], S["adoption"])
    (verdict,) = verdicts(h.out).values()  # judged at once: objects 2+ are not in the prompt
    assert verdict.accepted and not any(r.startswith("knowledge_missing") for r in verdict.reasons)
    h2 = Harness(tmp_path / "b", knowledge={ranked[0]: "the first object's text"})
    h2.engine.prompt_shape = PromptShape(knowledge=2, chars=300)
    await h2.feed(S["suggestion"], S["adoption"])
    assert not h2.out.verdicts  # the second shown object's text is still to come


async def test_undecodable_and_invalid_messages_go_to_the_dlq(h: Harness) -> None:
    topic = TOPICS.name("annotations.adoption")
    garbage = await h.feed_raw(b"\x00\x01not avro at all", topic)
    raw = S["adoption"].to_avro() | {"decision": "AS_IS", "candidate_id": None}
    invalid = await h.feed_raw(SERDE.encode_record("AdoptionDecision", raw), topic)
    stages = [
        DeadLetter.from_message(d.key, d.value, d.headers).stage
        for d in (*garbage.dead, *invalid.dead)
    ]
    assert stages == ["decode", "validate"]
    assert garbage.dead[0].value == b"\x00\x01not avro at all"
    out = await h.feed(S["suggestion"], S["adoption"])  # and the stream goes on
    assert out.verdicts and [t.offset for t in h.tracker.ackable() if t.topic == topic] == [0, 1]


async def test_a_pending_annotation_holds_back_acks_on_its_partition_only(h: Harness) -> None:
    await h.feed(S["preference"], partition=0)  # waits for its suggestion
    other = samples(case_id="case-2", request_id="req-2")
    await h.feed(other["interaction"], partition=0)
    await h.feed(S["interaction"], partition=1)
    acked = {(t.topic, t.partition, t.offset) for t in h.tracker.ackable()}
    assert acked == {
        (TOPICS.name("interactions"), 0, 0),
        (TOPICS.name("interactions"), 1, 0),
    }
    assert len(h.tracker) == 1  # the preference: not done, not acknowledged


async def test_a_replay_after_a_crash_seals_nothing_twice(h: Harness) -> None:
    events = [S["suggestion"], S["adoption"], S["relevance"], S["missing-knowledge"]]
    await h.feed(*events)
    h.seal()
    before = {c: len(h.rows(c)) for c in ("retriever", "ranker", "generator")}
    assert all(before.values())
    h.new_engine()  # "kill -9": memory gone, tables and shards survive; replay from offset 0
    out = await h.feed(*events)
    assert len(out.verdicts) == 3, "verdicts are published again (at least once)"
    h.seal()
    assert {c: len(h.rows(c)) for c in before} == before
    assert not h.writer.open


async def test_a_case_keeps_its_split(h: Harness) -> None:
    late = T0.replace(hour=23, minute=0)  # the last 10% of the day: eval
    env = ev.Envelope(event_time=late)
    await h.feed(S["suggestion"].model_copy(update={"envelope": env}))
    next_day = ev.Envelope(event_time=late + timedelta(hours=2))  # train time, same case
    s2 = samples(request_id="req-2")
    await h.feed(
        s2["suggestion"].model_copy(update={"envelope": next_day}),
        s2["adoption"].model_copy(update={"envelope": next_day}),
    )
    h.seal()
    assert h.store.manifests("generator", "eval") and not h.store.manifests("generator", "train")


async def test_pii_never_reaches_a_shard_and_shards_seal_by_count(tmp_path: Path) -> None:
    h = Harness(tmp_path, seal_rows=1)
    pii = S["adoption"].model_copy(
        update={"final_text": "Refund sent to jane@example.com, call me on +44 20 7946 0958."}
    )
    out = await h.feed(S["suggestion"], pii)
    assert len(out.sealed) == 1, "one row reaches seal_rows=1: sealed at once"
    (row,) = h.rows("generator")
    assert row["chosen"] == "Refund sent to [EMAIL], call me on [PHONE]."
    assert "jane" not in str(h.bundles)


async def test_shards_seal_by_age(h: Harness) -> None:
    await h.feed(S["suggestion"], S["adoption"])
    assert not (await h.tick(30)).sealed
    assert [s.manifest.component for s in (await h.tick(31)).sealed] == ["generator"]


async def test_expired_bundles_and_cases_are_dropped(h: Harness) -> None:
    await h.feed(S["suggestion"])
    assert h.bundles and h.cases
    h.engine.wall = lambda: 10**12  # far in the future
    await h.feed(samples(case_id="c-9", request_id="r-9")["interaction"])
    assert list(h.bundles) == [] and list(h.cases) == [b"c-9"]


def test_tickets_are_acknowledged_in_order_and_only_when_delivered() -> None:
    tracker = AckTracker()
    a, b = tracker.track("t", 0, 0), tracker.track("t", 0, 1)

    class Fut:
        def __init__(self) -> None:
            self.finished = False

        def done(self) -> bool:
            return self.finished

        def exception(self) -> None:
            return None

    fut = Fut()
    b.release()
    assert tracker.ackable() == []  # a is undecided
    a.futures.append(fut)
    a.release()
    assert tracker.ackable() == []  # a's verdict is not delivered
    fut.finished = True
    assert tracker.ackable() == [a, b]


async def test_a_remote_judge_is_asked_in_batches_on_the_timer(tmp_path: Path) -> None:
    batches: list[int] = []

    class SlowJudge(RuleJudge):
        async def judge_many(self, inputs: Any) -> Any:
            batches.append(len(inputs))
            return await super().judge_many(inputs)

    h = Harness(tmp_path)
    h.engine.judge = SlowJudge(remote=True)
    await h.feed(S["suggestion"], S["adoption"], S["relevance"], S["missing-knowledge"])
    assert not h.out.verdicts, "nothing is judged inline by a remote judge"
    out = await h.tick(0.5)
    assert batches == [3] and len(out.verdicts) == 3


async def test_a_message_that_cannot_be_processed_is_dead_lettered(h: Harness) -> None:
    class BrokenJudge(RuleJudge):
        async def judge_many(self, inputs: Any) -> Any:
            if any(isinstance(i.annotation, ev.KnowledgeRelevance) for i in inputs):
                raise ValueError("judge bug")
            return await super().judge_many(inputs)

    h.engine.judge = BrokenJudge()
    out = await h.feed(S["suggestion"], S["adoption"], S["relevance"])
    (dead,) = out.dead
    letter = DeadLetter.from_message(dead.key, dead.value, dead.headers)
    assert letter.stage == "process" and letter.error_class == "ValueError"
    assert "judge bug" not in letter.error  # an exception's text may quote the message
    assert [v.annotation_type for v, _ in out.verdicts] == ["ADOPTION"]


def test_the_gap_guard_rereads_what_the_consumer_skipped() -> None:
    from processors.offsets import GapGuard

    g, tp = GapGuard(reread_s=5.0), ("t", 0)
    g.start(tp, 10, now=0.0)
    assert g.check(tp, 13, now=1.0) == "gap"  # 10..12 never arrived: seek back to 10
    assert g.check(tp, 14, now=1.1) == "drop"  # already queued: it comes again after 10..13
    assert [g.check(tp, o, now=1.2) for o in (10, 11, 12, 13, 14)] == ["ok"] * 5
    assert g.check(tp, 12, now=1.3) == "drop"  # a re-delivery
    assert g.check(tp, 17, now=2.0) == "gap"  # 15, 16 missing
    assert g.check(tp, 17, now=8.0) == "ok"  # not re-read in 5 s: a real gap (markers)
    assert g.expected[tp] == 18
    assert g.stalled(tp, highwater=18, now=30.0, idle_s=3.0) is None  # caught up
    assert g.stalled(tp, highwater=20, now=9.0, idle_s=3.0) is None  # not idle long enough
    assert g.stalled(tp, highwater=20, now=30.0, idle_s=3.0) == 18  # the tail was skipped
    g.rereading_tail(tp, 18)
    assert g.stalled(tp, highwater=20, now=40.0, idle_s=3.0) is None  # only once


async def test_a_deferred_seal_is_decided_at_once_and_written_later(h: Harness) -> None:
    h.writer.defer_writes = True
    events = [S["suggestion"], S["adoption"], S["relevance"], S["missing-knowledge"]]
    await h.feed(*events)
    sealed = h.engine.seal_all().sealed
    assert sealed and not any(s.written for s in sealed)
    assert not h.store.manifests("ranker"), "nothing is in the store before the write"
    again = await h.feed(*events)  # re-delivered while the write is pending: no new rows
    assert not h.writer.open and not again.sealed
    for shard in sealed:
        shard.write()
        shard.write()  # idempotent
    assert all(s.written for s in sealed)
    rows = {c: len(h.rows(c)) for c in ("retriever", "ranker", "generator")}
    assert all(rows.values())
    assert {m.shard_id for c in rows for m in h.store.manifests(c)} == {
        s.manifest.shard_id for s in sealed
    }


async def test_the_benchmark_workload_gets_exactly_its_expected_verdicts(tmp_path: Path) -> None:
    """The kill -9 integration test's workload, in process: every annotation the workload
    made wrong is rejected, every other one accepted (the stateful judge included: its
    agreement and behaviour trackers must find nothing against a consistent crew), and
    only the orphans are dead-lettered."""
    from bench.workload import make_workload

    w = make_workload(8000, seed=3)  # the old, inconsistent crew failed from here on
    h = Harness(tmp_path / "shards", knowledge={k.knowledge_id: k.text for k in w.knowledge})
    for i, event in enumerate(w.stream):
        await h.feed(event, partition=i % 3)
    await h.tick(31.0)  # past the context wait: the orphans are given up
    got = {v.annotation_event_id: v for v, _ in h.out.verdicts}
    assert set(got) == set(w.expected) | {o.envelope.event_id for o in w.orphans}
    wrong = {eid: got[eid].reasons for eid, ok in w.expected.items() if got[eid].accepted is not ok}
    assert not wrong, (len(wrong), list(wrong.values())[:5])
    assert len(h.out.dead) == len(w.orphans)


def in_tenant(event: ev.Event, tenant: str, event_id: Any = None) -> Any:
    update: dict[str, Any] = {"tenant_id": tenant}
    if event_id is not None:
        update["event_id"] = event_id
    return event.model_copy(update={"envelope": event.envelope.model_copy(update=update)})


async def test_two_tenants_with_the_same_ids_never_mix(h: Harness) -> None:
    """Case and request ids are the clients': two tenants may well both have a case-1
    with a req-1. Neither joins the other's context, and neither's training rows are taken
    for duplicates of the other's, even when they reuse an event id."""
    acme = {k: in_tenant(S[k], "acme") for k in ("interaction", "suggestion", "adoption")}
    globex_adoption = in_tenant(S["adoption"], "globex", acme["adoption"].envelope.event_id)
    out = await h.feed(acme["interaction"], acme["suggestion"], globex_adoption)
    assert not out.verdicts, "globex's annotation joined acme's suggestion"
    assert h.engine.n_pending() == 1
    out = await h.feed(acme["adoption"])
    ((verdict, _),) = out.verdicts
    assert verdict.accepted and verdict.envelope.tenant_id == "acme"
    assert h.engine.n_pending() == 1  # globex's still waits for its own suggestion

    out = await h.feed(in_tenant(S["suggestion"], "globex"))
    ((verdict, _),) = out.verdicts
    assert verdict.accepted and verdict.envelope.tenant_id == "globex"
    assert h.engine.case("case-1", "acme").customer_message == S["interaction"].customer_message
    assert h.engine.case("case-1", "globex").customer_message == ""  # globex sent none

    sealed = h.seal().sealed
    assert {s.event.envelope.tenant_id for s in sealed} == {"acme", "globex"}
    for component in ("generator", "retriever", "ranker"):
        manifests = h.store.manifests(component)
        by_tenant = {m.tenant_id: m.rows for m in manifests}
        if manifests:
            assert set(by_tenant) == {"acme", "globex"}, component
            assert by_tenant["acme"] == by_tenant["globex"], component


async def test_the_default_tenant_keeps_bare_keys_so_old_state_still_joins(h: Harness) -> None:
    """Tables written before tenants were keyed (bare request ids) still join after an
    upgrade: the default tenant's keys are the ids themselves."""
    await h.feed(S["suggestion"])
    assert S["suggestion"].request_id.encode() in h.bundles
    out = await h.feed(S["adoption"])
    assert [v.accepted for v, _ in out.verdicts] == [True]


async def test_an_event_published_twice_in_a_tenant_trains_once(h: Harness) -> None:
    """A gateway retry past its memory (a restart, another replica) publishes the same
    event ids again, at new offsets: the rows are sealed once, in each tenant."""
    acme = [in_tenant(S[k], "acme") for k in ("suggestion", "adoption", "relevance")]
    await h.feed(*acme)
    out = await h.feed(*acme[1:])  # the retried annotations, same event ids
    assert len(out.verdicts) == 2
    h.seal()
    for component in ("retriever", "ranker", "generator"):
        ids = [r["example_id"] for r in h.rows(component)]
        assert ids and len(ids) == len(set(ids)), component
    assert {m.tenant_id for m in h.store.manifests("ranker")} == {"acme"}
