"""Every Prometheus metric the stream processors export (served on ``/metrics``).

Names (alert rules are written against these):

* ``aitl_processor_events_consumed_total{topic,type}``: messages read; type is the event
  type, or ``undecodable``.
* ``aitl_judge_verdicts_total{annotation_type,outcome}``: outcome ``accepted``/``rejected``.
* ``aitl_judge_reasons_total{annotation_type,reason}``: one count per reason code.
* ``aitl_judge_acceptance_ratio{annotation_type}``: accepted share of the last 1,000 verdicts.
* ``aitl_annotation_latency_seconds{annotation_type}``: histogram, suggestion served ->
  annotation (event times).
* ``aitl_adoption_decisions_total{decision}``: adoption annotations by ``AS_IS``,
  ``EDITED``, ``REJECTED`` (the adoption rate of suggestions).
* ``aitl_agent_annotations_total{agent}``: per pseudonymised agent.
* ``aitl_agent_default_choice_ratio{agent}``: share of default choices (prefer A / send A
  as-is) in the agent's last 200 choices (fatigue).
* ``aitl_shard_rows_total{component,split}``: rows written to sealed shards.
* ``aitl_shards_sealed_total{component,split}``: shards sealed.
* ``aitl_shard_open_rows{component,split}``: rows buffered in open shards.
* ``aitl_duplicate_examples_total``: examples dropped as already sealed (replays, resends).
* ``aitl_dlq_messages_total{topic,reason}``: reason ``decode``, ``validate``, ``orphan``.
* ``aitl_processing_seconds``: histogram, handling one message (decode, join, judge).
* ``aitl_message_age_seconds``: histogram, message timestamp -> handled (how far behind).
* ``aitl_verdict_delay_seconds``: histogram, annotation received -> verdict (incl. waits).
* ``aitl_pending_annotations``: annotations waiting for their suggestion or adoption.
* ``aitl_consumer_lag{topic,partition}``: high watermark minus next offset to process.
* ``aitl_uncommitted_messages``: messages read but not yet acknowledged (awaiting a seal).
* ``aitl_llm_judge_requests_total{outcome}``: ``ok``, ``malformed``, ``timeout``,
  ``unavailable``, ``circuit_open``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "aitl_processor_events_consumed", "Messages read by the processors", ["topic", "type"]
)
VERDICTS = Counter(
    "aitl_judge_verdicts", "Judge verdicts by annotation type", ["annotation_type", "outcome"]
)
REASONS = Counter(
    "aitl_judge_reasons", "Judge reason codes by annotation type", ["annotation_type", "reason"]
)
ACCEPTANCE = Gauge(
    "aitl_judge_acceptance_ratio",
    "Accepted share of the last 1,000 verdicts",
    ["annotation_type"],
)
ANNOTATION_LATENCY = Histogram(
    "aitl_annotation_latency_seconds",
    "Suggestion served -> annotation event time",
    ["annotation_type"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)
ADOPTIONS = Counter("aitl_adoption_decisions", "Adoption annotations by decision", ["decision"])
AGENT_ANNOTATIONS = Counter(
    "aitl_agent_annotations", "Annotations per pseudonymised agent", ["agent"]
)
AGENT_DEFAULT_RATE = Gauge(
    "aitl_agent_default_choice_ratio",
    "Share of default choices in the agent's last 200 choices",
    ["agent"],
)
SHARD_ROWS = Counter("aitl_shard_rows", "Rows in sealed shards", ["component", "split"])
SHARDS_SEALED = Counter("aitl_shards_sealed", "Shards sealed", ["component", "split"])
SHARD_OPEN_ROWS = Gauge("aitl_shard_open_rows", "Rows in open shards", ["component", "split"])
DUPLICATES = Counter("aitl_duplicate_examples", "Examples dropped as already sealed")
DLQ = Counter("aitl_dlq_messages", "Messages sent to the dead-letter topic", ["topic", "reason"])
PROCESSING = Histogram(
    "aitl_processing_seconds",
    "Handling one message",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5),
)
MESSAGE_AGE = Histogram(
    "aitl_message_age_seconds",
    "Message timestamp (producer or broker time) -> handled by the processor",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
VERDICT_DELAY = Histogram(
    "aitl_verdict_delay_seconds",
    "Annotation received -> verdict, waits included",
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PENDING = Gauge("aitl_pending_annotations", "Annotations waiting for context")
LAG = Gauge("aitl_consumer_lag", "High watermark minus next offset", ["topic", "partition"])
UNCOMMITTED = Gauge("aitl_uncommitted_messages", "Messages read but not yet acknowledged")
LLM_REQUESTS = Counter("aitl_llm_judge_requests", "LLM judge calls by outcome", ["outcome"])

_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once (labels() costs microseconds per call)."""
    key = (id(metric), labels)
    hit = _children.get(key)
    if hit is None:
        hit = _children[key] = metric.labels(*labels)
    return hit


WINDOW = 1000
_recent: dict[str, tuple[deque[bool], list[int]]] = {}  # type -> (last verdicts, [accepted])


def record_verdict(annotation_type: str, accepted: bool, reason_codes: list[str]) -> None:
    """Count a verdict and refresh the rolling acceptance ratio of its type."""
    child(VERDICTS, annotation_type, "accepted" if accepted else "rejected").inc()
    for code in reason_codes:
        child(REASONS, annotation_type, code).inc()
    window, count = _recent.setdefault(annotation_type, (deque(), [0]))
    window.append(accepted)
    count[0] += accepted
    if len(window) > WINDOW:
        count[0] -= window.popleft()
    child(ACCEPTANCE, annotation_type).set(count[0] / len(window))
