"""The processors' pure core: decode, join, judge, build examples, buffer shards.

No Kafka here. The Faust edge (``processors/app.py``) hands each consumed message to
:meth:`Engine.on_record` with its :class:`~processors.offsets.Ticket`, produces the
returned :class:`Outputs`, and acknowledges tickets once they are done. Tables are plain
mutable mappings (Faust tables in the worker, dicts in tests), keyed by tenant and request
id (``bundles``: suggestion + adoption) and tenant and case id (``cases``: split +
conversation), so two tenants' identical ids never meet (:func:`table_key`).

The join: an annotation waits (in memory, unacknowledged) until its request's suggestion
is in ``bundles``; past ``context_wait_s`` it is an orphan (dead-lettered, and a rejected
verdict says so). Preference and relevance annotations also wait up to
``adoption_wait_s`` for the request's adoption decision, whose sent text they are checked
against; without it they are judged anyway and the verdict says what was not checked.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from kernel.envelope import DEFAULT_TENANT, tenant_key
from kernel.events import (
    AdoptionDecision,
    Annotation,
    CustomerInteraction,
    Event,
    JudgeVerdict,
    Split,
    SuggestionServed,
    Turn,
)
from kernel.reasons import Reason
from processors import metrics
from processors.examples import PromptShape, build_examples
from processors.judge.base import Judge, JudgeInput, Verdict, reason_code
from processors.offsets import Ticket
from processors.redact import Redactor, redact_event
from processors.sealer import SealedShard, ShardWriter
from processors.split import SplitRule
from streams.dlq import dead_letter_headers
from streams.serde import AvroSerde, SerializationError

log = logging.getLogger(__name__)
Headers = list[tuple[str, bytes]]
_S = TypeVar("_S", bound=BaseModel)


class BundleState(BaseModel):
    """Everything known about one request (the ``bundles`` table value)."""

    model_config = ConfigDict(frozen=True)

    suggestion: SuggestionServed | None = None
    adoption: AdoptionDecision | None = None
    partition: int
    touched: float  # wall clock, for expiry


class CaseState(BaseModel):
    """One case: its split (fixed once) and its conversation (the ``cases`` table value)."""

    model_config = ConfigDict(frozen=True)

    first_seen_ms: int
    split: Split
    customer_message: str = ""
    history: list[Turn] = []
    partition: int
    touched: float


@dataclass(frozen=True)
class Record:
    """One consumed Kafka message, as the edge hands it over."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass
class DeadLetterOut:
    key: bytes | None
    value: bytes | None
    headers: Headers
    ticket: Ticket


@dataclass
class Outputs:
    """What the edge must produce; each item names the ticket waiting for its delivery."""

    verdicts: list[tuple[JudgeVerdict, Ticket]] = field(default_factory=list)
    dead: list[DeadLetterOut] = field(default_factory=list)
    sealed: list[SealedShard] = field(default_factory=list)

    def extend(self, other: Outputs) -> Outputs:
        self.verdicts += other.verdicts
        self.dead += other.dead
        self.sealed += other.sealed
        return self


@dataclass
class Pending:
    annotation: Annotation
    record: Record
    ticket: Ticket
    agent: str
    arrived: float
    context_deadline: float
    adoption_deadline: float

    @property
    def ticket_tp(self) -> tuple[str, int]:
        return (self.record.topic, self.record.partition)


class _Wait(Enum):
    WAIT = "wait"
    ORPHAN = "orphan"


