"""bench/results/faults.json and the README's fault table generated from it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "faults.json"
README = ROOT / "README.md"
START = (
    "<!-- faults:start (make test-faults writes this section from bench/results/faults.json) -->"
)
END = "<!-- faults:end -->"


def markdown(doc: dict[str, Any]) -> str:
    kinds = Counter(f"{f['kind']} {f['target'].split('-')[0]}" for f in doc["faults"])
    faults = ", ".join(f"{n} × {k}" for k, n in sorted(kinds.items()))
    rows = [
        ("faults injected", f"{len(doc['faults'])} ({faults})"),
        ("operations (publish attempts)", f"{doc['operations']:,} ({doc['retries']:,} retries)"),
        ("acknowledged events", f"{doc['acknowledged']:,}"),
        ("lost (acknowledged, not in its topic)", str(doc["lost"])),
        ("duplicated (in its topic twice or more)", str(doc["duplicated"])),
        (
            "accepted annotations / in exactly one sealed row",
            f"{doc['accepted']:,} / {doc['accepted'] - doc['accepted_not_sealed']:,}",
        ),  # fmt: skip
        ("examples sealed twice", str(doc["examples_sealed_twice"])),
        ("worker exits not injected (restarted)", str(len(doc["worker_exits_not_injected"]))),
        (
            "recovery after the last fault",
            f"{doc['recovery_s']:.0f} s (context wait {doc['context_wait_s']:.0f} s)",
        ),  # fmt: skip
        ("checker problems", "; ".join(doc["problems"]) or "none"),
    ]
    head = (
        f"Seed {doc['seed']}: a {doc['brokers']}-broker KRaft cluster (replication 3, "
        f"min.insync.replicas=2), {doc['workers']} processor workers, "
        f"{doc['annotations']:,} annotations in {doc['events']:,} events published through "
        f"the SDK; {doc['duration_s']:.0f} s in all."
    )
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"{head}\n\n| | |\n|---|---|\n{table}\n"


def main() -> None:
    """Regenerate the README table from bench/results/faults.json."""
    write(json.loads(RESULTS.read_text()))


def write(doc: dict[str, Any], results: Path = RESULTS, readme: Path = README) -> None:
    results.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    text = readme.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{START}\n{markdown(doc)}{END}{tail}")


if __name__ == "__main__":
    main()
