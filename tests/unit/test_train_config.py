"""Trainer config (help text, YAML), the metrics plot and optional MLflow."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from pathlib import Path

import pytest

from trainers.config import (
    CycleConfig,
    GateConfig,
    GeneratorConfig,
    RankerConfig,
    RetrieverConfig,
    TrainerSettings,
    describe,
)
from trainers.report import log_mlflow, plot_cycle


@pytest.mark.parametrize(
    "cls", [RetrieverConfig, RankerConfig, GeneratorConfig, GateConfig, CycleConfig]
)
def test_every_field_has_help_text(cls: type) -> None:
    for name, _, text in describe(cls()):
        if dataclasses.is_dataclass(getattr(cls(), name)):
            continue
        assert len(text) > 10, f"{cls.__name__}.{name} has no help text"


def test_yaml_config_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trainers.yaml"
    path.write_text(
        "retriever:\n  max_steps: 5\n  ks: [75, 8, 1]\ngate:\n  margin: 0.01\npromote: false\n"
    )
    cfg = CycleConfig.from_yaml(path)
    assert cfg.retriever.max_steps == 5 and cfg.retriever.ks == (75, 8, 1)
    assert cfg.gate.margin == 0.01 and cfg.promote is False
    assert CycleConfig.from_dict(cfg.to_dict()) == cfg


def test_typos_in_config_are_errors() -> None:
    with pytest.raises(ValueError, match="max_stepz"):
        CycleConfig.from_dict({"retriever": {"max_stepz": 5}})
    with pytest.raises(ValueError, match="retreiver"):
        CycleConfig.from_dict({"retreiver": {}})


def test_mlflow_uri_comes_from_its_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.local:5000")
    monkeypatch.setenv("AITL_TRAINERS_EVERY_EXAMPLES", "42")
    env = TrainerSettings()
    assert env.mlflow_tracking_uri == "http://mlflow.local:5000" and env.every_examples == 42


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed")
def test_mlflow_is_skipped_cleanly_when_not_installed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert log_mlflow("http://mlflow.local:5000", "aitl", "v1", {}, {"mrr": 0.5}, None) is False
    assert "not installed" in caplog.text
    assert log_mlflow(None, "aitl", "v1", {}, {}, None) is False


def test_metrics_plot_is_a_png(tmp_path: Path) -> None:
    path = plot_cycle(
        tmp_path / "metrics.png",
        "retriever-1",
        {"recall_at_75": 0.9, "mrr": 0.6, "queries": 10.0},
        {"recall_at_75": 0.8, "mrr": 0.4, "queries": 10.0},
        [(1, 2.0), (2, 1.5), (3, 1.1)],
        "promote: recall_at_75 0.9 > 0.8",
    )
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000
