"""The fault suite (``make test-faults``): SDK clients publish with retries that reuse event
ids while a seeded nemesis SIGKILLs and restarts brokers of a 3-node cluster (one at a
time), SIGSTOPs a broker past the session timeouts and SIGKILLs processor workers. Then
the checker reads everything back: every acknowledged event exactly once in its topic,
every accepted annotation in exactly one sealed row, verdicts consistent with the rows.

``AITL_FAULTS_OUT`` (make test-faults sets it) writes the history summary there and the
README's fault table; ``AITL_FAULTS_SEED``, ``AITL_FAULTS_TARGET`` (faults to inject) and
``AITL_FAULTS_ANNOTATIONS`` size the run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aitl.kafka_local import LocalKafkaCluster, free_port
from bench.workload import Workload, garbage, make_workload
from kernel.settings import KafkaSettings
from streams.catalog import Topics
from tests.conftest import java_home
from tests.faults import report
from tests.faults.checker import check_all, check_rows
from tests.faults.history import History, Nemesis, RetryingPublisher, read_event_ids
from tests.integration.test_processors import Stack, all_judged, all_sealed

SEED = int(os.environ.get("AITL_FAULTS_SEED", "17"))
TARGET = int(os.environ.get("AITL_FAULTS_TARGET", "30"))
ANNOTATIONS = int(os.environ.get("AITL_FAULTS_ANNOTATIONS", "1200"))
OUT = os.environ.get("AITL_FAULTS_OUT")
WORKERS = 2
PAUSE_S = 12.0  # past the consumers' session (8 s) and the broker's (broker.session 9 s)
pytestmark = [pytest.mark.nemesis, pytest.mark.timeout(2400)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalKafkaCluster]:
    c = LocalKafkaCluster(
        tmp_path / "cluster",
        [free_port() for _ in range(3)],
        [free_port() for _ in range(3)],
        java_home=java_home(),
        heap="256m",
    )
    c.start(240)
    yield c
    c.stop(timeout_s=20)


class Workers:
    """Keeps ``WORKERS`` processor workers running; a worker that exits is replaced."""

    def __init__(self, stack: Stack, history: History) -> None:
        self.stack, self.history = stack, history
        self.killed: set[int] = set()
        self.exits: list[dict[str, Any]] = []
        for _ in range(WORKERS):
            stack.start_worker()

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.stack.workers if p.poll() is None]

    def kill_one(self, rng: random.Random) -> str:
        alive = self.alive()
        proc = rng.choice(alive)
        name = f"worker-{self.stack.workers.index(proc)}"
        self.killed.add(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.stack.start_worker()
        return name

    def keep_up(self) -> None:
        """Replace workers that exited on their own (recorded: the report names them)."""
        for proc in list(self.stack.workers):
            if proc.poll() is not None and proc.pid not in self.killed:
                self.killed.add(proc.pid)
                at = round(time.monotonic() - self.history.started, 1)
                self.exits.append({"at_s": at, "worker": self.stack.workers.index(proc),
                                   "code": proc.returncode})  # fmt: skip
                self.stack.start_worker()


def _wait(workers: Workers, done: Callable[[], bool], timeout_s: float, what: str) -> str:
    """Wait for ``done``; what was still missing at the timeout ("" if nothing): the test
    records it with the history before it fails."""
    deadline = time.monotonic() + timeout_s
    while not done():
        workers.keep_up()
        if time.monotonic() > deadline:
            return f"timed out waiting for {what} ({workers.stack.status})"
        time.sleep(1)
    return ""


def _publish_under_faults(
    stack: Stack, w: Workload, bad: list[bytes], pub: RetryingPublisher, nemesis: Nemesis,
    workers: Workers, history: History,
) -> None:  # fmt: skip
    chunk = 25
    pace = TARGET * 12.0 / max(1, len(w.stream))  # spread over the faults (~12 s each)
    for i in range(0, len(w.stream), chunk):
        pub.publish(w.stream[i : i + chunk])
        if i == (len(w.stream) // 2) // chunk * chunk:
            stack.produce_raw(stack.topics.name("annotations.adoption"), bad)
        workers.keep_up()
        time.sleep(pace * chunk)
    while len(history.faults) < TARGET and nemesis.error is None:
        workers.keep_up()
        time.sleep(1)
    nemesis.stop()
    assert nemesis.error is None, repr(nemesis.error)
    pub.drain()


def test_nemesis_loses_and_duplicates_nothing(cluster: LocalKafkaCluster, tmp_path: Path) -> None:
    settings = KafkaSettings(
        bootstrap=cluster.bootstrap,
        topic_prefix=f"f{uuid.uuid4().hex[:8]}.",
        replication_factor=3,
    )
    # the join's waits outlast an outage: a preference judged before its delayed adoption
    # arrives is accepted unchecked (found by this suite with the 3 s default of the tests);
    # with a 90 s context wait, 2 requests' annotations were judged orphans after the faults
    stack = Stack(
        settings,
        tmp_path,
        AITL_KAFKA_REPLICATION_FACTOR="3",
        AITL_PROCESSORS_ADOPTION_WAIT_S="60",
        AITL_PROCESSORS_CONTEXT_WAIT_S=os.environ.get("AITL_FAULTS_CONTEXT_WAIT_S", "300"),
    )
    try:
        _run(stack, cluster, settings)
    finally:
        stack.close()


def _run(stack: Stack, cluster: LocalKafkaCluster, settings: KafkaSettings) -> None:
    w = make_workload(ANNOTATIONS, seed=SEED)
    bad = garbage(6, seed=SEED)
    history = History()
    pub = RetryingPublisher(settings, history, timeout_ms=30_000)
    pub.publish(w.knowledge)
    pub.drain()
    workers = Workers(stack, history)
    nemesis = Nemesis(cluster, workers.kill_one, history, SEED, PAUSE_S, gap_s=3.0)
    nemesis.start()
    try:
        _publish_under_faults(stack, w, bad, pub, nemesis, workers, history)
    finally:
        nemesis.stop()
        pub.pub.close()
    faults_done = time.monotonic()
    timeouts = [
        _wait(workers, all_judged(stack, w), 900, "a verdict for every annotation"),
        _wait(workers, all_sealed(stack, w), 300, "every accepted annotation sealed"),
        _wait(workers, lambda: len(stack.dead_letters()) >= len(bad) + len(w.orphans), 120, "DLQ"),
    ]
    stack.stop()
    topics = Topics(settings)
    sources = [topics.name("interactions"), topics.name("suggestions"), *topics.annotations]
    counts = read_event_ids(settings, [*sources, topics.name("knowledge")], stack.serde)
    lost = [e for e in history.acknowledged if counts[e] == 0]
    duplicated = [e for e in history.acknowledged if counts[e] > 1]
    problems = [t for t in timeouts if t] + check_all(stack, w, bad)["problems"]
    rows = stack.rows()
    sealed_ids = [r["example_id"] for rs in rows.values() for r in rs]
    sealed_sources = {r["source_event_ids"][0] for rs in rows.values() for r in rs}
    accepted = {str(k) for k, ok in w.expected.items() if ok}
    doc = {
        "seed": SEED,
        "brokers": len(cluster.nodes),
        "workers": WORKERS,
        "annotations": len(w.annotations) + len(w.orphans),
        "events": len(w.stream) + len(w.knowledge),
        "faults": history.faults,
        "faults_by_kind": _by_kind(history.faults),
        "worker_exits_not_injected": workers.exits,
        "operations": history.attempts,
        "retries": history.retries,
        "acknowledged": len(history.acknowledged),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "accepted": len(accepted),
        "accepted_not_sealed": len(accepted - sealed_sources),
        "examples_sealed_twice": len(sealed_ids) - len(set(sealed_ids)),
        "problems": problems,
        "duration_s": round(time.monotonic() - history.started, 1),
        "context_wait_s": float(stack.env.get("AITL_PROCESSORS_CONTEXT_WAIT_S", "0")),
        "recovery_s": round(time.monotonic() - faults_done, 1),
    }
    if OUT:
        report.write(doc, Path(OUT))
    print(f"\nfaults: {doc['faults_by_kind']}; acknowledged {doc['acknowledged']}, "
          f"lost {doc['lost']}, duplicated {doc['duplicated']}; problems {problems}")  # fmt: skip
    assert len(history.faults) >= TARGET
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {lost[:3]}"
    assert not duplicated, f"{len(duplicated)} events twice in their topic, e.g. {duplicated[:3]}"
    assert check_rows(stack, w) == []
    assert problems == []
    assert set(history.acknowledged) >= {e.envelope.event_id for e in w.stream}


def _by_kind(faults: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in faults:
        key = f"{f['kind']}:{f['target'].split('-')[0]}"
        out[key] = out.get(key, 0) + 1
    return out
