"""The before/after report: a rich table, a JSON file and a PNG plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

METRICS = ("recall_at_75", "recall_at_8", "precision_at_8", "helpfulness", "adoption")
PAPER_GAIN = {  # relative gains the source paper reports (Recall@75 +11.7%, ...)
    "recall_at_75": 0.117,
    "precision_at_8": 0.148,
    "helpfulness": 0.084,
    "adoption": 0.045,
}


def relative_gain(before: float, after: float) -> float | None:
    return None if before == 0 else (after - before) / before


def gap_closed(before: float, after: float, oracle: float) -> float | None:
    """Share of the stock-to-oracle gap the flywheel closed."""
    gap = oracle - before
    return None if abs(gap) < 1e-9 else (after - before) / gap


def table(rows: Mapping[str, Mapping[str, float]], title: str) -> Table:
    """Rows are named result sets (before, after, oracle, ...) of the same metrics."""
    names = list(rows)
    t = Table("metric", *names, "after vs before", "paper", title=title)
    before, after = rows.get("before", {}), rows.get("after", {})
    for m in METRICS:
        if not any(m in r for r in rows.values()):
            continue
        cells = [f"{rows[n][m]:.3f}" if m in rows[n] else "-" for n in names]
        gain = relative_gain(before.get(m, 0.0), after[m]) if m in after else None
        paper = PAPER_GAIN.get(m)
        t.add_row(
            m,
            *cells,
            "-" if gain is None else f"{gain:+.1%}",
            "-" if paper is None else f"{paper:+.1%}",
        )
    return t


def plot(rows: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """Grouped bars: one group per metric, one bar per result set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if any(m in r for r in rows.values())]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(rows), 1)
    for i, (name, r) in enumerate(rows.items()):
        xs = [j + i * width for j in range(len(metrics))]
        ys = [r.get(m, 0.0) for m in metrics]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(metrics))], metrics)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    return path


def show(
    rows: Mapping[str, Mapping[str, float]], title: str, console: Console | None = None
) -> None:
    (console or Console()).print(table(rows, title))
