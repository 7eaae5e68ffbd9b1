"""A worker SIGKILLs itself at each crash point (processors/faults.py); a fresh worker then
finishes the stream, and the checker finds nothing lost, nothing twice, no half shard."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.workload import Workload, garbage, make_workload
from kernel.settings import KafkaSettings
from tests.faults.checker import check_all
from tests.integration.test_processors import Stack, all_judged, all_sealed

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def stack(kafka_settings: KafkaSettings, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(kafka_settings, tmp_path)
    yield s
    s.close()


def _publish(stack: Stack, w: Workload, bad: list[bytes]) -> None:
    stack.publish(w.knowledge)
    half = len(w.stream) // 2
    stack.publish(w.stream[:half])
    stack.produce_raw(stack.topics.name("annotations.adoption"), bad)
    stack.publish(w.stream[half:])


def _finish(stack: Stack, w: Workload, bad: list[bytes]) -> None:
    stack.wait(all_judged(stack, w), 240, "a verdict for every annotation")
    stack.wait(all_sealed(stack, w), 120, "every accepted annotation sealed")
    stack.wait(lambda: len(stack.dead_letters()) >= len(bad) + len(w.orphans), 60, "dead letters")
    assert stack.stop()[-1] == 0, stack.logs()
    assert check_all(stack, w, bad)["problems"] == []


def _killed(proc_rc: int | None) -> bool:
    return proc_rc == -signal.SIGKILL


def _wait_killed(stack: Stack, timeout_s: float = 180) -> None:
    first = stack.workers[0]
    deadline = time.monotonic() + timeout_s
    while first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _killed(first.poll()), f"the worker did not crash ({first.poll()}):\n{stack.logs()}"


@pytest.mark.parametrize("point", ["after_parquet_rename", "after_manifest"])
def test_a_crash_between_the_seal_steps_loses_and_doubles_nothing(stack: Stack, point: str) -> None:
    w = make_workload(600, seed=17)
    bad = garbage(6)
    stack.start_worker(AITL_PROCESSORS_FAULT_POINT=point)
    _publish(stack, w, bad)
    _wait_killed(stack)
    shards = Path(stack.store.root)
    parquet = {p.name.removesuffix(".parquet") for p in shards.rglob("*.parquet")}
    sealed = {p.name.removesuffix(".manifest.json") for p in shards.rglob("*.manifest.json")}
    if point == "after_parquet_rename":
        assert parquet - sealed, "the crash left no Parquet file without its manifest"
    else:
        assert sealed, "the crash came before any manifest"
    stack.start_worker()
    _finish(stack, w, bad)


def test_a_crash_inside_a_revoke_with_a_slow_store_loses_and_doubles_nothing(
    stack: Stack,
) -> None:
    w = make_workload(600, seed=19)
    bad = garbage(6)
    # shards stay open until the revoke seals them; the store takes 2 s per write stage
    stack.start_worker(
        AITL_PROCESSORS_FAULT_POINT="in_revoke",
        AITL_PROCESSORS_FAULT_STORE_DELAY_S="2",
        AITL_PROCESSORS_SEAL_AGE_S="600",
    )
    _publish(stack, w, bad)
    stack.wait(lambda: len(stack.verdicts_by_annotation()) > 50, 180, "the first verdicts")
    stack.start_worker()  # joins: the first worker revokes, seals into the slow store, dies
    _wait_killed(stack)
    _finish(stack, w, bad)
