"""The gateway's read view of the topics, for the console: what a case shows and what the
flywheel page charts, folded from the events themselves (no second source of truth).

``TopicView`` reads interactions, suggestions, knowledge, models, verdicts and every
annotation topic from the start in a background thread and folds them into ``Folded``,
whose methods are pure: tests feed it events without a broker. Suggestions, verdicts and
annotations are bounded (the newest ``limit``); the knowledge and models views are
compacted topics, kept whole.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter, OrderedDict, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kernel.annotations.base import Annotation
from kernel.events import (
    AdoptionDecision,
    CustomerInteraction,
    Event,
    JudgeVerdict,
    KnowledgeChanged,
    KnowledgeOp,
    ModelLifecycle,
    SuggestionServed,
)
from kernel.lifecycle import fold, previous_serving
from kernel.reasons import reason_code
from kernel.settings import KafkaSettings
from kernel.text import content_tokens

log = logging.getLogger(__name__)

# the annotation types a handled case is annotated with (missing knowledge is optional)
CORE_TYPES = ("preference", "adoption", "relevance")
BUCKETS = 24
NICE_STEPS_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)


@dataclass
class _Note:
    """One annotation as the flywheel page counts it."""

    time: datetime
    event_type: str
    request_id: str


@dataclass
class Folded:
    """What the topics say, folded; bounded by ``limit`` where a topic grows forever."""

    limit: int = 20_000
    interactions: dict[str, CustomerInteraction] = field(default_factory=dict)
    suggestions: OrderedDict[str, SuggestionServed] = field(default_factory=OrderedDict)
    knowledge: dict[str, KnowledgeChanged] = field(default_factory=dict)
    models: list[ModelLifecycle] = field(default_factory=list)
    verdicts: deque[JudgeVerdict] = field(default_factory=deque)
    notes: deque[_Note] = field(default_factory=deque)
    # agent id -> request id -> (annotation types seen, time of the adoption)
    handled: dict[str, OrderedDict[str, tuple[set[str], datetime | None]]] = field(
        default_factory=lambda: defaultdict(OrderedDict)
    )

    def add(self, event: Event) -> None:
        """Fold one decoded event in."""
        if isinstance(event, CustomerInteraction):
            self.interactions[event.case_id] = event
        elif isinstance(event, SuggestionServed):
            self.suggestions[event.request_id] = event
            while len(self.suggestions) > self.limit:
                self.suggestions.popitem(last=False)
        elif isinstance(event, KnowledgeChanged):
            if event.op is KnowledgeOp.RETIRE:
                self.knowledge.pop(event.knowledge_id, None)
            else:
                self.knowledge[event.knowledge_id] = event
        elif isinstance(event, ModelLifecycle):
            self.models.append(event)
        elif isinstance(event, JudgeVerdict):
            _bounded_append(self.verdicts, event, self.limit)
        elif isinstance(event, Annotation):
            self._annotation(event)

    def _annotation(self, event: Annotation) -> None:
        t = event.envelope.event_time
        _bounded_append(self.notes, _Note(t, event.event_type, event.request_id), self.limit)
        cases = self.handled[event.agent_id]
        types, sent_at = cases.get(event.request_id, (set(), None))
        types.add(event.event_type)
        if isinstance(event, AdoptionDecision):
            sent_at = t
        cases[event.request_id] = (types, sent_at)
        cases.move_to_end(event.request_id)
        while len(cases) > self.limit:
            cases.popitem(last=False)

    # --- the agent's panel -------------------------------------------------------------
    def case(self, request_id: str) -> dict[str, Any] | None:
        """A case as the panel shows it: conversation, candidates, knowledge shown."""
        sug = self.suggestions.get(request_id)
        if sug is None:
            return None
        inter = self.interactions.get(sug.case_id)
        turns = (
            [{"speaker": t.speaker.value, "text": t.text} for t in inter.history] if inter else []
        )
        turns.append(
            {"speaker": "CUSTOMER", "text": inter.customer_message if inter else sug.query}
        )
        return {
            "request_id": sug.request_id,
            "case_id": sug.case_id,
            "served_at": sug.envelope.event_time.isoformat(),
            "query": sug.query,
            "conversation": turns,
            "candidates": [
                {"candidate_id": c.candidate_id, "text": c.text, "cited": c.cited_knowledge_ids}
                for c in sug.candidates
            ],
            "knowledge": [self.knowledge_item(k.knowledge_id) for k in sug.ranked],
        }

    def knowledge_item(self, knowledge_id: str) -> dict[str, Any]:
        """One object as the panel shows it; a retired or unseen one says so."""
        k = self.knowledge.get(knowledge_id)
        if k is None:
            return {"knowledge_id": knowledge_id, "title": knowledge_id, "text": "", "known": False}
        return {
            "knowledge_id": knowledge_id,
            "title": k.title or knowledge_id,
            "text": k.text,
            "url": k.url,
            "kind": k.kind.value,
            "known": True,
        }

    def search(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """The knowledge base by content-word overlap with ``query`` (title counts twice):
        the gateway's own view of the knowledge topic, not the serving retriever, so the
        agent finds what the model missed even while serving is down or is the problem."""
        wanted = set(content_tokens(query))
        if not wanted:
            return []
        scored: list[tuple[float, str]] = []
        for kid, k in self.knowledge.items():
            title, body = set(content_tokens(k.title)), set(content_tokens(k.text))
            hits = 2 * len(wanted & title) + len(wanted & body)
            if hits:
                scored.append((hits / (len(wanted) * 3), kid))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [self.knowledge_item(kid) | {"score": round(s, 3)} for s, kid in scored[:limit]]

    def queue(self, agent_id: str) -> list[dict[str, Any]]:
        """The agent's handled (reply sent) cases still missing a preference or relevance
        annotation, newest first: the deferred-mode queue."""
        out = []
        for request_id, (types, sent_at) in reversed(self.handled.get(agent_id, {}).items()):
            missing = [t for t in CORE_TYPES if t not in types]
            if sent_at is not None and missing:
                out.append(
                    {"request_id": request_id, "sent_at": sent_at.isoformat(), "missing": missing}
                )
        return out

    # --- the flywheel page -------------------------------------------------------------
    def flywheel(self) -> dict[str, Any]:
        """Everything the flywheel page charts, from the folded topics."""
        times = [v.envelope.event_time for v in self.verdicts] + [n.time for n in self.notes]
        times += [m.envelope.event_time for m in self.models]
        axis = _axis(times)
        return {
            "axis": axis,
            "components": self._components(),
            "verdicts": self._verdicts(axis),
            "annotations": self._annotations(axis),
            "agents": self._agents(),
        }

    def _components(self) -> list[dict[str, Any]]:
        state = fold(self.models)
        out = []
        for component, versions in sorted(state.versions.items(), key=lambda kv: kv[0].value):
            events = sorted(
                (m for m in self.models if m.component is component),
                key=lambda m: m.envelope.event_time,
            )
            rows = [
                {
                    "version": v.version,
                    "status": v.status.value,
                    "metrics": v.metrics,
                    "reason": v.event.reason if v.event else None,
                    "time": v.event.envelope.event_time.isoformat() if v.event else None,
                }
                for v in sorted(versions.values(), key=_version_time, reverse=True)
            ]
            out.append(
                {
                    "component": component.slug,
                    "serving": state.serving.get(component),
                    "rollback_to": previous_serving(state, component),
                    "versions": rows,
                    "events": [
                        {
                            "time": m.envelope.event_time.isoformat(),
                            "action": m.action.value,
                            "version": m.version,
                            "previous_version": m.previous_version,
                            "reason": m.reason,
                        }
                        for m in events
                    ],
                }
            )
        return out

    def _verdicts(self, axis: dict[str, Any]) -> dict[str, Any]:
        by_reason: dict[str, list[int]] = defaultdict(lambda: [0] * len(axis["starts"]))
        for v in self.verdicts:
            i = _bucket(axis, v.envelope.event_time)
            codes = {reason_code(r) for r in v.reasons} or {"accepted" if v.accepted else "other"}
            for code in codes:
                by_reason[code][i] += 1
        return {"by_reason": dict(sorted(by_reason.items()))}

    def _annotations(self, axis: dict[str, Any]) -> dict[str, Any]:
        n = len(axis["starts"])
        by_type: dict[str, list[int]] = defaultdict(lambda: [0] * n)
        latencies: list[list[float]] = [[] for _ in range(n)]
        for note in self.notes:
            i = _bucket(axis, note.time)
            by_type[note.event_type][i] += 1
            sug = self.suggestions.get(note.request_id)
            if sug is not None:
                latencies[i].append((note.time - sug.envelope.event_time).total_seconds())
        return {
            "by_type": dict(sorted(by_type.items())),
            "latency_p50_s": [_quantile(b, 0.5) for b in latencies],
            "latency_p90_s": [_quantile(b, 0.9) for b in latencies],
        }

    def _agents(self) -> list[dict[str, Any]]:
        """Per pseudonymous agent (the verdicts never carry the real id): verdicts, the
        share accepted, the mean training weight and its most frequent reasons."""
        per: dict[str, list[JudgeVerdict]] = defaultdict(list)
        for v in self.verdicts:
            per[v.agent_pseudonym].append(v)
        out = []
        for agent, vs in sorted(per.items()):
            reasons = Counter(reason_code(r) for v in vs for r in v.reasons)
            out.append(
                {
                    "agent": agent,
                    "verdicts": len(vs),
                    "accepted_share": sum(v.accepted for v in vs) / len(vs),
                    "mean_weight": sum(v.weight if v.accepted else 0.0 for v in vs) / len(vs),
                    "top_reasons": [code for code, _ in reasons.most_common(3)],
                }
            )
        return out


def _bounded_append(items: deque[Any], item: Any, limit: int) -> None:
    items.append(item)
    while len(items) > limit:
        items.popleft()


def _version_time(v: Any) -> datetime:
    return v.event.envelope.event_time if v.event else datetime.min.replace(tzinfo=UTC)


def _axis(times: list[datetime]) -> dict[str, Any]:
    """``BUCKETS`` time buckets of a round width covering ``times`` (the last hour if none)."""
    now = datetime.now(UTC)
    lo, hi = (min(times), max(times)) if times else (now, now)
    span = max((hi - lo).total_seconds(), 1.0)
    step = next((s for s in NICE_STEPS_S if s * BUCKETS >= span), NICE_STEPS_S[-1])
    start = int(lo.timestamp()) // step * step
    count = min(BUCKETS + 1, int((hi.timestamp() - start) // step) + 1)
    starts = [datetime.fromtimestamp(start + i * step, UTC).isoformat() for i in range(count)]
    return {"step_s": step, "start_s": start, "starts": starts}


def _bucket(axis: dict[str, Any], t: datetime) -> int:
    i = int((t.timestamp() - axis["start_s"]) // axis["step_s"])
    return min(max(i, 0), len(axis["starts"]) - 1)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class TopicView:
    """Folds the topics in a background thread; ``snapshot`` calls under its lock."""

    def __init__(self, settings: KafkaSettings, *, limit: int = 20_000) -> None:
        self.settings = settings
        self.folded = Folded(limit=limit)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def topics(self) -> list[str]:
        from streams.catalog import Topics

        t = Topics(self.settings)
        kinds = (CustomerInteraction, SuggestionServed, KnowledgeChanged, ModelLifecycle)
        return [t.for_event(k) for k in (*kinds, JudgeVerdict)] + t.annotations

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-view", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        from confluent_kafka import Consumer

        from streams.config import consumer_config
        from streams.serde import AvroSerde, SerializationError

        group = f"aitl-console-{uuid.uuid4().hex[:10]}"  # no commits: every start reads all
        consumer = Consumer(
            consumer_config(self.settings, group, **{"topic.metadata.refresh.interval.ms": 2000})
        )
        serde = AvroSerde()
        consumer.subscribe(self.topics())
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, 0.2)
                decoded = []
                for msg in messages:
                    if msg.error() is not None:
                        continue  # e.g. a topic not created yet: the subscription waits
                    try:
                        decoded.append(serde.decode(msg.value(), topic=msg.topic()))
                    except SerializationError:
                        continue  # the processors dead-letter it; a view only skips it
                with self.lock:
                    for event in decoded:
                        self.folded.add(event)
        except Exception:
            log.exception("the console's topic view stopped")
            raise
        finally:
            consumer.close()
