"""The README's speed table is the committed benchmark JSON, rendered, never typed."""

from __future__ import annotations

import json
from pathlib import Path

from bench import readme

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_the_committed_json_rendered() -> None:
    assert readme.block(ROOT / "README.md") == readme.table(), "run: python -m bench.readme"


def test_a_new_json_changes_the_table_and_a_missing_one_says_so(tmp_path: Path) -> None:
    backbone = {
        "sdk_events_per_s": 1234.0,
        "handwritten_events_per_s": 2000.0,
        "raw_events_per_s": 9000.0,
        "sdk_vs_handwritten_ratio": 0.617,
        "sdk_vs_raw_ratio": 0.137,
        "gateway_events_per_s": {"batch_1": 500, "batch_1_c32": 3100},
    }
    (tmp_path / "backbone.json").write_text(json.dumps(backbone))
    page = tmp_path / "README.md"
    page.write_text(f"intro\n{readme.START}\nstale\n{readme.END}\nrest\n")
    assert readme.update(page, tmp_path)
    text = page.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "1,234 events/s; 0.617 of a hand-written" in text
    assert "3,100 events/s at batch 1 c32" in text
    assert "| processors | not measured yet | |" in text
    assert not readme.update(tmp_path / "backbone.json", tmp_path)  # no markers: untouched
