"""The before/after report: a rich table, a JSON file and a PNG plot."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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


def _ci(pair: Sequence[float] | None, fmt: str = "{:+.3f}") -> str:
    return "" if not pair else f" [{fmt.format(pair[0])}, {fmt.format(pair[1])}]"


def results_markdown(doc: Mapping[str, Any]) -> str:
    """The README's results: stock / after the cycles / oracle with 95% intervals, every
    cycle, the judge ablation and the judge's own quality, agreement and the generator."""
    ds, cfg, ci = doc["dataset"], doc["config"], doc["ci"]
    before, after, oracle = doc["before"], doc["after"], doc["oracle"]
    cycles = doc["cycles"]
    lines = [
        f"`{ds['name']}`: {ds['knowledge']:,} knowledge objects; "
        f"{ds['replayed']:,} suggestions in {ds['replayed_conversations']:,} conversations "
        f"replayed through Kafka and the processors in {len(cycles)} windows, a trainer "
        f"cycle after each; {ds['held_out']:,} in {ds['held_out_conversations']:,} later "
        f"conversations held out. Mean cycle: {doc['cycle_seconds'] / 60:.1f} min. "
        f"Replies in this table: {cfg['replies']}; helpfulness: {cfg['helpfulness_judge']}. "
        f"Intervals: {cfg['ci']}.",
        "",
        f"| metric | stock | after {len(cycles)} cycles | gain [95% CI] | paper's gain "
        "| oracle | after − oracle [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in METRICS:
        b, a, o = before[m], after[m], oracle[m]
        lines.append(
            f"| {LABELS[m]} | {b:.3f} | {a:.3f} | {_pct(relative_gain(b, a))}"
            f"{_ci(ci['relative_gain'].get(m), '{:+.1%}')} | {_pct(PAPER_GAIN.get(m))} | "
            f"{o:.3f} | {a - o:+.3f}{_ci(ci['after_minus_oracle'].get(m))} |"
        )
    flagged = doc.get("flags", {}).get("after_above_oracle", [])
    if flagged:
        lines += [
            "",
            f"**Flag:** after is above the oracle beyond the interval on "
            f"{', '.join(LABELS[m] for m in flagged)}; see the note below the tables.",
        ]
    lines += [
        "",
        "| cycle | suggestions | Recall@75 | Recall@8 | Precision@8 | helpfulness | adoption "
        "| retriever | ranker |",
        "|---|---|---|---|---|---|---|---|---|",
        "| stock | - | " + " | ".join(f"{before[m]:.3f}" for m in METRICS) + " | - | - |",
    ]
    for c in cycles:
        comps = c.get("components", {})
        acts = [str(comps.get(k, {}).get("action", "-")).lower() for k in ("retriever", "ranker")]
        lines.append(
            f"| {c['cycle']} | {c['instances']} | "
            + " | ".join(f"{c[m]:.3f}" for m in METRICS)
            + f" | {acts[0]} | {acts[1]} |"
        )
    lines.append("| oracle | - | " + " | ".join(f"{oracle[m]:.3f}" for m in METRICS) + " | | |")
    lines += _ablation_lines(doc)
    lines += _generator_lines(doc.get("generator", {}))
    return "\n".join(lines)


def _ablation_lines(doc: Mapping[str, Any]) -> list[str]:
    agreement, quality = doc.get("agreement", {}), doc.get("judge_quality", {})
    lines = [
        "",
        "Careful agents' missing-knowledge agreement with the gold (every replayed "
        "instance's stock suggestion, 3 agent seeds): immediate "
        f"{agreement.get('immediate', 0):.3f} (paper 0.765), deferred "
        f"{agreement.get('deferred', 0):.3f} (paper 0.639).",
    ]
    crew = agreement.get("flywheel_crew")
    if crew:
        lines[-1] += (
            f" The flywheel's own crew, on suggestions of improving models: immediate "
            f"{crew['immediate']:.3f} on {crew.get('immediate_items', 0)} items, deferred "
            f"{crew['deferred']:.3f} on {crew.get('deferred_items', 0)} items."
        )
    ablations = doc.get("ablations", {}).get("judge")
    if not ablations:
        return lines
    seeds = len(ablations["by_seed"])
    diff, wdiff = ablations["difference"], ablations["weights_difference"]
    lines += [
        "",
        f"Judge ablation: {ablations['mix'].get('careless', 0):.0%} careless agents whose text "
        f"gives nothing away, the retriever trained on what each side sealed; "
        f"{seeds} agent seeds (first seed's values; difference: mean [min, max] over seeds).",
        "",
        "| | Recall@75 | Recall@8 | Precision@8 |",
        "|---|---|---|---|",
    ]
    for name, key in (
        ("with the Virtual Judge", "with"),
        ("with it, weights off", "weights_off"),
        ("without it", "without"),
    ):
        row = ablations[key]
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:.3f}" for m in METRICS[:3]) + " |")
    for name, d in (("with − without", diff), ("weights on − off", wdiff)):
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{d[m]['mean']:+.3f} [{d[m]['min']:+.3f}, {d[m]['max']:+.3f}]" for m in METRICS[:3]
            )
            + " |"
        )
    lines.append("| the paper: with / without the judge | 0.708 / 0.670 | - | - |")
    removed = quality.get("removed_share", {})
    lines += [
        "",
        f"The judge against the simulator's record of corrupted annotations (mean over "
        f"{seeds} seeds): precision {quality.get('precision', 0):.2f}, recall "
        f"{quality.get('recall', 0):.2f}; it removed "
        f"{removed.get('retriever', 0):.0%} of retriever rows (paper ~14%) and "
        f"{removed.get('generator', 0):.0%} of generator rows (paper ~34%).",
    ]
    return lines


