"""The whole flywheel, small: real broker, processors, Ray Serve, trainers.

Tens of cases, one retriever cycle with the gate opened (margin < 0) so that the
promotion and the hot-swap always happen: the test is about the machinery, the
benchmark is about the gains.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from aitl.flywheel.demo import DemoConfig, run_demo
from kernel.events import Component


@pytest.mark.slow
def test_a_promotion_changes_the_served_version(tmp_path: Path) -> None:
    cfg = DemoConfig(
        workdir=tmp_path / "demo",
        cases=40,
        held_out=5,
        agents=4,
        components=(Component.RETRIEVER,),
        gate_margin=-1.0,
        max_new_tokens=16,
        concurrency=4,
        # a large eval share: the gate measures on the replay's last 12 cases
        eval_fraction=0.3,
    )
    doc = run_demo(cfg, Console(width=120))
    promoted = doc["promoted"]["retriever"]
    assert promoted.startswith("retriever-")
    assert doc["cycles"][0]["action"] == "PROMOTED"
    assert doc["shard_rows"]["retriever/train"] > 0
    assert doc["annotations"] >= 3 * doc["cases"]["replayed"]
    report = json.loads((cfg.workdir / "report.json").read_text())
    assert set(report["before"]) >= {"recall_at_75", "precision_at_8", "helpfulness", "adoption"}
    assert (cfg.workdir / "report.png").stat().st_size > 10_000
