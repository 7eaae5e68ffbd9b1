"""What every fault test asserts once the faults stop: nothing lost, nothing twice.

The checks, each a list of problems (empty when it holds):

- every accepted annotation in exactly one sealed row per example, and no rejected one;
- every verdict on an annotation says what the workload expects (re-deliveries repeat it);
- every sealed shard reads back whole: its Parquet exists, has the manifest's row count and
  example ids (a trainer's snapshot never reads a half-written shard), and is announced
  by exactly the ``ShardSealed`` events of the store's manifests;
- the dead-letter topic holds exactly the bad inputs: the undecodable bytes and the orphans.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from bench.workload import Workload
from kernel.events import Component
from tests.integration.test_processors import Stack
from trainers.snapshot import take_snapshot


def check_rows(stack: Stack, w: Workload) -> list[str]:
    rows = stack.rows()
    ids = Counter(r["example_id"] for rs in rows.values() for r in rs)
    problems = []
    dupes = [i for i, n in ids.items() if n > 1]
    if dupes:
        problems.append(f"{len(dupes)} examples sealed twice, e.g. {dupes[:3]}")
    sources = {r["source_event_ids"][0] for rs in rows.values() for r in rs}
    accepted = {str(k) for k, ok in w.expected.items() if ok}
    if sources - accepted:
        problems.append(f"{len(sources - accepted)} rejected or unknown annotations sealed")
    if accepted - sources:
        problems.append(f"{len(accepted - sources)} accepted annotations in no sealed row")
    return problems


def check_verdicts(stack: Stack, w: Workload) -> list[str]:
    verdicts = stack.verdicts_by_annotation()
    kinds = {a.envelope.event_id: a.event_type for a in w.annotations}
    wrong = [
        (kinds[eid], ok, [(v.accepted, v.reasons) for v in verdicts[eid]])
        for eid, ok in w.expected.items()
        if {v.accepted for v in verdicts[eid]} != {ok}
    ]
    orphans = [
        o.envelope.event_id
        for o in w.orphans
        if not verdicts[o.envelope.event_id]
        or any(v.accepted for v in verdicts[o.envelope.event_id])
    ]
    out = [f"{len(wrong)} annotations without their expected verdict: {wrong[:3]}"] * bool(wrong)
    return out + [f"{len(orphans)} orphans not rejected"] * bool(orphans)


def check_shards(stack: Stack) -> list[str]:
    """Each manifest's Parquet file whole; the snapshot a trainer takes reads them all."""
    problems = []
    manifests = {m.shard_id: m for c in Component for m in stack.store.manifests(c)}
    for m in manifests.values():
        if not stack.store.fs.exists(m.parquet):
            problems.append(f"{m.shard_id}: sealed, its Parquet file missing")
            continue
        ids = pq.read_table(m.parquet, columns=["example_id"]).column(0).to_pylist()
        digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
        if len(ids) != m.rows or digest != m.example_ids_sha256:
            problems.append(f"{m.shard_id}: {len(ids)} rows, the manifest says {m.rows}")
    for component in Component:
        snap = take_snapshot(stack.store, component.slug)
        read = stack.store.read(snap.split("train") + snap.split("eval"))
        want = sum(m.rows for m in manifests.values() if m.component == component.slug)
        if read.num_rows != want or snap.rows() != want:
            problems.append(f"{component.slug} snapshot: {read.num_rows} rows, sealed {want}")
    announced = Counter(
        stack.serde.decode(v or b"").shard_id  # type: ignore[attr-defined]
        for _, v, _ in list(stack.sealed.records)
    )
    if set(announced) != set(manifests):
        problems.append(
            f"shards sealed but never announced: {sorted(set(manifests) - set(announced))}; "
            f"announced but not sealed: {sorted(set(announced) - set(manifests))}"
        )
    return problems


def check_dlq(stack: Stack, w: Workload, bad: list[bytes]) -> list[str]:
    letters = stack.dead_letters()
    garbage = {d.value for d in letters if d.stage in ("decode", "validate")}
    orphans = {
        stack.serde.decode(d.value or b"").envelope.event_id
        for d in letters
        if d.error.startswith("orphan")
    }
    others = [
        d
        for d in letters
        if d.stage not in ("decode", "validate") and not d.error.startswith("orphan")
    ]
    problems = []
    if garbage != set(bad):
        problems.append(f"DLQ garbage: {len(garbage)} distinct, published {len(set(bad))}")
    if orphans != {o.envelope.event_id for o in w.orphans}:
        problems.append(f"DLQ orphans: {len(orphans)}, the workload has {len(w.orphans)}")
    if others:
        problems.append(f"{len(others)} unexpected dead letters, e.g. {others[0].error}")
    return problems


def check_all(stack: Stack, w: Workload, bad: list[bytes]) -> dict[str, Any]:
    """Every check; the test asserts the result's ``problems`` is empty."""
    problems = check_rows(stack, w) + check_verdicts(stack, w) + check_shards(stack)
    problems += check_dlq(stack, w, bad)
    return {"problems": problems}
