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


README_START = "<!-- results:start (make bench-quality writes this section) -->"
README_END = "<!-- results:end -->"
LABELS = {
    "recall_at_75": "Recall@75",
    "recall_at_8": "Recall@8",
    "precision_at_8": "Precision@8",
    "helpfulness": "helpfulness",
    "adoption": "adoption",
}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def results_markdown(doc: Mapping[str, Any]) -> str:
    """The README's results: before/after/oracle next to the paper, and the ablations."""
    ds = doc["dataset"]
    before, after, oracle = doc["before"], doc["after"], doc["oracle"]
    lines = [
        f"`{ds['name']}`: {ds['knowledge']:,} knowledge objects, {ds['replayed']:,} cases "
        f"replayed through Kafka and the processors, {ds['held_out']:,} held out (the last "
        f"10%). One flywheel cycle: {doc['cycle_seconds'] / 60:.1f} min. "
        f"Replies: {doc['config'].get('replies', '?')}; helpfulness: "
        f"{doc['config'].get('helpfulness_judge', '?')}.",
        "",
        "| metric | stock | after one cycle | gain | paper's gain | oracle | gap closed |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in METRICS:
        b, a, o = before[m], after[m], oracle[m]
        lines.append(
            f"| {LABELS[m]} | {b:.3f} | {a:.3f} | {_pct(relative_gain(b, a))} | "
            f"{_pct(PAPER_GAIN.get(m))} | {o:.3f} | {_pct(gap_closed(b, a, o))} |"
        )
    ablations = doc.get("ablations")
    if ablations:
        judge, mk = ablations["judge"], ablations["missing_knowledge"]
        trained = doc["config"].get("ablation_components", {})

        def what(key: str) -> str:
            return " + ".join(trained.get(key, ["retriever"]))

        lines += [
            "",
            "| ablation | trained | Recall@75 | Recall@8 | Precision@8 |",
            "|---|---|---|---|---|",
        ]
        for name, key, r in (
            ("25% careless agents, with the Virtual Judge", "judge", judge["with"]),
            ("25% careless agents, without it", "judge", judge["without"]),
            ("missing knowledge annotated immediately", "missing_knowledge", mk["immediate"]),
            ("missing knowledge annotated deferred", "missing_knowledge", mk["deferred"]),
        ):
            lines.append(
                f"| {name} | {what(key)} | {r['recall_at_75']:.3f} | {r['recall_at_8']:.3f} | "
                f"{r['precision_at_8']:.3f} |"
            )
        lines.append(
            "| the paper: with / without the judge | retriever | 0.708 / 0.670 | - | - |",
        )
    return "\n".join(lines)


def update_readme(readme: Path, doc: Mapping[str, Any]) -> bool:
    """Replace the README's results section (between the markers); False if it has none."""
    return replace_section(readme, README_START, README_END, results_markdown(doc))


def replace_section(readme: Path, start: str, end: str, markdown: str) -> bool:
    """Replace what lies between two marker lines of a Markdown file; False without them."""
    text = readme.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{markdown}\n{end}{tail}")
    return True


DEMO_START = "<!-- demo:start (make demo writes this section from bench/results/demo.json) -->"
DEMO_END = "<!-- demo:end -->"


def demo_markdown(doc: Mapping[str, Any], stages: Mapping[str, str]) -> str:
    """The demo's measured run (``bench/results/demo.json``): where the time went and the
    before/after table on the held-out cases."""
    cases = doc["cases"]
    lines = [
        f"Last `make demo` run: **{doc['total_s'] / 60:.1f} min** on {doc['cores']} cores, "
        f"{cases['replayed']} replayed and {cases['held_out']} held-out cases; the serving "
        f"generator decoded {doc['generator_tokens_per_s']:.1f} new tokens/s. "
        f"Promoted: {', '.join(f'{k} {v}' for k, v in doc['promoted'].items()) or 'nothing'}.",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    for key, label in stages.items():
        name = key.removesuffix("_s")
        if name in doc["stages"]:
            lines.append(f"| {label} | {doc['stages'][name]:.0f} |")
    lines += ["", "| metric (held-out) | before | after | gain |", "|---|---|---|---|"]
    for key, label in LABELS.items():
        b, a = doc["before"].get(key), doc["after"].get(key)
        if b is not None and a is not None:
            lines.append(f"| {label} | {b:.3f} | {a:.3f} | {_pct(relative_gain(b, a))} |")
    return "\n".join(lines)