def _generator_lines(gen: Mapping[str, Any]) -> list[str]:
    if not gen or "skipped" in gen:
        return ["", f"Generator: not measured ({gen.get('skipped', 'not run')})."]
    s, t = gen["stock"], gen["trained"]
    return [
        "",
        f"Generator (ORPO + LoRA on {gen['train'].get('pairs', '?')} judged preference pairs "
        f"of the flywheel), decoded on {gen['cases']} held-out prompts with the knowledge "
        f"the final models show; scorer: {gen['scorer']}.",
        "",
        "| | helpfulness | adoption |",
        "|---|---|---|",
        f"| stock generator | {s['helpfulness']:.3f} | {s['adoption']:.3f} |",
        f"| trained generator | {t['helpfulness']:.3f} | {t['adoption']:.3f} |",
        "",
        f"Trained vs stock on the same prompt: wins {gen['win_rate']:.0%}, ties "
        f"{gen['tie_rate']:.0%}, losses {gen['loss_rate']:.0%}.",
    ]


def plot_cycles(doc: Mapping[str, Any], path: Path) -> Path:
    """One panel per metric: the value after every cycle with its 95% interval, the stock
    models and the oracle as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cycles = doc["cycles"]
    xs = [0] + [c["cycle"] for c in cycles]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.4))
    for ax, m in zip(axes, METRICS, strict=True):
        ys = [doc["before"][m]] + [c[m] for c in cycles]
        lo = [doc["ci"]["before"][m][0]] + [c["ci"][m][0] for c in cycles]
        hi = [doc["ci"]["before"][m][1]] + [c["ci"][m][1] for c in cycles]
        ax.fill_between(xs, lo, hi, alpha=0.2)
        ax.plot(xs, ys, marker="o", label="flywheel")
        if all("oracle" in c for c in cycles):
            oracle = [doc["before"][m]] + [c["oracle"][m] for c in cycles]
            ax.plot(xs, oracle, color="green", linestyle="--", marker=".", label="oracle")
        else:
            ax.axhline(doc["oracle"][m], color="green", linestyle="--", label="oracle")
        ax.axhline(doc["before"][m], color="grey", linestyle=":", label="stock")
        ax.set_title(LABELS[m])
        ax.set_xlabel("cycle")
        ax.set_xticks(xs)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"aitl flywheel on {doc['dataset']['name']} (95% intervals)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