class Engine:
    """Joins annotations with their context, judges them, and feeds the shard writer."""

    def __init__(
        self,
        *,
        judge: Judge,
        redactor: Redactor,
        writer: ShardWriter,
        bundles: MutableMapping[bytes, bytes],
        cases: MutableMapping[bytes, bytes],
        knowledge: Mapping[str, str],
        split_rule: SplitRule | None = None,
        context_wait_s: float = 30.0,
        adoption_wait_s: float = 10.0,
        bundle_ttl_s: float = 7 * 24 * 3600.0,
        serde: AvroSerde | None = None,
        prompt_shape: PromptShape | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.judge = judge
        self.redactor = redactor
        self.writer = writer
        self.bundles = bundles
        self.cases = cases
        self.knowledge = knowledge
        self.split_rule = split_rule or SplitRule()
        self.context_wait_s = context_wait_s
        self.adoption_wait_s = adoption_wait_s
        self.bundle_ttl_s = bundle_ttl_s
        self.serde = serde or AvroSerde()
        self.prompt_shape = prompt_shape or PromptShape()
        self.clock = clock
        self.wall = wall
        self.pending: dict[str, list[Pending]] = {}
        self._touched: dict[int, dict[tuple[str, bytes], float]] = {}
        self._last_gc: dict[int, float] = {}
        self._indexed = False
        self._decoded: dict[tuple[int, bytes], BaseModel] = {}  # (table, key) -> state

    # -- entry points -----------------------------------------------------------------
    async def on_record(self, rec: Record, ticket: Ticket) -> Outputs:
        """Handle one message; the ticket is released once the message is decided."""
        started = time.perf_counter()
        out = Outputs()
        try:
            event = self.serde.decode(
                rec.value or b"", topic=rec.topic, partition=rec.partition, offset=rec.offset
            )
        except SerializationError as exc:
            metrics.child(metrics.EVENTS_CONSUMED, rec.topic, "undecodable").inc()
            out.dead.append(self._dead(rec, ticket, exc, exc.kind))
            ticket.release()
            return out
        metrics.child(metrics.EVENTS_CONSUMED, rec.topic, event.event_type).inc()
        waiting: list[Pending] = []
        try:
            event = redact_event(self.redactor, event)
            if isinstance(event, CustomerInteraction):
                self._on_interaction(event, rec.partition)
            elif isinstance(event, SuggestionServed):
                self._on_suggestion(event, rec.partition)
                waiting = self.pending.get(_rid(event), [])
            elif isinstance(event, Annotation):
                waiting = self._admit(event, rec, ticket)
            else:
                raise TypeError(f"unexpected {event.event_type} event on {rec.topic}")
        except Exception as exc:  # a message that cannot be processed: DLQ, keep going
            self._log_failure(exc, "cannot process %s/%s@%s", rec.topic, rec.partition, rec.offset)
            out.dead.append(self._dead(rec, ticket, exc, "process"))
            ticket.release()
            return out
        if not isinstance(event, Annotation):
            ticket.release()
        if waiting and not self.judge.remote:
            out.extend(await self.resolve(waiting))
        self._maybe_gc(rec.partition)
        metrics.PROCESSING.observe(time.perf_counter() - started)
        return out

    async def on_tick(self) -> Outputs:
        """Deadlines passed, knowledge arrived, shards aged: resolve and seal what is due."""
        waiting = [p for ps in self.pending.values() for p in ps]
        out = await self.resolve(waiting) if waiting else Outputs()
        out.sealed += self.writer.seal_due()
        metrics.PENDING.set(self.n_pending())
        return out

    def seal_all(self) -> Outputs:
        return Outputs(sealed=self.writer.seal_all())

    def drop_partitions(self, tps: Iterable[tuple[str, int]]) -> int:
        """Forget pending annotations of partitions this worker no longer owns."""
        lost = set(tps)
        n = 0
        for rid in list(self.pending):
            keep = [p for p in self.pending[rid] if p.ticket_tp not in lost]
            n += len(self.pending[rid]) - len(keep)
            if keep:
                self.pending[rid] = keep
            else:
                del self.pending[rid]
        for _, partition in lost:
            self._touched.pop(partition, None)
            self._last_gc.pop(partition, None)
        self._indexed = False  # partitions assigned next bring recovered keys
        self._decoded.clear()  # the tables dropped the lost partitions' keys
        return n

    def n_pending(self) -> int:
        return sum(len(ps) for ps in self.pending.values())

    # -- context ----------------------------------------------------------------------
    def bundle(self, request_id: str, tenant: str = DEFAULT_TENANT) -> BundleState | None:
        return self._read(self.bundles, tenant_key(tenant, request_id).encode(), BundleState)

    def case(self, case_id: str, tenant: str = DEFAULT_TENANT) -> CaseState | None:
        return self._read(self.cases, tenant_key(tenant, case_id).encode(), CaseState)

    def _read(self, table: MutableMapping[bytes, bytes], key: bytes, model: type[_S]) -> _S | None:
        """The decoded table value. Every write goes through ``_put_*``, which keeps the
        decoded copy, so only values recovered from a changelog are read and decoded."""
        hit = self._decoded.get((id(table), key))
        if hit is not None:
            return hit  # type: ignore[return-value]
        raw = table.get(key)
        if raw is None:
            return None
        state = model.model_validate_json(raw)
        if len(self._decoded) >= 100_000:
            self._decoded.clear()
        self._decoded[(id(table), key)] = state
        return state

    def _put_bundle(self, request_id: str, tenant: str, state: BundleState) -> None:
        key = tenant_key(tenant, request_id).encode()
        self.bundles[key] = state.model_dump_json().encode()
        self._decoded[(id(self.bundles), key)] = state
        self._touched.setdefault(state.partition, {})[("b", key)] = state.touched

    def _put_case(self, case_id: str, tenant: str, state: CaseState) -> None:
        key = tenant_key(tenant, case_id).encode()
        self.cases[key] = state.model_dump_json().encode()
        self._decoded[(id(self.cases), key)] = state
        self._touched.setdefault(state.partition, {})[("c", key)] = state.touched

    def _ensure_case(self, event: Event, case_id: str, partition: int) -> CaseState:
        tenant = event.envelope.tenant_id
        state = self.case(case_id, tenant)
        if state is None:
            ms = int(event.envelope.event_time.timestamp() * 1000)
            state = CaseState(
                first_seen_ms=ms,
                split=self.split_rule.split_for_ms(ms),
                partition=partition,
                touched=self.wall(),
            )
            self._put_case(case_id, tenant, state)
        return state

    def _on_interaction(self, event: CustomerInteraction, partition: int) -> None:
        state = self._ensure_case(event, event.case_id, partition)
        self._put_case(
            event.case_id,
            event.envelope.tenant_id,
            state.model_copy(
                update={
                    "customer_message": event.customer_message,
                    "history": event.history,
                    "touched": self.wall(),
                }
            ),
        )

    def _on_suggestion(self, event: SuggestionServed, partition: int) -> None:
        self._ensure_case(event, event.case_id, partition)
        tenant = event.envelope.tenant_id
        old = self.bundle(event.request_id, tenant)
        adoption = old.adoption if old else None
        state = BundleState(
            suggestion=event, adoption=adoption, partition=partition, touched=self.wall()
        )
        self._put_bundle(event.request_id, tenant, state)

    def _admit(self, ann: Annotation, rec: Record, ticket: Ticket) -> list[Pending]:
        """Record the annotation as waiting; returns what may be resolvable now."""
        self._ensure_case(ann, ann.case_id, rec.partition)
        agent = self.redactor.agent(ann.agent_id)
        metrics.child(metrics.AGENT_ANNOTATIONS, agent).inc()
        if isinstance(ann, AdoptionDecision):
            metrics.child(metrics.ADOPTIONS, ann.decision.value).inc()
            tenant = ann.envelope.tenant_id
            old = self.bundle(ann.request_id, tenant)
            state = BundleState(
                suggestion=old.suggestion if old else None,
                adoption=ann,
                partition=rec.partition,
                touched=self.wall(),
            )
            self._put_bundle(ann.request_id, tenant, state)
        now = self.clock()
        pending = Pending(
            ann, rec, ticket, agent, now, now + self.context_wait_s, now + self.adoption_wait_s
        )
        waiting = self.pending.setdefault(_rid(ann), [])
        waiting.append(pending)
        # an adoption may complete the preference/relevance waiting on it
        return list(waiting) if isinstance(ann, AdoptionDecision) else [pending]

    # -- the join and the judge -------------------------------------------------------
    def _readiness(self, p: Pending, now: float) -> JudgeInput | _Wait:
        ann = p.annotation
        tenant = ann.envelope.tenant_id
        bundle = self.bundle(ann.request_id, tenant)
        if bundle is None or bundle.suggestion is None:
            return _Wait.ORPHAN if now >= p.context_deadline else _Wait.WAIT
        sugg = bundle.suggestion
        adoption = ann if isinstance(ann, AdoptionDecision) else bundle.adoption
        needs_adoption = ann.waits_for_adoption
        if needs_adoption and adoption is None and now < p.adoption_deadline:
            return _Wait.WAIT
        shown = [k.knowledge_id for k in sugg.ranked[: self.prompt_shape.knowledge]]
        need = ann.needed_knowledge(shown)
        known: dict[str, str] = {}
        for kid in need | {k.knowledge_id for k in sugg.retrieved}:
            text = self.knowledge.get(kid)
            if text:
                known[kid] = text
        notes: tuple[str, ...] = ()
        missing = [k for k in need if k not in known]
        if missing:
            if now < p.context_deadline:
                return _Wait.WAIT
            notes = (f"knowledge_missing:{len(missing)}",)
        case = self.case(ann.case_id, tenant)
        return JudgeInput(
            annotation=ann,
            suggestion=sugg,
            agent=p.agent,
            adoption=adoption,
            knowledge=known,
            customer_message=case.customer_message if case else "",
            notes=notes,
        )

    async def resolve(self, candidates: list[Pending]) -> Outputs:
        """Judge the candidates that are ready; dead-letter the orphans; keep the rest."""
        out = Outputs()
        now = self.clock()
        ready: list[tuple[Pending, JudgeInput]] = []
        for p in list(candidates):
            state = self._readiness(p, now)
            if state is _Wait.WAIT:
                continue
            self._forget(p)
            if state is _Wait.ORPHAN:
                self._orphan(p, out)
            else:
                ready.append((p, state))
        if not ready:
            return out
        try:
            verdicts = await self.judge.judge_many([inp for _, inp in ready])
        except Exception as exc:
            self._log_failure(exc, "the judge failed on %d annotations", len(ready))
            for p, _ in ready:
                self._failed(p, exc, out)
            return out
        for (p, inp), verdict in zip(ready, verdicts, strict=True):
            try:
                self._emit(p, inp, verdict, out)
            except (ValueError, TypeError, KeyError) as exc:  # bad data, not bad storage
                event_id = p.annotation.envelope.event_id
                self._log_failure(exc, "cannot build the outputs of %s", event_id)
                self._failed(p, exc, out)
        return out

    def _failed(self, p: Pending, exc: Exception, out: Outputs) -> None:
        out.dead.append(self._dead(p.record, p.ticket, exc, "process"))
        p.ticket.release()

    def _forget(self, p: Pending) -> None:
        rid = _rid(p.annotation)
        waiting = self.pending.get(rid)
        if waiting is not None:
            waiting[:] = [q for q in waiting if q is not p]
            if not waiting:
                del self.pending[rid]

    def _orphan(self, p: Pending, out: Outputs) -> None:
        rid = p.annotation.request_id
        why = Reason.ORPHAN(f" no suggestion for request {rid} in {self.context_wait_s:g}s")
        out.dead.append(self._dead(p.record, p.ticket, why, "join"))
        verdict = Verdict(False, self.judge.name, self.judge.version, reasons=(why,))
        out.verdicts.append((self._verdict_event(verdict, p), p.ticket))
        metrics.record_verdict(p.annotation.annotation_type, False, [Reason.ORPHAN.value])
        metrics.VERDICT_DELAY.observe(self.clock() - p.arrived)
        p.ticket.release()

    def _emit(self, p: Pending, inp: JudgeInput, verdict: Verdict, out: Outputs) -> None:
        """Publish the verdict and buffer the examples. A failure to build them
        dead-letters the annotation (``resolve``); a failure to store them is not caught:
        the worker stops and the message is read again."""
        ann, kind = p.annotation, inp.type
        event = self._verdict_event(verdict, p)
        split, examples = "train", {}
        if verdict.accepted:
            case = self.case(ann.case_id, ann.envelope.tenant_id)
            split = (case.split if case else Split.TRAIN).slug
            history = case.history if case else None
            examples = build_examples(inp, verdict, history, self.prompt_shape)
        out.verdicts.append((event, p.ticket))
        metrics.record_verdict(kind, verdict.accepted, [reason_code(r) for r in verdict.reasons])
        metrics.VERDICT_DELAY.observe(self.clock() - p.arrived)
        served = (ann.envelope.event_time - inp.suggestion.envelope.event_time).total_seconds()
        if served >= 0:
            metrics.child(metrics.ANNOTATION_LATENCY, kind).observe(served)
        if "default_rate" in verdict.scores:
            rate = verdict.scores["default_rate"]
            metrics.child(metrics.AGENT_DEFAULT_RATE, p.agent).set(rate)
        for component, rows in examples.items():
            self.writer.add(component.slug, split, rows, p.ticket, ann.envelope.tenant_id)
        p.ticket.release()
        if examples:
            out.sealed += self.writer.seal_full()

    def _verdict_event(self, verdict: Verdict, p: Pending) -> JudgeVerdict:
        """The verdict event, its reasons redacted (an LLM judge may quote the text)."""
        event = verdict.to_event(p.annotation, p.agent)
        reasons = [self.redactor.text(r) for r in event.reasons]
        return event if reasons == event.reasons else event.model_copy(update={"reasons": reasons})

    def _error_text(self, error: BaseException | str) -> str:
        """What a dead letter's headers say about the error, without the message's text:
        reason codes and schema errors (redacted), else only the exception's class."""
        if isinstance(error, str):
            return self.redactor.text(error)
        if isinstance(error, SerializationError):
            return self.redactor.text(error.reason)
        return f"{type(error).__name__} (details in the processor log)"

    def _log_failure(self, exc: BaseException, msg: str, *args: object) -> None:
        """Log where it failed with the traceback's frames, not the exception's text
        (which may quote the message: the DLQ keeps the message itself)."""
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error(msg + ": %s\n%s", *args, type(exc).__name__, frames)

    def _dead(
        self, rec: Record, ticket: Ticket, error: BaseException | str, stage: str
    ) -> DeadLetterOut:
        # a bounded label: the stage, or the code of a rejecting reason
        reason = error.split(":", 1)[0] if isinstance(error, str) else stage
        if stage in ("decode", "validate"):
            reason = stage
        metrics.DLQ.labels(rec.topic, reason).inc()
        headers = dead_letter_headers(
            rec.headers,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            error=error,
            stage=stage,
            reason=self._error_text(error),
        )
        return DeadLetterOut(rec.key, rec.value, headers, ticket)

    # -- expiry -----------------------------------------------------------------------
    def _maybe_gc(self, partition: int, every_s: float = 60.0) -> None:
        """Drop bundles and cases of this partition untouched for ``bundle_ttl_s``.

        Runs inside the handling of a message of that partition, so the table deletes go
        to the partition the keys were written from."""
        wall = self.wall()
        last = self._last_gc.get(partition)
        if last is not None and wall - last < every_s:
            return
        self._last_gc[partition] = wall
        if not self._indexed:  # once after a (re)start: index what recovery brought back
            self._indexed = True
            for kind, table in (("b", self.bundles), ("c", self.cases)):
                model: Any = BundleState if kind == "b" else CaseState
                for key, raw in list(table.items()):
                    state = model.model_validate_json(raw)
                    index = self._touched.setdefault(state.partition, {})
                    index.setdefault((kind, key), state.touched)
        cutoff = wall - self.bundle_ttl_s
        index = self._touched.setdefault(partition, {})
        for (kind, key), touched in list(index.items()):
            if touched < cutoff:
                table = self.bundles if kind == "b" else self.cases
                table.pop(key, None)
                self._decoded.pop((id(table), key), None)
                del index[(kind, key)]


def _rid(event: SuggestionServed | Annotation) -> str:
    """The ``pending`` key of an event's request: its request id within its tenant."""
    return tenant_key(event.envelope.tenant_id, event.request_id)
