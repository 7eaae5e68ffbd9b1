"""What the Virtual Judge did, read from the processors' ``/metrics`` (as an SRE sees it)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table


def judge_summary(metrics_text: str) -> dict[str, Any]:
    """Verdicts by annotation type and outcome, and reason codes by count."""
    verdicts: dict[str, dict[str, int]] = {}
    reasons: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "aitl_judge_verdicts_total":
                kind = verdicts.setdefault(s.labels["annotation_type"], {})
                kind[s.labels["outcome"]] = int(s.value)
            elif s.name == "aitl_judge_reasons_total":
                reasons[s.labels["reason"]] += int(s.value)
    total = sum(n for kind in verdicts.values() for n in kind.values())
    rejected = sum(kind.get("rejected", 0) for kind in verdicts.values())
    return {
        "verdicts": verdicts,
        "reasons": dict(reasons.most_common()),
        "total": total,
        "rejection_rate": rejected / total if total else 0.0,
    }


def scrape_judge(metrics_url: str) -> dict[str, Any] | None:
    """The summary from a running worker, or None when it cannot be reached."""
    try:
        return judge_summary(httpx.get(metrics_url, timeout=5).text)
    except httpx.HTTPError:
        return None


def judge_table(summary: dict[str, Any], top: int = 6) -> Table:
    t = Table("annotation", "accepted", "rejected", "rejected %", title="Virtual Judge")
    for kind, counts in sorted(summary["verdicts"].items()):
        acc, rej = counts.get("accepted", 0), counts.get("rejected", 0)
        t.add_row(kind.lower(), str(acc), str(rej), f"{rej / max(acc + rej, 1):.0%}")
    reasons = list(summary["reasons"].items())[:top]
    if reasons:
        t.caption = "reasons: " + ", ".join(f"{r} {n}" for r, n in reasons)
    return t
