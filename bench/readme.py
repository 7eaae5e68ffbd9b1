"""The README's table of measured speeds, rendered from ``bench/results/*.json`` (never
typed): ``python -m bench`` rewrites it between the markers after each run, and a unit
test fails when the README and the committed JSON disagree."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
Row = tuple[str, str]


def _n(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:g}"


def _backbone(r: dict[str, Any]) -> list[Row]:
    rows = []
    sdk = f"{_n(r['sdk_events_per_s'])} events/s"
    if "handwritten_events_per_s" in r:
        sdk += (
            f"; {r['sdk_vs_handwritten_ratio']} of a hand-written confluent-kafka + fastavro "
            f"loop on the same dicts ({_n(r['handwritten_events_per_s'])}/s)"
        )
    raw = _n(r["raw_events_per_s"])
    sdk += f"; {r['sdk_vs_raw_ratio']} of raw produce of pre-encoded bytes ({raw}/s)"
    rows.append(("SDK publish (validate + envelope + Avro + produce)", sdk))
    gw = r.get("gateway_events_per_s", {})
    if gw:
        parts = [f"{_n(v)} events/s at {k.replace('_', ' ')}" for k, v in gw.items()]
        rows.append(("gateway", ", ".join(parts)))
    if "encode_us" in r:
        rows.append(
            (
                "Avro encode / decode+validate (SuggestionServed)",
                f"{r['encode_us']} µs / {r['decode_us']} µs",
            )
        )
    return rows


def _processors(r: dict[str, Any]) -> list[Row]:
    text = (
        f"{_n(r['judge_events_per_s'])} events/s ({r['judge_vs_raw_ratio']} of a raw "
        f"consume→produce passthrough: {_n(r['raw_passthrough_events_per_s'])}/s"
    )
    if "judge_vs_faust_ratio" in r:
        text += f"; {r['judge_vs_faust_ratio']} of a Faust agent doing no work"
    text += ")"
    lat = r.get("latency_ms")
    if lat:
        text += f"; at 1,000 events/s latency p50 {lat['p50']} ms, p99 {lat['p99']} ms"
    if "two_workers_speedup" in r:
        text += f"; two workers {r['two_workers_speedup']}x one"
    return [("processors, RuleJudge worker", text)]


def _serving(r: dict[str, Any]) -> list[Row]:
    rows = []
    if "retrieval_ms" in r:
        ret, sug = r["retrieval_ms"], r.get("suggest_ms", {})
        text = f"retrieval p50 {ret['p50']} ms, p99 {ret['p99']} ms"
        if sug:
            text += f"; /v1/suggest p50 {sug['p50']} ms, p99 {sug['p99']} ms"
        rows.append(
            (
                f"serving ({r.get('dataset', '?')}, {_n(r.get('knowledge_objects', 0))} objects)",
                text,
            )
        )
    if "recall_at_75" in r:
        rows.append(
            (
                f"stock retrieval on {r.get('dataset', '?')} ({_n(r.get('cases', 0))} cases)",
                f"Recall@75 {r['recall_at_75']}, Recall@8 {r['recall_at_8']}, "
                f"Precision@8 {r['precision_at_8']}",
            )
        )
    for engine, sizes in r.get("retrieval_by_size", {}).items():
        for size, m in sizes.items():
            label = f"knowledge index `{engine}`, {_n(float(size))} objects (dim 384, k=75)"
            if "p99" not in m:
                rows.append((label, f"not measured: {m.get('not_measured', '')}"))
                continue
            rows.append(
                (
                    label,
                    f"p50 {m['p50']} ms, p99 {m['p99']} ms, Recall@75 vs exact "
                    f"{m['recall_vs_exact']}, RSS {_n(m['rss_mb'])} MB",
                )
            )
    hybrid = r.get("hybrid")
    if hybrid:
        for side, label in (("dense", "dense"), ("hybrid_rrf", "dense + BM25 (RRF)")):
            m = hybrid[side]
            rows.append(
                (
                    f"retrieval on {hybrid['dataset']}, {label} ({_n(hybrid['cases'])} cases)",
                    f"Recall@75 {m['recall_at_75']}, Recall@8 {m['recall_at_8']}, "
                    f"Precision@8 {m['precision_at_8']}",
                )
            )
    return rows


def _trainers(r: dict[str, Any]) -> list[Row]:
    rows = [
        (
            "retriever cycle (snapshot → train → evaluate → gate → register)",
            f"{r['cycle_seconds']} s",
        )
    ]
    if "retriever_pairs_per_s" in r:
        rows.append(("retriever training", f"{r['retriever_pairs_per_s']} pairs/s"))
    if "generator_orpo_steps_per_s" in r:
        rows.append(("generator ORPO (LoRA)", f"{r['generator_orpo_steps_per_s']} steps/s"))
    return rows


def _generator(r: dict[str, Any]) -> list[Row]:
    rows = []
    for dtype in ("float32", "bfloat16"):
        if dtype in r:
            m = r[dtype]
            rows.append(
                (
                    f"generator decode, {dtype}",
                    f"{m['tokens_per_s_batch_1']} tokens/s at batch 1, "
                    f"{m['tokens_per_s_batch_4']} at batch 4",
                )
            )
    return rows


RENDER: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "backbone": _backbone,
    "processors": _processors,
    "serving": _serving,
    "trainers": _trainers,
    "generator": _generator,
}


def table(results: Path = RESULTS) -> str:
    """The markdown table of every benchmark whose JSON is there, in a fixed order."""
    lines = ["| number | value | from |", "|---|---|---|"]
    for name, render in RENDER.items():
        path = results / f"{name}.json"
        if not path.exists():
            lines.append(f"| {name} | not measured yet | |")
            continue
        for label, value in render(json.loads(path.read_text())):
            lines.append(f"| {label} | {value} | `bench/results/{name}.json` |")
    return "\n".join(lines)


def update(readme: Path, results: Path = RESULTS) -> bool:
    """Rewrite the table between the markers; False when the README has none."""
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        return False
    new = pattern.sub(lambda _: f"{START}\n{table(results)}\n{END}", text)
    if new != text:
        readme.write_text(new)
    return True


def block(readme: Path) -> str:
    """The table now between the README's markers."""
    text = readme.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip()


if __name__ == "__main__":
    update(Path(__file__).parent.parent / "README.md")
