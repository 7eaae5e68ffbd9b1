"""Replay cases through the assistant and let simulated agents annotate what it served.

For each case: the customer's message is published (``CustomerInteraction``), the
assistant is asked for a suggestion (which publishes ``SuggestionServed`` itself), and the
case's agent publishes the four annotations through the SDK. Cases are replayed in
order, so event time follows the dataset's order and the processors' temporal split is
the dataset's.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from aitl.flywheel.agents import Agent, CaseTruth
from kernel import events as ev
from serving.knowledge.dataset import Case
from streams.producer import Publisher


@dataclass(frozen=True)
class Suggestion:
    """What the assistant served for one case."""

    request_id: str
    case_id: str
    retrieved: list[str]
    ranked: list[str]
    candidates: list[ev.Candidate]
    versions: dict[str, str] = field(default_factory=dict)

    def as_event(self, query: str = "", at: datetime | None = None) -> ev.SuggestionServed:
        """The served suggestion as the agent's annotation app would hold it."""
        n = len(self.retrieved)
        return ev.SuggestionServed(
            envelope=ev.Envelope(event_time=at or datetime.now(UTC), producer="aitl-simulator"),
            request_id=self.request_id,
            case_id=self.case_id,
            query=query,
            retrieved=[
                ev.ScoredKnowledge(knowledge_id=k, score=1 - i / max(n, 1))
                for i, k in enumerate(self.retrieved)
            ],
            ranked=[ev.ScoredKnowledge(knowledge_id=k, score=1.0) for k in self.ranked],
            candidates=self.candidates,
            model_versions=self.versions,
        )


class Suggester(Protocol):
    def suggest(self, case: Case) -> Suggestion: ...


def speaker(dstc_speaker: str) -> str:
    return {"U": "CUSTOMER", "S": "AGENT"}.get(dstc_speaker, dstc_speaker)


class HttpSuggester:
    """Calls ``POST /v1/suggest`` of the Ray Serve application."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 120) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers)

    def suggest(self, case: Case) -> Suggestion:
        *earlier, last = case.history or [("U", case.query)]
        body = {
            "case_id": case.case_id,
            "query": last[1],
            "history": [{"speaker": speaker(s), "text": t} for s, t in earlier],
        }
        r = self.client.post("/v1/suggest", json=body)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return Suggestion(
            request_id=data["request_id"],
            case_id=case.case_id,
            retrieved=[k["knowledge_id"] for k in data.get("retrieved", data["knowledge"])],
            ranked=[k["knowledge_id"] for k in data["knowledge"]],
            candidates=[ev.Candidate(**c) for c in data["candidates"]],
            versions=data["model_versions"],
        )

    def close(self) -> None:
        self.client.close()


def interaction(case: Case, at: datetime | None = None) -> ev.CustomerInteraction:
    *earlier, last = case.history or [("U", case.query)]
    return ev.CustomerInteraction(
        envelope=ev.Envelope(event_time=at or datetime.now(UTC), producer="aitl-simulator"),
        case_id=case.case_id,
        channel=ev.Channel.CHAT,
        customer_message=last[1],
        history=[ev.Turn(speaker=ev.Speaker(speaker(s)), text=t) for s, t in earlier],
    )


STEP_S = 2.0  # simulated seconds between two cases of a shift


def shift_clock(n_cases: int, step_s: float = STEP_S) -> tuple[float, Callable[[int], datetime]]:
    """A simulated shift for a replay of ``n_cases``: case i happens ``step_s`` after case
    i - 1, starting at the boundary of the last whole split period, and the replay is
    exactly one period long. Returns ``(period_s, clock)``: run the processors with
    ``AITL_PROCESSORS_SPLIT_PERIOD_S=period_s`` and their temporal eval slice is exactly
    the replay's last share, however fast the replay runs."""
    period_s = max(1, n_cases) * step_s
    base = datetime.fromtimestamp((time.time() // period_s - 1) * period_s, UTC)
    return period_s, lambda i: base + timedelta(seconds=i * step_s)


@dataclass
class SimulationStats:
    cases: int = 0
    annotations: int = 0
    by_profile: dict[str, int] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)
    # (profile, event, truth) of every missing-knowledge annotation: agreement per profile
    missing: list[tuple[str, ev.MissingKnowledge, CaseTruth]] = field(default_factory=list)
    corrupted: set[str] = field(default_factory=set)  # event ids written in a careless mode


def simulate(
    cases: Sequence[Case],
    suggester: Suggester,
    agents: Sequence[Agent],
    publisher: Publisher,
    *,
    concurrency: int = 4,
    on_case: Callable[[int], None] | None = None,
    suggestions: Iterable[Suggestion] | None = None,
    publish_suggestions: bool = False,
    clock: Callable[[int], datetime] | None = None,
) -> SimulationStats:
    """Replay ``cases`` in order; ``suggestions`` (one per case) skips asking the assistant.

    Suggestions are fetched ``concurrency`` at a time; annotations are published in
    case order, each by the agent the case is routed to (round robin). With
    ``publish_suggestions`` the simulator publishes ``SuggestionServed`` itself (for
    suggestions computed in-process; the Ray application publishes its own). ``clock``
    gives case ``i`` its event time (a simulated shift) instead of the wall clock: the
    processors' temporal split then follows the cases' order exactly."""
    stats = SimulationStats()
    agent_cycle = itertools.cycle(agents)
    given = list(suggestions) if suggestions is not None else None
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for start in range(0, len(cases), concurrency):
            chunk = cases[start : start + concurrency]
            times = [clock(start + i) if clock else None for i in range(len(chunk))]
            for case, at in zip(chunk, times, strict=True):
                publisher.publish(interaction(case, at))
            served = (
                given[start : start + len(chunk)]
                if given is not None
                else list(pool.map(suggester.suggest, chunk))
            )
            for case, suggestion, at in zip(chunk, served, times, strict=True):
                agent = next(agent_cycle)
                truth = CaseTruth(
                    case.case_id, tuple(case.gold_ids), case.reference, tuple(case.history)
                )
                served_event = suggestion.as_event(case.query, at)
                if publish_suggestions:
                    publisher.publish(served_event)
                events = agent.annotate(truth, served_event, at or datetime.now(UTC))
                publisher.publish_many(events)
                stats.annotations += len(events)
                stats.missing += [
                    (agent.profile, e, truth) for e in events if isinstance(e, ev.MissingKnowledge)
                ]
                stats.by_profile[agent.profile] = stats.by_profile.get(agent.profile, 0) + 1
                stats.suggestions.append(suggestion)
                stats.cases += 1
                if on_case is not None:
                    on_case(1)
            publisher.poll(0)
    for agent in agents:
        stats.corrupted |= agent.corrupted
    return stats
